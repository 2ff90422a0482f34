// LoopBase against a fake backend whose "readiness" is a flag set by Wake():
// the claim, Run/Stop and the posted-work queue, without a kernel object.

#include "event_loops/loop_base/loop_base.h"

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "core/mutex.h"
#include "gtest/gtest.h"

namespace taskrt {
namespace {

class FakeLoop final : public LoopBase {
 public:
  FakeLoop() : LoopBase("fake loop") {}

  absl::StatusOr<WatchId> Watch(Readiness, std::function<void()>) override {
    return absl::UnimplementedError("fake loop: no watches");
  }
  absl::Status Unwatch(WatchId) override { return absl::UnimplementedError("no watches"); }
  std::string name() const override { return "fake"; }

  // What the next DispatchReady() returns (after running `ready`, if set).
  void FailDispatch(absl::Status status) {
    MutexLock lock(&mu_);
    dispatch_error_ = std::move(status);
  }
  void FailWake(absl::Status status) {
    MutexLock lock(&mu_);
    wake_error_ = std::move(status);
  }
  // Runs as the one ready callback of the next DispatchReady().
  void SetReady(std::function<void()> ready) {
    MutexLock lock(&mu_);
    ready_ = std::move(ready);
  }
  int wakes() {
    MutexLock lock(&mu_);
    return wakes_;
  }
  std::vector<absl::Duration> timeouts() {
    MutexLock lock(&mu_);
    return timeouts_;
  }

 protected:
  absl::StatusOr<int> DispatchReady(absl::Duration timeout) override {
    std::function<void()> ready;
    {
      MutexLock lock(&mu_);
      timeouts_.push_back(timeout);
      if (timeout == absl::InfiniteDuration()) {
        woken_cv_.Wait(&mu_, [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return woken_; });
      }
      woken_ = false;
      if (!dispatch_error_.ok()) return std::exchange(dispatch_error_, absl::OkStatus());
      ready = std::exchange(ready_, nullptr);
    }
    if (!ready) return 0;
    ready();
    return 1;
  }

  absl::Status Wake() override {
    MutexLock lock(&mu_);
    ++wakes_;
    if (!wake_error_.ok()) return wake_error_;
    woken_ = true;
    woken_cv_.SignalAll();
    return absl::OkStatus();
  }

 private:
  Mutex mu_;
  CondVar woken_cv_;
  bool woken_ ABSL_GUARDED_BY(mu_) = false;
  int wakes_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Status dispatch_error_ ABSL_GUARDED_BY(mu_);
  absl::Status wake_error_ ABSL_GUARDED_BY(mu_);
  std::function<void()> ready_ ABSL_GUARDED_BY(mu_);
  std::vector<absl::Duration> timeouts_ ABSL_GUARDED_BY(mu_);
};

TEST(LoopBaseTest, PostedWorkRunsOnTheLoopThreadInOrderAfterTheReadyCallbacks) {
  FakeLoop loop;
  std::vector<std::string> order;  // the loop thread's only
  loop.SetReady([&] { order.push_back("callback"); });
  std::thread poster([&] {
    ASSERT_TRUE(loop.Post([&] { order.push_back("first"); }).ok());
    ASSERT_TRUE(loop.Post([&] { order.push_back("second"); }).ok());
  });
  poster.join();
  EXPECT_EQ(loop.wakes(), 2);
  absl::StatusOr<int> ran = loop.RunOnce(absl::ZeroDuration());
  ASSERT_TRUE(ran.ok()) << ran.status();
  EXPECT_EQ(*ran, 3);
  EXPECT_EQ(order, (std::vector<std::string>{"callback", "first", "second"}));
  EXPECT_TRUE(loop.IsLoopThread());
}

TEST(LoopBaseTest, WorkPostedByPostedWorkWaitsForTheNextIteration) {
  FakeLoop loop;
  int runs = 0;
  ASSERT_TRUE(loop.Post([&] {
                    ++runs;
                    ASSERT_TRUE(loop.Post([&] { ++runs; }).ok());
                  })
                  .ok());
  EXPECT_EQ(*loop.RunOnce(absl::ZeroDuration()), 1);
  EXPECT_EQ(runs, 1);
  EXPECT_EQ(*loop.RunOnce(absl::ZeroDuration()), 1);
  EXPECT_EQ(runs, 2);
}

TEST(LoopBaseTest, EmptyWorkAndNegativeTimeoutAreRefused) {
  FakeLoop loop;
  absl::Status posted = loop.Post(Work());
  EXPECT_EQ(posted.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(posted.message().find("fake loop: "), absl::string_view::npos) << posted;
  EXPECT_EQ(loop.wakes(), 0);
  absl::StatusOr<int> ran = loop.RunOnce(absl::Seconds(-1));
  EXPECT_EQ(ran.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(loop.timeouts().empty());
}

TEST(LoopBaseTest, OnlyTheFirstThreadToRunTheLoopMayRunIt) {
  FakeLoop loop;
  EXPECT_FALSE(loop.IsLoopThread());
  ASSERT_TRUE(loop.RunOnce(absl::ZeroDuration()).ok());
  bool ran_elsewhere = false;
  ASSERT_TRUE(loop.Post([&] { ran_elsewhere = true; }).ok());
  absl::StatusOr<int> once;
  absl::Status run;
  bool loop_thread_there = true;
  std::thread other([&] {
    once = loop.RunOnce(absl::ZeroDuration());
    run = loop.Run();
    loop_thread_there = loop.IsLoopThread();
  });
  other.join();
  EXPECT_EQ(once.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_NE(once.status().message().find("fake loop: RunOnce"), absl::string_view::npos)
      << once.status();
  EXPECT_EQ(run.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_FALSE(loop_thread_there);
  EXPECT_FALSE(ran_elsewhere);
  EXPECT_EQ(loop.timeouts().size(), 1u);  // the refused calls did not dispatch
  EXPECT_EQ(*loop.RunOnce(absl::ZeroDuration()), 1);
  EXPECT_TRUE(ran_elsewhere);
}

TEST(LoopBaseTest, StopBeforeRunMakesTheNextRunReturnAtOnce) {
  FakeLoop loop;
  loop.Stop();
  EXPECT_TRUE(loop.Run().ok());
  EXPECT_TRUE(loop.timeouts().empty());
}

TEST(LoopBaseTest, StopFromAnotherThreadEndsRun) {
  FakeLoop loop;
  bool ran = false;
  // Posted work stops the loop from another thread, so Stop() comes while
  // Run() is under way (it has taken this work from the queue).
  ASSERT_TRUE(loop.Post([&] {
                    ran = true;
                    std::thread([&] { loop.Stop(); }).join();
                  })
                  .ok());
  EXPECT_TRUE(loop.Run().ok());
  EXPECT_TRUE(ran);
  for (absl::Duration timeout : loop.timeouts()) EXPECT_EQ(timeout, absl::InfiniteDuration());
}

TEST(LoopBaseTest, StopRacingRunEndsIt) {
  // Whether Stop() comes before Run() or while it waits, Run() returns.
  FakeLoop loop;
  std::thread stopper([&] { loop.Stop(); });
  EXPECT_TRUE(loop.Run().ok());
  stopper.join();
  EXPECT_GE(loop.wakes(), 1);
}

TEST(LoopBaseTest, RunReenteredFromACallbackIsRefused) {
  FakeLoop loop;
  absl::Status inner;
  ASSERT_TRUE(loop.Post([&] {
                    inner = loop.Run();
                    loop.Stop();
                  })
                  .ok());
  EXPECT_TRUE(loop.Run().ok());
  EXPECT_EQ(inner.code(), absl::StatusCode::kFailedPrecondition) << inner;
}

// The fake never waits on a finite timeout: what RunUntil asks of the
// backend is visible in the timeouts it passes.
TEST(LoopBaseTest, RunUntilShortensTheWaitToItsDeadlineWithoutATimer) {
  FakeLoop loop;
  ASSERT_TRUE(loop.Post([&] { loop.Stop(); }).ok());
  EXPECT_TRUE(loop.RunUntil(absl::Now() + absl::Hours(1)).ok());
  const std::vector<absl::Duration> timeouts = loop.timeouts();
  ASSERT_EQ(timeouts.size(), 1u);
  EXPECT_GT(timeouts[0], absl::ZeroDuration());
  // The deadline converts to the monotonic clock at most two jitter
  // windows and a read spread late (loop_timers.cc): 5 us.
  EXPECT_LE(timeouts[0], absl::Hours(1) + absl::Microseconds(5));
}

TEST(LoopBaseTest, RunUntilAPassedDeadlineMakesOnePassThatDoesNotWait) {
  FakeLoop loop;
  int runs = 0;
  ASSERT_TRUE(loop.Post([&] { ++runs; }).ok());
  const absl::Status status = loop.RunUntil(absl::InfinitePast());
  EXPECT_EQ(status.code(), absl::StatusCode::kDeadlineExceeded) << status;
  EXPECT_EQ(runs, 1);
  EXPECT_EQ(loop.timeouts(), (std::vector<absl::Duration>{absl::ZeroDuration()}));
}

TEST(LoopBaseTest, RunUntilEndsOnADispatchError) {
  FakeLoop loop;
  loop.FailDispatch(absl::InternalError("fake loop: dispatch failed"));
  const absl::Status status = loop.RunUntil(absl::Now() + absl::Hours(1));
  EXPECT_EQ(status.code(), absl::StatusCode::kInternal) << status;
}

TEST(LoopBaseTest, ADispatchErrorEndsRunWithThatErrorAndLeavesThePostedWork) {
  FakeLoop loop;
  bool ran = false;
  ASSERT_TRUE(loop.Post([&] { ran = true; }).ok());
  loop.FailDispatch(absl::InternalError("fake loop: dispatch failed"));
  absl::Status run = loop.Run();
  EXPECT_EQ(run.code(), absl::StatusCode::kInternal) << run;
  EXPECT_FALSE(ran);
  EXPECT_EQ(*loop.RunOnce(absl::ZeroDuration()), 1);
  EXPECT_TRUE(ran);
}

TEST(LoopBaseTest, AFailedWakeUpIsReportedAndTheWorkStillRuns) {
  FakeLoop loop;
  loop.FailWake(absl::ResourceExhaustedError("fake loop: wake-up refused"));
  int runs = 0;
  absl::Status posted = loop.Post([&] { ++runs; });
  EXPECT_EQ(posted.code(), absl::StatusCode::kResourceExhausted) << posted;
  EXPECT_EQ(*loop.RunOnce(absl::ZeroDuration()), 1);
  EXPECT_EQ(runs, 1);
}

TEST(LoopBaseTest, WorkQueuedAtDestructionIsDestroyedWithoutRunning) {
  bool ran = false;
  auto alive = std::make_shared<int>(0);
  {
    FakeLoop loop;
    ASSERT_TRUE(loop.Post([&ran, keep = alive] { ran = true; }).ok());
    EXPECT_EQ(alive.use_count(), 2);
  }
  EXPECT_FALSE(ran);
  EXPECT_EQ(alive.use_count(), 1);
}

}  // namespace
}  // namespace taskrt
