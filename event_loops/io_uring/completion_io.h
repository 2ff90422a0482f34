#ifndef TASKRT_EVENT_LOOPS_IO_URING_COMPLETION_IO_H_
#define TASKRT_EVENT_LOOPS_IO_URING_COMPLETION_IO_H_

// The socket I/O of core/event_loop.h as completions on the io_uring loop's
// own ring; internal to the loop.
//
//   AcceptEach   one multishot IORING_OP_ACCEPT (SOCK_NONBLOCK |
//                SOCK_CLOEXEC), re-armed when the kernel ends it.
//   ReceiveEach  one multishot IORING_OP_RECV that picks its buffers from a
//                ring of provided buffers (io_uring_register_buf_ring) the
//                loop owns; a buffer goes back to the ring as soon as the
//                callback that saw it returns. When the kernel runs out of
//                buffers (ENOBUFS) it ends the receive, which is re-armed.
//   PauseReceive marks the receive paused and nothing more: the multishot
//                stays armed, so a pause that sees no data costs no
//                request. A completion that comes while paused is held
//                (copied, its buffer given back) and the multishot is
//                cancelled then, queued with the next submission; what the
//                kernel completes before the cancellation is held too, as
//                is the end of the stream or an error. ResumeReceive
//                re-arms the receive if the kernel has let go of it, and
//                defers the delivery of what was held (Hooks::defer);
//                completions that come before that delivery runs are held
//                behind it, so the order stays.
//   SendAll      IORING_OP_SEND with MSG_NOSIGNAL | MSG_WAITALL, one in the
//                kernel per fd at a time, so the sends of one fd go in order;
//                a short write is submitted again for the rest.
//   CancelIo     an IORING_OP_ASYNC_CANCEL of the operation, entered at once:
//                when it returns the kernel has let go of the operation, so
//                it takes nothing more from the socket. The operation's
//                record (a send's bytes) stays until the kernel's last
//                completion for it, which then runs nothing; an accepted fd
//                in such a completion is closed, a buffer goes back.
//
// Every request is queued in the ring by the loop thread (the ring's only
// issuer) and goes with the loop's next submission; starts and re-arms are
// queued by SubmitPending(), which the loop calls at each iteration before
// it submits. A callback runs from Complete(), never from the starting
// call.
//
// Thread safety: none; the loop thread only. The loop checks the thread and
// the arguments before it calls in.

#include <atomic>
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

struct io_uring;
struct io_uring_sqe;
struct io_uring_buf_ring;

namespace taskrt::io_uring_loop_internal {

class CompletionIo {
 public:
  // What the loop lends: a submission entry (null when the queue stays
  // full), an io_uring_enter that submits and runs due completion work
  // without waiting, and a way to run work on the loop thread soon, never
  // inline (LoopBase::Defer).
  // `ignored_tag` is the user_data of completions the loop drops (this
  // class's cancellations).
  struct Hooks {
    std::function<io_uring_sqe*()> get_sqe;
    std::function<absl::Status(absl::string_view operation)> enter_now;
    std::function<void(Work)> defer;
    uint64_t ignored_tag;
  };

  // Registers the provided-buffer ring with `ring` (which may still be
  // disabled: registration is allowed before the ring has its issuer).
  // kUnavailable, with the reason, where the kernel refuses.
  static absl::StatusOr<std::unique_ptr<CompletionIo>> Create(io_uring* ring, Hooks hooks);
  ~CompletionIo();

  // Whether `fd` has a live operation of this class.
  bool HasOperationsOn(int fd) const;

  // Whether a completion's user_data is one of this class's requests.
  static bool IsIoCompletion(uint64_t user_data);

  // Start operation `id` (from the loop's StartIo()); the arguments are
  // checked. kFailedPrecondition for a second AcceptEach/ReceiveEach on an
  // fd.
  absl::Status AcceptEach(IoId id, int fd, AcceptCallback on_accept);
  absl::Status ReceiveEach(IoId id, int fd, ReceiveCallback on_data);
  absl::Status SendAll(IoId id, int fd, std::string bytes, SendCallback on_sent);
  // kNotFound when `id` is not an operation of this class under way.
  // `ring_started`: whether requests can be entered now.
  absl::Status CancelIo(IoId id, bool ring_started);
  // PauseReceive (`hold`) or ResumeReceive of core/event_loop.h;
  // kNotFound as CancelIo, kInvalidArgument for an operation that is not a
  // receive.
  absl::Status HoldReceive(IoId id, bool hold);

  // Queues the starts, re-arms and continuations that wait for a
  // submission entry. The loop thread, once the ring is enabled.
  void SubmitPending();
  // Handles one of this class's completions; returns how many callbacks
  // ran (0 or 1).
  int Complete(uint64_t user_data, int32_t result, uint32_t flags);
  // Closes the fd accepted in a completion that will never be handled (the
  // loop is going away).
  static void DropCompletion(int32_t result, bool is_accept);
  // Whether the operation of `user_data` is an accept (for DropCompletion).
  bool IsAccept(uint64_t user_data) const;

  // Multishot accepts and receives the kernel ended that were armed again
  // (out of buffers, a full completion queue).
  uint64_t rearms() const { return rearms_.load(std::memory_order_relaxed); }

 private:
  enum class Kind { kAccept, kReceive, kSend };
  struct Op {
    Kind kind;
    int fd;
    // The callback may run; false once cancelled or ended, while a request
    // of it may still be in the kernel.
    bool live = true;
    // A request of it is queued in the ring or in the kernel, its last
    // completion not handled yet.
    bool in_kernel = false;
    // Waits in pending_ for a submission entry.
    bool pending = false;
    std::shared_ptr<AcceptCallback> on_accept;
    std::shared_ptr<ReceiveCallback> on_data;
    std::shared_ptr<SendCallback> on_sent;
    std::string bytes;
    size_t sent = 0;
    // A receive's back-pressure: while `paused`, or while what it held
    // waits for its delivery, completions are held.
    bool paused = false;
    bool cancel_queued = false;     // the multishot is cancelled for the pause
    bool delivery_queued = false;   // DeliverHeld() is deferred
    bool holds_end = false;         // the end of the stream or an error came
    absl::Status held_error;        // the error, if one came (else the end)
    std::string held;

    bool holding() const { return paused || delivery_queued; }
  };

  CompletionIo(io_uring* ring, Hooks hooks) : ring_(ring), hooks_(std::move(hooks)) {}
  absl::Status RegisterBuffers();

  Op* Find(IoId id);
  Op& Add(IoId id, int fd, Kind kind);
  // Add(), refused when `fd` has an accept or receive already.
  absl::StatusOr<Op*> AddReader(const char* operation, IoId id, int fd, Kind kind);
  void Queue(IoId id, Op& op);
  void Rearm(IoId id, Op& op);
  bool Prepare(IoId id, Op& op);
  // The operation is over for its user: no more callbacks. Erases it unless
  // a request of it is in the kernel.
  void End(IoId id, Op& op);
  // Queues the cancellation of `id`'s request; the next submission takes it.
  void CancelInKernel(IoId id);
  void StartNextSend(int fd);
  void RecycleBuffer(uint32_t flags);
  int CompleteAccept(IoId id, Op& op, int32_t result, bool more);
  int CompleteReceive(IoId id, Op& op, int32_t result, uint32_t flags, bool more);
  // A receive's completion while it holds (see PauseReceive above).
  void Hold(IoId id, Op& op, int32_t result, uint32_t flags, bool more);
  // The live receive `id` of PauseReceive/ResumeReceive (`operation`).
  absl::StatusOr<Op*> ReceiveOp(const char* operation, IoId id);
  void QueueDelivery(IoId id, Op& op);
  // Delivers what receive `id` held, unless it was paused again or ended.
  void DeliverHeld(IoId id);
  int CompleteSend(IoId id, Op& op, int32_t result);

  io_uring* const ring_;
  const Hooks hooks_;
  absl::flat_hash_map<IoId, std::unique_ptr<Op>> ops_;
  absl::flat_hash_map<int, IoId> readers_;              // fd -> its accept or receive
  absl::flat_hash_map<int, std::deque<IoId>> sends_;    // fd -> its sends, in order
  std::deque<IoId> pending_;                            // waiting for an entry
  std::atomic<uint64_t> rearms_{0};  // read by stats() from any thread

  io_uring_buf_ring* buffer_ring_ = nullptr;  // mmap'ed, registered
  size_t buffer_ring_bytes_ = 0;
  std::unique_ptr<char[]> buffers_;           // given to the ring on first receive
};

}  // namespace taskrt::io_uring_loop_internal

#endif  // TASKRT_EVENT_LOOPS_IO_URING_COMPLETION_IO_H_
