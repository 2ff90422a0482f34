#ifndef TASKRT_EVENT_LOOPS_LOOP_BASE_SOCKET_IO_H_
#define TASKRT_EVENT_LOOPS_LOOP_BASE_SOCKET_IO_H_

// The socket I/O of core/event_loop.h ("Socket I/O") written once on top of
// readiness, for every loop backend: the epoll loop's only way, and the
// io_uring loop's where its ring lacks completion I/O.
//
//   CheckSocket()  the argument checks every backend makes, so that each
//                  refuses the same calls with the same codes.
//   ReadinessIo    waits for readiness with the loop's own Watch() and makes
//                  the system calls (accept4, recv into one loop-owned
//                  buffer, send with MSG_NOSIGNAL) when it fires. Each fd
//                  with operations has one watch, for POLLIN and POLLOUT
//                  (epoll refuses a second watch of one fd), edge-triggered:
//                  every side with an operation runs until EAGAIN, or for a
//                  bounded number of calls per turn, after which it
//                  continues through `defer` so that one busy peer cannot
//                  hold the loop. The watch goes as soon as the fd's last
//                  operation ends, before that operation's callback runs
//                  (which may close the fd). Starting an operation defers
//                  its first attempt: a watch already in place reported the
//                  fd's earlier readiness to nobody. A paused receive
//                  makes no recv (its bytes, and the end of the stream,
//                  wait in the socket); the watch stays for the fd's other
//                  side, and a resume defers an attempt, as a start does.
//
// Thread safety: none; the loop thread only (LoopBase checks the thread
// before it calls in). Callbacks may start and cancel operations, of their
// own fd too. Destroying a ReadinessIo destroys the callbacks of the
// operations under way without calling them; it makes no call into the
// loop, whose watches must be gone or never run again by then (LoopBase
// holds it, so the backend's destructor has run first).

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "core/event_loop.h"
#include "core/scheduler.h"

namespace taskrt::loop_internal {

enum class SocketUse { kListening, kConnected };

// OK when `fd` is an open socket fit for `use` (kListening: listening and
// non-blocking); else kInvalidArgument, "<label>: <operation> ...".
absl::Status CheckSocket(absl::string_view label, absl::string_view operation, int fd,
                         SocketUse use);

// Whether an accept4() that failed with `error_number` failed for one
// connection only (the next may succeed), rather than for the socket.
bool IsTransientAcceptError(int error_number);

class ReadinessIo {
 public:
  // `loop` watches the fds; `defer` runs work on the loop thread in this
  // iteration or the next, never inline. Errors start with `label`.
  ReadinessIo(EventLoop& loop, std::string label, std::function<void(Work)> defer);
  ReadinessIo(const ReadinessIo&) = delete;
  ReadinessIo& operator=(const ReadinessIo&) = delete;

  // As core/event_loop.h's, with the arguments already checked, as
  // operation `id` (the loop's).
  absl::Status AcceptEach(IoId id, int listen_fd, AcceptCallback on_accept);
  absl::Status ReceiveEach(IoId id, int fd, ReceiveCallback on_data);
  absl::Status SendAll(IoId id, int fd, std::string bytes, SendCallback on_sent);
  // kNotFound when `id` is not an operation of this ReadinessIo under way.
  absl::Status CancelIo(IoId id);
  // PauseReceive (`hold`) or ResumeReceive of core/event_loop.h;
  // kNotFound as CancelIo.
  absl::Status HoldReceive(IoId id, bool hold);

  // Whether `id` is an operation of this ReadinessIo under way.
  bool Owns(IoId id) const { return ops_.contains(id); }
  // Whether `fd` has operations of this ReadinessIo under way.
  bool HasOperationsOn(int fd) const { return fds_.contains(fd); }

 private:
  struct Send {
    IoId id;
    std::string bytes;
    size_t sent = 0;
    std::shared_ptr<SendCallback> on_sent;
  };
  struct FdState {
    WatchId watch = 0;
    IoId accept = 0;  // 0: none
    std::shared_ptr<AcceptCallback> on_accept;
    IoId receive = 0;  // 0: none
    std::shared_ptr<ReceiveCallback> on_data;
    bool receive_paused = false;
    std::deque<Send> sends;
  };

  // The state of `fd`, with its watch; created on first use.
  absl::StatusOr<FdState*> StateFor(int fd);
  // The state of the fd whose ReceiveEach is `id`; kNotFound or
  // kInvalidArgument (`operation` names the call) otherwise.
  absl::StatusOr<FdState*> ReceiveStateOf(const char* operation, IoId id);
  // StateFor(), refused when `fd` has an accept or receive already.
  absl::StatusOr<FdState*> ReaderStateFor(const char* operation, int fd);
  // The sides of an fd a Drive() tries: a readiness event tries them all;
  // the attempt deferred for a start, a resume or a turn's end only the
  // side concerned, which saves the others a system call that would fail.
  enum Side : unsigned { kAcceptSide = 1, kReceiveSide = 2, kSendSide = 4, kAllSides = 7 };

  // Operation `id` of `fd` is registered: its first attempt (on `sides`)
  // is deferred.
  void Started(IoId id, int fd, unsigned sides);
  FdState* Find(int fd);
  // Forgets operation `id` of `fd`; removes the fd's watch and state when
  // it was the fd's last operation.
  void Forget(int fd, IoId id);
  void DeferDrive(int fd, unsigned sides);

  // Each of `sides` of `fd` that has an operation, until EAGAIN or its
  // turn ends.
  void Drive(int fd, unsigned sides = kAllSides);
  void DriveAccept(int fd);
  void DriveReceive(int fd);
  void DriveSends(int fd);

  EventLoop& loop_;
  const std::string label_;
  const std::function<void(Work)> defer_;
  absl::flat_hash_map<int, std::unique_ptr<FdState>> fds_;
  absl::flat_hash_map<IoId, int> ops_;  // operation -> its fd
  // recv's buffer; a receive callback that runs the loop again (a nested
  // RunOnce) makes the inner receives use one of their own.
  std::vector<char> buffer_;
  bool buffer_in_use_ = false;
};

}  // namespace taskrt::loop_internal

#endif  // TASKRT_EVENT_LOOPS_LOOP_BASE_SOCKET_IO_H_
