// Conformance group: fork-join (core/task_group.h) and the scheduling
// behaviour that work stealing brings (stealing, waking parked
// workers, fairness). Runs on every scheduler.

#include <atomic>
#include <memory>
#include <thread>

#include "core/task_group.h"
#include "gtest/gtest.h"
#include "tests/conformance/conformance.h"

namespace taskrt::conformance {
namespace {

using ForkJoinConformance = ConformanceTest;

// Recursion depth 20 is ~22k tasks. ThreadSanitizer makes each live stackful
// task a thread of its own (__tsan_create_fiber), at about 10 ms apiece, and
// a scheduler with stackful tasks holds ~6,800 alive at once at depth 20: that is
// over a minute of the sanitizer's own work. Depth 16 (~3,200 tasks) checks
// the same recursion there.
#ifdef TASKRT_TSAN
constexpr int kForkJoinDepth = 16;
constexpr int kForkJoinFib = 987;
#else
constexpr int kForkJoinDepth = 20;
constexpr int kForkJoinFib = 6765;
#endif

TEST_P(ForkJoinConformance, RecursiveForkJoinFromInsideAWorker) {
  std::atomic<int> result{-1};
  Notification done;
  ASSERT_TRUE(scheduler_->Schedule([&] {
    result = ForkingFib(*scheduler_, kForkJoinDepth);
    done.Notify();
  }).ok());
  ASSERT_TRUE(done.WaitForNotification()) << "fork-join did not finish (deadlock?)";
  EXPECT_EQ(result.load(), kForkJoinFib);
}

TEST_P(ForkJoinConformance, WaitFromOutsideThePoolBlocksUntilAllChildrenRan) {
  constexpr int kChildren = 2000;
  std::atomic<int> ran{0};
  TaskGroup group(*scheduler_);
  for (int i = 0; i < kChildren; ++i) {
    ASSERT_TRUE(group.Spawn([&] { ran.fetch_add(1); }).ok());
  }
  group.Wait();
  EXPECT_EQ(ran.load(), kChildren);
}

TEST_P(ForkJoinConformance, ChildrenMaySpawnIntoTheirOwnGroup) {
  std::atomic<int> ran{0};
  {
    TaskGroup group(*scheduler_);
    for (int i = 0; i < 10; ++i) {
      ASSERT_TRUE(group.Spawn([&] {
        ran.fetch_add(1);
        for (int j = 0; j < 10; ++j) {
          EXPECT_TRUE(group.Spawn([&] { ran.fetch_add(1); }).ok());
        }
      }).ok());
    }
  }  // the destructor waits
  EXPECT_EQ(ran.load(), 110);
}

TEST_P(ForkJoinConformance, SpawnAfterShutdownIsRefusedAndNotCounted) {
  ASSERT_TRUE(scheduler_->Shutdown().ok());
  TaskGroup group(*scheduler_);
  absl::Status status = group.Spawn([] {});
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition) << status;
  group.Wait();  // returns: the refused child is not pending
}

TEST_P(ForkJoinConformance, IdleWorkersTakeWorkQueuedByABusyWorker) {
  if (scheduler_->concurrency() < 2) {
    GTEST_SKIP() << "needs two workers: with one, no other worker can take the work";
  }
  // A worker queues children from inside, then blocks without helping: only
  // another worker (stealing, or a shared queue) can run them.
  std::atomic<int> ran_elsewhere{0};
  Notification parent_done;
  ASSERT_TRUE(scheduler_->Schedule([&] {
    const std::thread::id parent = std::this_thread::get_id();
    auto all_ran = std::make_shared<CountDown>(100);
    for (int i = 0; i < 100; ++i) {
      EXPECT_TRUE(scheduler_->Schedule([&, parent, all_ran] {
        if (std::this_thread::get_id() != parent) ran_elsewhere.fetch_add(1);
        all_ran->Decrement();
      }).ok());
    }
    EXPECT_TRUE(all_ran->Wait()) << "queued work was not taken by an idle worker";
    parent_done.Notify();
  }).ok());
  ASSERT_TRUE(parent_done.WaitForNotification());
  EXPECT_EQ(ran_elsewhere.load(), 100);
}

TEST_P(ForkJoinConformance, WorkFromOutsideAlwaysWakesAnIdlePool) {
  // Each round lets the pool go idle (workers spin, then park) and then
  // schedules one unit from outside. A lost wake-up hangs a round.
  for (int round = 0; round < 200; ++round) {
    Notification ran;
    ASSERT_TRUE(scheduler_->Schedule([&] { ran.Notify(); }).ok());
    ASSERT_TRUE(ran.WaitForNotification()) << "round " << round << " was never run";
  }
}

TEST_P(ForkJoinConformance, SelfReschedulingWorkCannotStarveOutsideWork) {
  const int spinners = static_cast<int>(scheduler_->concurrency());
  std::atomic<bool> outside_ran{false};
  CountDown stopped(spinners);
  std::function<void()> spinner = [&] {
    if (outside_ran.load()) {
      stopped.Decrement();
      return;
    }
    EXPECT_TRUE(scheduler_->Schedule(spinner).ok());
  };
  // Occupy every worker with a self-rescheduling unit first.
  for (int i = 0; i < spinners; ++i) ASSERT_TRUE(scheduler_->Schedule(spinner).ok());
  ASSERT_TRUE(scheduler_->Schedule([&] { outside_ran = true; }).ok());
  ASSERT_TRUE(stopped.Wait()) << "outside work starved";
}

TEST_P(ForkJoinConformance, SelfReschedulingWorkCannotStarveLocalWork) {
  std::atomic<bool> local_ran{false};
  Notification stopped;
  std::function<void()> spinner = [&] {
    if (local_ran.load()) {
      stopped.Notify();
      return;
    }
    EXPECT_TRUE(scheduler_->Schedule(spinner).ok());
  };
  ASSERT_TRUE(scheduler_->Schedule([&] {
    // Both from inside: the other unit queues first, then the spinner,
    // which a newest-first worker would pick again and again.
    EXPECT_TRUE(scheduler_->Schedule([&] { local_ran = true; }).ok());
    EXPECT_TRUE(scheduler_->Schedule(spinner).ok());
  }).ok());
  ASSERT_TRUE(stopped.WaitForNotification()) << "local work starved";
}

INSTANTIATE_TEST_SUITE_P(Conformance, ForkJoinConformance, ::testing::ValuesIn(WorkerCounts()),
                         WorkerCountName);

}  // namespace
}  // namespace taskrt::conformance
