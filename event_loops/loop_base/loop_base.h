#ifndef TASKRT_EVENT_LOOPS_LOOP_BASE_LOOP_BASE_H_
#define TASKRT_EVENT_LOOPS_LOOP_BASE_LOOP_BASE_H_

// LoopBase: what every event-loop backend shares, written once so the
// backends cannot drift: the loop-thread claim, Run/Stop, and the queue of
// posted work. A backend derives from it and supplies the rest of
// core/event_loop.h (Watch, Unwatch, name) plus two hooks:
//
//   DispatchReady(timeout)  waits up to `timeout` (zero: just polls;
//                           absl::InfiniteDuration(): until something is
//                           ready or Wake() is called), runs the callbacks of
//                           the watches that are ready and returns how many
//                           it ran. Called on the loop thread only, with a
//                           timeout that is never negative. It does not run
//                           posted work: LoopBase runs the queue right after
//                           it returns.
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
//   - RunOnce() with a negative timeout returns kInvalidArgument; Run()
//     re-entered from a callback or posted work returns kFailedPrecondition.
//   - Run() returns OK after Stop(), or the first error of DispatchReady().
//     A Stop() before Run() makes the next Run() return at once; Stops that
//     come before a Run() notices them count as one.
//   - Post() queues work from any thread and calls Wake(); the work runs on
//     the loop thread in the order posted, after the ready callbacks of the
//     same iteration. Work posted while the queue runs waits for the next
//     iteration. Work still queued when the loop is destroyed is destroyed
//     without running. Post() of empty work returns kInvalidArgument. When
//     Wake() fails, Post() returns its error, yet the work stays queued and
//     runs at the loop's next iteration: do not post it again.
//
// Error messages start with the backend's label ("epoll loop: ...").
//
// Thread safety: Post, Stop and IsLoopThread from any thread; RunOnce and
// Run from the loop thread (refused elsewhere, see above).

#include <atomic>
#include <deque>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "core/event_loop.h"
#include "core/mutex.h"
#include "core/scheduler.h"

namespace taskrt {

class LoopBase : public EventLoop {
 public:
  absl::Status Post(Work work) final ABSL_LOCKS_EXCLUDED(posted_mu_);
  absl::StatusOr<int> RunOnce(absl::Duration timeout) final ABSL_LOCKS_EXCLUDED(posted_mu_);
  absl::Status Run() final ABSL_LOCKS_EXCLUDED(posted_mu_);
  void Stop() final;
  bool IsLoopThread() const final;

 protected:
  // `label` starts every error message of the loop ("epoll loop").
  explicit LoopBase(std::string label) : label_(std::move(label)) {}

  virtual absl::StatusOr<int> DispatchReady(absl::Duration timeout) = 0;
  virtual absl::Status Wake() = 0;

  const std::string& label() const { return label_; }

 private:
  absl::Status ClaimLoopThread(const char* operation);
  // One iteration: the ready callbacks, then the posted work.
  absl::StatusOr<int> Iterate(absl::Duration timeout) ABSL_LOCKS_EXCLUDED(posted_mu_);
  int RunPosted() ABSL_LOCKS_EXCLUDED(posted_mu_);

  const std::string label_;
  std::atomic<std::thread::id> loop_thread_{};
  std::atomic<bool> stop_requested_{false};
  bool running_ = false;  // the loop thread's only

  Mutex posted_mu_;
  std::deque<Work> posted_ ABSL_GUARDED_BY(posted_mu_);
};

}  // namespace taskrt

#endif  // TASKRT_EVENT_LOOPS_LOOP_BASE_LOOP_BASE_H_
