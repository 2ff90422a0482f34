#ifndef TASKRT_TESTS_CONFORMANCE_CONFORMANCE_H_
#define TASKRT_TESTS_CONFORMANCE_CONFORMANCE_H_

// The one conformance suite, after gRPC's EventEngine test suite: each group
// of tests (scheduler, channel, task, event loop) is a testonly, alwayslink
// library; each backend combination is a small test target whose main()
// picks its backends from the registry (RunConformanceSuiteFromFlags) and
// links the groups; matrix.bzl generates one target per combination. Every group runs once per worker count of the combination, and
// every test prints which backends it ran on.
//
// A backend that cannot run here (its factory returns kUnavailable, such as
// io_uring refused by the kernel) makes each test skip with that reason
// printed; it never passes silently.

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "core/channel.h"
#include "core/event_loop.h"
#include "core/scheduler.h"
#include "gtest/gtest.h"

namespace taskrt::conformance {

struct Factories {
  std::function<absl::StatusOr<std::unique_ptr<Scheduler>>(size_t workers)> make_scheduler;
  // Empty for a scheduler that carries its tasks' messages itself
  // (runs_named_entries_elsewhere): channels_ is then null, and only groups
  // that need no channel factory may be linked.
  std::function<absl::StatusOr<std::unique_ptr<ChannelFactory>>()> make_channels;
  std::function<absl::StatusOr<std::unique_ptr<EventLoop>>()> make_loop;
  // Each group runs once per entry: one worker, and several.
  std::vector<size_t> worker_counts = {1, 4};
  // Test suites this combination cannot run (a gtest negative filter, e.g.
  // "Conformance/SplConformance.*"), each printed with `excluded_because`.
  std::vector<std::string> excluded_suites;
  std::string excluded_because;
};

// Registers `factories` and runs every linked test group. Call from main().
int RunConformanceSuite(int argc, char** argv, Factories factories);

// Picks the combination from the registry by --scheduler=NAME,
// --channel=NAME and --event_loop=NAME (which it removes from argv), then
// runs the suite as RunConformanceSuite does. Groups a scheduler lacks the
// capabilities for (SPL's needs single-thread stackful tasks) are filtered
// out with the reason printed; a scheduler that honours a worker count runs
// every group with one worker and with four. A missing or unknown name is
// an error (exit code 2), never a silent default.
int RunConformanceSuiteFromFlags(int argc, char** argv);

// The worker counts registered; for INSTANTIATE_TEST_SUITE_P.
std::vector<size_t> WorkerCounts();

// Base fixture: builds the scheduler (with GetParam() workers), the channel
// factory and the loop, prints them, and skips with the reason when a
// backend is unavailable here. TearDown shuts the scheduler down.
class ConformanceTest : public ::testing::TestWithParam<size_t> {
 protected:
  void SetUp() override;
  void TearDown() override;

  // Runs the loop on this thread until `done()` or a generous bound (a hang
  // guard, not a speed check); returns whether `done()` became true.
  bool PumpUntil(const std::function<bool()>& done);

  // Fresh backends of this combination, for tests that destroy their own.
  absl::StatusOr<std::unique_ptr<Scheduler>> NewScheduler() const;
  absl::StatusOr<std::unique_ptr<EventLoop>> NewLoop() const;

  std::unique_ptr<Scheduler> scheduler_;
  std::unique_ptr<ChannelFactory> channels_;
  std::unique_ptr<EventLoop> loop_;
};

// Prints "Workers1", "Workers4": parameterised test names say the config.
std::string WorkerCountName(const ::testing::TestParamInfo<size_t>& info);

// fib(n) on `scheduler`, forking both recursive calls at every level into a
// TaskGroup and waiting: recursive fork-join, where a worker helps in Wait.
int ForkingFib(Scheduler& scheduler, int n);

// A one-shot event built on std primitives (visible to ThreadSanitizer).
class Notification {
 public:
  void Notify() {
    std::lock_guard<std::mutex> lock(mutex_);
    notified_ = true;
    cv_.notify_all();
  }
  bool HasBeenNotified() {
    std::lock_guard<std::mutex> lock(mutex_);
    return notified_;
  }
  // Waits; false if the hang guard expired first.
  bool WaitForNotification() {
    std::unique_lock<std::mutex> lock(mutex_);
    return cv_.wait_for(lock, kHangGuard, [this] { return notified_; });
  }

  static constexpr std::chrono::seconds kHangGuard{120};

 private:
  std::mutex mutex_;
  std::condition_variable cv_;
  bool notified_ = false;
};

// The hang guard as a deadline from now, for the runtime's *Until calls.
inline absl::Time HangGuardDeadline() {
  return absl::Now() + absl::FromChrono(Notification::kHangGuard);
}

// Counts down to zero; Wait returns false if the hang guard expired first.
class CountDown {
 public:
  explicit CountDown(int count) : count_(count) {}
  void Decrement() {
    std::lock_guard<std::mutex> lock(mutex_);
    if (--count_ == 0) cv_.notify_all();
  }
  bool Wait() {
    std::unique_lock<std::mutex> lock(mutex_);
    return cv_.wait_for(lock, Notification::kHangGuard, [this] { return count_ <= 0; });
  }

 private:
  std::mutex mutex_;
  std::condition_variable cv_;
  int count_;
};

}  // namespace taskrt::conformance

#endif  // TASKRT_TESTS_CONFORMANCE_CONFORMANCE_H_
