#ifndef TASKRT_EVENT_LOOPS_LOOP_BASE_LOOP_BASE_H_
#define TASKRT_EVENT_LOOPS_LOOP_BASE_LOOP_BASE_H_

// LoopBase: what every event-loop backend shares, written once so the
// backends cannot drift: the loop-thread claim, Run/Stop, the queue of
// posted work and the timers (loop_timers.h). A backend derives from it and
// supplies the rest of core/event_loop.h (Watch, Unwatch, name) plus two
// hooks:
//
//   DispatchReady(timeout)  waits up to `timeout` (zero: just polls;
//                           absl::InfiniteDuration(): until something is
//                           ready or Wake() is called), runs the callbacks of
//                           the watches that are ready and returns how many
//                           it ran. Called on the loop thread only, with a
//                           timeout that is never negative and already
//                           shortened to the earliest timer: the backend
//                           must honour it to the nanosecond or round it up,
//                           never down. It calls WaitEnded() as soon as its
//                           wait returns. It runs neither timers nor posted
//                           work: LoopBase runs the due timers, then the
//                           queue, right after it returns.
//   LoopEntered()/LoopLeft() (optional) are called on the loop thread when
//                           RunOnce(), Run() or RunUntil() starts to iterate
//                           and when it returns (nested calls too), so that a
//                           backend knows whether its loop thread is in the
//                           loop. LoopBase holds no lock during them.
//   Wake()                  makes a wait in DispatchReady() under way, or the
//                           next one, return soon. Called from any thread,
//                           with no lock of LoopBase held; several calls may
//                           coalesce into one wake-up. The mechanism (an
//                           eventfd write, an io_uring NOP) is the backend's.
//
// What LoopBase guarantees (the contract of core/event_loop.h):
//   - The first thread to call RunOnce() or Run() becomes the loop thread for
//     the loop's whole life; from any other thread they return
//     kPermissionDenied and do nothing.
//   - RunOnce() with a negative timeout returns kInvalidArgument; Run() or
//     RunUntil() re-entered from a callback or posted work returns
//     kFailedPrecondition.
//   - Run() returns OK after Stop(), or the first error of DispatchReady().
//     A Stop() before Run() makes the next Run() return at once; Stops that
//     come before a Run() notices them count as one. RunUntil() is Run()
//     whose every wait is also shortened to its deadline (converted to the
//     monotonic clock once, as RunAt's): it returns kDeadlineExceeded when
//     the clock reads the deadline or later between iterations, after at
//     least one.
//   - Post() queues work from any thread and calls Wake(); the work runs on
//     the loop thread in the order posted, after the ready callbacks of the
//     same iteration. Work posted while the queue runs waits for the next
//     iteration. Work still queued when the loop is destroyed is destroyed
//     without running. Post() of empty work returns kInvalidArgument. When
//     Wake() fails, Post() returns its error, yet the work stays queued and
//     runs at the loop's next iteration: do not post it again.
//
//   - Socket I/O (core/event_loop.h): LoopBase checks the thread and the
//     arguments (CheckIo) and runs the operations on readiness
//     (socket_io.h, ReadinessIo) over the backend's Watch/Unwatch. A
//     backend with completion I/O overrides the six calls and hands to
//     LoopBase's (LoopBase::AcceptEach, ...) whatever it cannot do itself.
//     StartIo() checks a call and hands out its id from one sequence for
//     both paths, so CancelIo, PauseReceive or ResumeReceive of an id a
//     backend does not know goes to LoopBase's.
//   - Defer(work) (the loop thread only) runs `work` after the posted work
//     of the current iteration, or of the next one when called between
//     iterations, whose wait it then skips. No lock, no system call: the
//     loop thread's own queue.
//
//   - Timers (core/event_loop.h): armed and cancelled on the loop thread
//     without a lock or a system call; from other threads, handed to the
//     loop, which is woken when it must be. Each iteration computes its wait
//     from the earliest timer, and after the wait reads the monotonic clock
//     and runs the timers due by then (so none runs early), before the
//     posted work. A timer closure that calls RunOnce() gets no timers run
//     in that nested iteration. Pending closures are destroyed with the
//     loop, after the backend's destructor: they must not call into it.
//
// Error messages start with the backend's label ("epoll loop: ...").
//
// Thread safety: Post, Stop, IsLoopThread, RunAt, RunAfter and Cancel from
// any thread; RunOnce, Run and the socket I/O from the loop thread (refused
// elsewhere, see above); Defer from the loop thread only (unchecked).

#include <atomic>
#include <cstdint>
#include <deque>
#include <limits>
#include <memory>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "core/counters.h"
#include "core/event_loop.h"
#include "core/mutex.h"
#include "core/scheduler.h"
#include "event_loops/loop_base/loop_timers.h"
#include "event_loops/loop_base/socket_io.h"

namespace taskrt {

class LoopBase : public EventLoop {
 public:
  absl::Status Post(Work work) final ABSL_LOCKS_EXCLUDED(posted_mu_);
  absl::StatusOr<int> RunOnce(absl::Duration timeout) final ABSL_LOCKS_EXCLUDED(posted_mu_);
  absl::Status Run() final ABSL_LOCKS_EXCLUDED(posted_mu_);
  absl::Status RunUntil(absl::Time deadline) final ABSL_LOCKS_EXCLUDED(posted_mu_);
  void Stop() final;
  bool IsLoopThread() const final;
  absl::StatusOr<TimerId> RunAt(absl::Time deadline, std::function<void()> closure) final;
  absl::StatusOr<TimerId> RunAfter(absl::Duration delay, std::function<void()> closure) final;
  absl::Status Cancel(TimerId id) final;

  absl::StatusOr<IoId> AcceptEach(int listen_fd, AcceptCallback on_accept) override;
  absl::StatusOr<IoId> ReceiveEach(int fd, ReceiveCallback on_data) override;
  absl::StatusOr<IoId> SendAll(int fd, std::string bytes, SendCallback on_sent) override;
  absl::Status CancelIo(IoId id) override;
  absl::Status PauseReceive(IoId id) override;
  absl::Status ResumeReceive(IoId id) override;
  LoopMetrics metrics() const final;

 protected:
  // `label` starts every error message of the loop ("epoll loop").
  explicit LoopBase(std::string label) : label_(std::move(label)) {}

  virtual absl::StatusOr<int> DispatchReady(absl::Duration timeout) = 0;
  virtual absl::Status Wake() = 0;
  virtual void LoopEntered() {}
  virtual void LoopLeft() {}

  const std::string& label() const { return label_; }

  // Whether `fd` has a socket operation under way. A backend with
  // completion I/O overrides it to ask its own operations.
  virtual bool HasIoOn(int fd) const;
  // The checks of every socket operation: the calling thread (claimed as
  // RunOnce claims it), a non-empty callback, and `fd` (CheckSocket; taken
  // as checked for a send or receive on an fd that HasIoOn()).
  absl::Status CheckIo(const char* operation, int fd, bool has_callback,
                       loop_internal::SocketUse use);
  // Checks a socket operation (CheckIo) and starts it as `start(id)` with
  // a fresh operation id, which it returns when `start` succeeds.
  template <typename Start>
  absl::StatusOr<IoId> StartIo(const char* operation, int fd, bool has_callback,
                               loop_internal::SocketUse use, Start&& start) {
    if (absl::Status checked = CheckIo(operation, fd, has_callback, use); !checked.ok()) {
      return checked;
    }
    const IoId id = next_io_id_++;
    if (absl::Status started = start(id); !started.ok()) return started;
    io_started_.Add();
    return id;
  }
  void Defer(Work work);

  // Tells LoopBase that the blocking wait of DispatchReady() is over. Until
  // then a timer armed on the loop thread (by another task of a cooperative
  // scheduler sharing the thread) wakes the loop, whose wait may end too
  // late for it.
  void WaitEnded() { waiting_ = false; }

 private:
  // RunLoop's deadline for Run(): none (no monotonic time reaches it).
  static constexpr uint64_t kNoDeadline = std::numeric_limits<uint64_t>::max();

  absl::Status ClaimLoopThread(const char* operation);
  // CancelIo, PauseReceive and ResumeReceive: the thread check, then
  // `call` on the ReadinessIo that owns `id`, or kNotFound.
  template <typename Call>
  absl::Status OnIo(const char* operation, IoId id, Call&& call);
  // Wake(), counted in the metrics.
  absl::Status RequestWake();
  // Run() and RunUntil(): iterates until Stop() or the monotonic
  // `deadline_ns` (kNoDeadline: none); `operation` names the call in errors.
  absl::Status RunLoop(const char* operation, uint64_t deadline_ns)
      ABSL_LOCKS_EXCLUDED(posted_mu_);
  // One iteration: the ready callbacks, then the posted work.
  absl::StatusOr<int> Iterate(absl::Duration timeout) ABSL_LOCKS_EXCLUDED(posted_mu_);
  int RunPosted() ABSL_LOCKS_EXCLUDED(posted_mu_);
  int RunDeferred();
  loop_internal::ReadinessIo& readiness_io();
  absl::StatusOr<TimerId> Arm(uint64_t deadline_ns, std::function<void()>& closure);

  const std::string label_;
  std::atomic<std::thread::id> loop_thread_{};
  std::atomic<bool> stop_requested_{false};
  bool running_ = false;  // the loop thread's only
  bool waiting_ = false;  // the loop thread's only: in DispatchReady's wait

  loop_internal::LoopTimers timers_{label_};

  // The loop thread's only.
  // Metrics (metrics()): the loop thread writes the owned ones.
  OwnedCounter iterations_, callbacks_run_, timers_run_, posted_run_, io_started_;
  // Other threads add to it: padded to a line of its own, away from the
  // loop's (padding rather than alignas, which a loop on a stack would
  // have to honour, and AddressSanitizer's fake stack does not).
  [[maybe_unused]] char wake_requests_before_[64] = {};
  SharedCounter wake_requests_;
  [[maybe_unused]] char wake_requests_after_[64] = {};
  std::deque<Work> deferred_;
  IoId next_io_id_ = 1;
  std::unique_ptr<loop_internal::ReadinessIo> readiness_io_;  // made on first use

  Mutex posted_mu_;
  std::deque<Work> posted_ ABSL_GUARDED_BY(posted_mu_);
};

}  // namespace taskrt

#endif  // TASKRT_EVENT_LOOPS_LOOP_BASE_LOOP_BASE_H_
