#ifndef TASKRT_CORE_EVENT_LOOP_H_
#define TASKRT_CORE_EVENT_LOOP_H_

// EventLoop: the owner's side of the runtime. It watches file descriptors
// (task channels) and runs their callbacks, and work posted from other
// threads, on one thread: the loop thread. Backends live in
// event_loops/<name>/, listed in backends/registry.cc.
//
// The loop thread
//   The first thread to call RunOnce(), Run() or RunUntil() becomes the loop
//   thread for the loop's whole life. They are refused with
//   kPermissionDenied from any other thread afterwards, never run
//   concurrently.
//
// Watches
//   Watch(readiness, callback) calls `callback` on the loop thread each time
//   `readiness.fd` becomes ready for `readiness.events`, edge-triggered (as
//   Kore's loop): several arrivals may produce one call, and a callback that
//   leaves data unread is not called again until new data or a close arrives.
//   Hang-up and error conditions also trigger a call. Watch and Unwatch may
//   be called from any thread. After Unwatch() returns on the loop thread
//   (for instance from inside a callback, even its own) that callback is not
//   called again; from another thread, a call already under way may finish.
//   The caller keeps the fd open until it has unwatched it.
//
// Posted work
//   Post() may be called from any thread; work runs on the loop thread in the
//   order posted. Work still queued when the loop is destroyed is destroyed
//   without running.
//
// Timers
//   RunAt(deadline, closure) and RunAfter(duration, closure) arm a timer and
//   return its id; they may be called from any thread, the loop thread
//   included (from inside a callback or another timer's closure too). The
//   closure runs once, on the loop thread, never before its deadline.
//   Deadlines are absl::Time, wall clock, at the API; RunAt converts its
//   deadline to CLOCK_MONOTONIC when it arms the timer, and RunAfter counts
//   from the monotonic clock at the call, so a later step of the wall clock
//   moves no timer. A deadline in the past is valid: the timer runs at the
//   next iteration. Timers that are due together run in deadline order, and
//   timers of equal deadlines in the order they were armed (RunAt calls on
//   one thread with the same absl::Time convert to equal deadlines unless
//   the wall clock is stepped, or slewed by 2 us, in between: RunAt
//   converts with one reference offset between the clocks, which makes its
//   deadlines up to about 5 us late, never early). Each iteration runs the timers
//   that were due when it checked the clock after its wait; a timer armed
//   while timers are running runs at the earliest in the next iteration, and
//   never before a timer that was due ahead of it.
//
//   Cancel(id) may be called from any thread and may race with the timer
//   firing; exactly one of these is true when it returns:
//     OK                   the closure will never run (it is destroyed, on
//                          the loop thread, soon after: at once on the loop
//                          thread, at the loop's next iteration otherwise)
//     kFailedPrecondition  the closure has run, is running, or the timer was
//                          cancelled before (the message says which, where
//                          the loop still knows)
//   Cancel of an id this loop never issued (0 included) is kInvalidArgument.
//   Ids are 64-bit handles (a slot and its generation): an id of another
//   loop may look like one of this loop's, so keep each id with its loop.
//
//   RunOnce() shortens its wait to the earliest timer and Run() wakes for
//   it; a timer armed from another thread wakes a loop waiting in either.
//   Timers cost no file descriptor and no system call to arm or cancel on
//   the loop thread. Timers still pending when the loop is destroyed are
//   destroyed without running.
//
// Running until a deadline
//   RunUntil(deadline) runs as Run() does, and also returns, with
//   kDeadlineExceeded, once the deadline has passed: never before it (the
//   monotonic clock, to which the deadline is converted once as RunAt's,
//   reads the deadline or later), and soon after, as a timer of that
//   deadline would run; its wait ends at the deadline with no timer armed.
//   It makes at least one pass: a deadline that has passed runs what is
//   ready (callbacks, due timers, posted work) without waiting, then returns
//   kDeadlineExceeded. A Stop() seen first (before the call, or during the
//   last pass) makes it return OK, as Run() does. Timers due after the
//   deadline stay armed for the next run.
//
// Socket I/O
//   AcceptEach, ReceiveEach and SendAll start an operation on a socket and
//   return its id; its callback runs on the loop thread each time the
//   operation completes a step, never before the starting call returns. The
//   loop does the I/O: a backend submits it to the kernel (io_uring) or
//   waits for readiness and makes the system calls itself (epoll); callers
//   see the same behaviour on every backend.
//     AcceptEach(listen_fd, on_accept)  each connection the listening socket
//       accepts, as a new fd (non-blocking, close-on-exec, the callee's to
//       close); until CancelIo or an error, which is delivered once and
//       ends the operation. Transient failures of one connection (aborted
//       before accept, EINTR) are skipped.
//     ReceiveEach(fd, on_data)  each chunk of bytes received, in order; the
//       span points into the loop's buffer and is valid only during the
//       call. An empty span is the end of the stream (the peer shut down
//       its side) and an error is delivered once; either ends the
//       operation.
//     SendAll(fd, bytes, on_sent)  writes every byte (the loop continues
//       partial writes) and then calls on_sent once: OK, or the error. A
//       peer that has gone is an error (EPIPE, ECONNRESET), never SIGPIPE.
//       The sends on one fd are written one after another in the order they
//       were issued, their bytes never interleaved, and complete in that
//       order.
//   CancelIo(id): once it returns, the operation's callback is never called
//   again (cancelling from inside that callback included), and the
//   operation takes nothing more from its socket: bytes and connections
//   that arrive later are left for the next operation. The callback is
//   destroyed on the loop thread. A cancelled SendAll may have written part
//   of its bytes; the sends queued after it follow those bytes. A cancelled
//   ReceiveEach may have taken bytes from the socket that its callback had
//   not seen (a completion backend receives ahead); they are dropped, so
//   cancel a receive only when the rest of the stream does not matter, or
//   at the end of a message the peer then waits to answer. Likewise a
//   cancelled AcceptEach closes connections it took and had not delivered.
//   kNotFound for an id that is unknown or whose operation has ended (its
//   last callback has been called, or is being called).
//
//   PauseReceive(id) / ResumeReceive(id): back-pressure for a ReceiveEach
//   without losing a byte. Once PauseReceive returns (from inside the
//   receive's own callback too), the callback is not called until
//   ResumeReceive. A paused receive takes nothing new from its socket, so
//   a peer that keeps sending meets the kernel's flow control; a
//   completion backend may still get what it had asked the kernel for
//   before the pause, and holds it. On resume, what was held (bytes, then
//   the end of the stream or the error, if either came) is delivered
//   first, in order, from the loop and never inside ResumeReceive, before
//   anything received after. Pausing a paused receive, or resuming one
//   that is not paused, is OK and changes nothing. A paused receive is
//   still under way: CancelIo ends it and drops what it held, and the
//   loop's destruction destroys it. kNotFound for an id that is unknown or
//   ended (as CancelIo); kInvalidArgument for an AcceptEach or SendAll.
//
//   Threads: the loop thread only. The first call claims the loop thread
//   as RunOnce does; from any other thread the calls return
//   kPermissionDenied and start nothing. Ownership: the fd stays the
//   caller's; it must stay open until every operation on it has ended or
//   been cancelled, and must not also be watched (Watch) while it has
//   operations. At most one AcceptEach or ReceiveEach at a time per fd
//   (kFailedPrecondition otherwise); SendAll may be queued any number of
//   times. A listening fd must be in non-blocking mode (O_NONBLOCK), so
//   that every backend can accept without blocking; other fds may be
//   either. Operations still under way when the loop is destroyed are
//   destroyed with it, their callbacks never called; an fd they accepted
//   but did not deliver is closed.
//
// Errors
//   kPermissionDenied  RunOnce/Run/RunUntil, or a socket operation, from a
//                      thread that is not the loop thread
//   kDeadlineExceeded  RunUntil's deadline passed before a Stop()
//   kNotFound          Unwatch of an unknown id; CancelIo, PauseReceive or
//                      ResumeReceive of an unknown or ended operation
//   kInvalidArgument   Watch of a bad fd, empty callbacks or closures,
//                      negative timeouts, Cancel of an id never issued; a
//                      socket operation on a bad fd, an fd that is not a
//                      socket, or (AcceptEach) a socket that is not
//                      listening or not in non-blocking mode;
//                      PauseReceive/ResumeReceive of an operation that is
//                      not a ReceiveEach
//   kFailedPrecondition  Run()/RunUntil() re-entered from inside a callback
//                      of either; Cancel of a timer that ran or was
//                      cancelled; a second AcceptEach/ReceiveEach on an fd
//   kResourceExhausted more timers pending at once than a loop can hold
//                      (about four billion)
//   system errors      the kernel refused (message names the call)

#include <cstdint>
#include <functional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "core/channel.h"
#include "core/scheduler.h"

namespace taskrt {

using WatchId = uint64_t;
// 0 is never a timer's id.
using TimerId = uint64_t;
// 0 is never a socket operation's id.
using IoId = uint64_t;

using AcceptCallback = std::function<void(absl::StatusOr<int> connection)>;
using ReceiveCallback = std::function<void(absl::StatusOr<absl::Span<const char>> data)>;
using SendCallback = std::function<void(absl::Status status)>;

// What a loop counted since it was created (EventLoop::metrics()).
struct LoopMetrics {
  uint64_t iterations = 0;     // waits for events, with what ran after each
  uint64_t callbacks_run = 0;  // watch callbacks called
  uint64_t timers_run = 0;     // timer closures run
  uint64_t posted_run = 0;     // posted (and deferred) work run
  uint64_t wake_requests = 0;  // wake-ups asked of the backend (posts, timers
                               // armed from other threads, Stop); it may merge them
  uint64_t io_started = 0;     // socket operations started (AcceptEach, ...)
};

class EventLoop {
 public:
  virtual ~EventLoop() = default;

  // A snapshot of the counters, from any thread at any time. They are
  // added at the end of each iteration: each is exact once the iteration
  // that ran what it counts has ended (a posted closure that reads them
  // does not find itself counted yet).
  virtual LoopMetrics metrics() const = 0;

  virtual absl::StatusOr<WatchId> Watch(Readiness readiness, std::function<void()> callback) = 0;
  virtual absl::Status Unwatch(WatchId id) = 0;

  // Queues `work` to run on the loop thread. Thread-safe.
  virtual absl::Status Post(Work work) = 0;

  // Arms a timer that runs `closure` on the loop thread at `deadline` (see
  // Timers above). Thread-safe. kInvalidArgument for an empty closure.
  virtual absl::StatusOr<TimerId> RunAt(absl::Time deadline, std::function<void()> closure) = 0;

  // As RunAt(now + `delay`), with now read from the monotonic clock.
  virtual absl::StatusOr<TimerId> RunAfter(absl::Duration delay,
                                           std::function<void()> closure) = 0;

  // OK: the timer's closure will never run. kFailedPrecondition: it ran, is
  // running or was cancelled already. kInvalidArgument: not an id of this
  // loop. Thread-safe; safe to race with the timer firing.
  virtual absl::Status Cancel(TimerId id) = 0;

  // Socket I/O (see "Socket I/O" above): the loop thread only.
  // Accepts connections on the non-blocking listening socket `listen_fd`
  // until cancelled or failed.
  virtual absl::StatusOr<IoId> AcceptEach(int listen_fd, AcceptCallback on_accept) = 0;
  // Receives from `fd` until the end of the stream, an error or CancelIo.
  virtual absl::StatusOr<IoId> ReceiveEach(int fd, ReceiveCallback on_data) = 0;
  // Writes all of `bytes` to `fd` after the sends queued before it.
  virtual absl::StatusOr<IoId> SendAll(int fd, std::string bytes, SendCallback on_sent) = 0;
  // Ends an operation; its callback is not called again.
  virtual absl::Status CancelIo(IoId id) = 0;
  // Holds a ReceiveEach's callbacks back until ResumeReceive; nothing
  // received is lost.
  virtual absl::Status PauseReceive(IoId id) = 0;
  // Lets a paused ReceiveEach deliver again, what it held first.
  virtual absl::Status ResumeReceive(IoId id) = 0;

  // Waits up to `timeout` for events (zero: just polls; the wait ends early
  // for the earliest timer), runs the callbacks, the due timers and the
  // posted work that are ready, in that order, and returns how many it ran.
  virtual absl::StatusOr<int> RunOnce(absl::Duration timeout) = 0;

  // Runs until Stop(). Returns OK after a Stop().
  virtual absl::Status Run() = 0;

  // Runs until Stop() (OK) or until `deadline` has passed
  // (kDeadlineExceeded, never early); see "Running until a deadline".
  virtual absl::Status RunUntil(absl::Time deadline) = 0;

  // Makes Run() or RunUntil() return after the callbacks under way.
  // Thread-safe; a Stop() before Run() makes the next Run() return at once.
  virtual void Stop() = 0;

  // True on the loop thread.
  virtual bool IsLoopThread() const = 0;

  virtual std::string name() const = 0;
};

}  // namespace taskrt

#endif  // TASKRT_CORE_EVENT_LOOP_H_
