// Conformance group: the Scheduler contract (core/scheduler.h).

#include <atomic>
#include <memory>
#include <thread>

#include "core/scheduler.h"
#include "gtest/gtest.h"
#include "tests/conformance/conformance.h"

namespace taskrt::conformance {
namespace {

using SchedulerConformance = ConformanceTest;

TEST_P(SchedulerConformance, RunsManyUnitsExactlyOnce) {
  constexpr int kUnits = 10000;
  std::atomic<int> ran{0};
  CountDown all_ran(kUnits);
  for (int i = 0; i < kUnits; ++i) {
    ASSERT_TRUE(scheduler_->Schedule([&] {
      ran.fetch_add(1);
      all_ran.Decrement();
    }).ok());
  }
  ASSERT_TRUE(all_ran.Wait());
  ASSERT_TRUE(scheduler_->Shutdown().ok());
  EXPECT_EQ(ran.load(), kUnits);
}

TEST_P(SchedulerConformance, NeverRunsWorkInlineInSchedule) {
  thread_local bool inside_work = false;
  std::atomic<bool> nested_ran_inline{false};
  std::atomic<bool> outside_ran_on_caller{false};
  Notification done;
  const std::thread::id caller = std::this_thread::get_id();
  ASSERT_TRUE(scheduler_->Schedule([&] {
    if (std::this_thread::get_id() == caller) outside_ran_on_caller = true;
    inside_work = true;
    // If Schedule ran this inline, inside_work would still be true.
    EXPECT_TRUE(scheduler_->Schedule([&] {
      if (inside_work) nested_ran_inline = true;
      done.Notify();
    }).ok());
    inside_work = false;
  }).ok());
  ASSERT_TRUE(done.WaitForNotification());
  EXPECT_FALSE(outside_ran_on_caller);
  EXPECT_FALSE(nested_ran_inline);
}

TEST_P(SchedulerConformance, NestedSchedulingFromInsideWork) {
  constexpr int kDepth = 200;
  std::atomic<int> depth_reached{0};
  Notification done;
  std::function<void(int)> step = [&](int depth) {
    depth_reached = depth;
    if (depth == kDepth) {
      done.Notify();
      return;
    }
    EXPECT_TRUE(scheduler_->IsCurrentThreadOwned());
    ASSERT_TRUE(scheduler_->Schedule([&, depth] { step(depth + 1); }).ok());
  };
  ASSERT_TRUE(scheduler_->Schedule([&] { step(1); }).ok());
  ASSERT_TRUE(done.WaitForNotification());
  EXPECT_EQ(depth_reached.load(), kDepth);
  EXPECT_FALSE(scheduler_->IsCurrentThreadOwned());
}

TEST_P(SchedulerConformance, ShutdownRunsPendingWork) {
  constexpr int kPending = 100;
  std::atomic<int> ran{0};
  // Occupy every worker until shutdown has begun, so the units below are
  // still queued when it starts. Shutdown beginning is observable: Schedule
  // starts to refuse work.
  std::atomic<int> blockers_started{0};
  const size_t workers = scheduler_->concurrency();
  for (size_t i = 0; i < workers; ++i) {
    ASSERT_TRUE(scheduler_->Schedule([&] {
      blockers_started.fetch_add(1);
      while (scheduler_->Schedule([] {}).ok()) std::this_thread::yield();
    }).ok());
  }
  for (int i = 0; i < kPending; ++i) {
    ASSERT_TRUE(scheduler_->Schedule([&] { ran.fetch_add(1); }).ok());
  }
  ASSERT_TRUE(scheduler_->Shutdown().ok());
  EXPECT_EQ(ran.load(), kPending);
  EXPECT_EQ(blockers_started.load(), static_cast<int>(workers));
}

TEST_P(SchedulerConformance, ScheduleAfterShutdownIsRefused) {
  ASSERT_TRUE(scheduler_->Shutdown().ok());
  absl::Status status = scheduler_->Schedule([] {});
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition) << status;
  EXPECT_TRUE(scheduler_->Shutdown().ok()) << "a second Shutdown is a no-op";
}

TEST_P(SchedulerConformance, ShutdownFromInsideWorkIsRefusedNotADeadlock) {
  absl::Status inside_status;
  Notification done;
  ASSERT_TRUE(scheduler_->Schedule([&] {
    inside_status = scheduler_->Shutdown();
    done.Notify();
  }).ok());
  ASSERT_TRUE(done.WaitForNotification());
  EXPECT_EQ(inside_status.code(), absl::StatusCode::kFailedPrecondition) << inside_status;
  // The scheduler still works afterwards.
  Notification after;
  ASSERT_TRUE(scheduler_->Schedule([&] { after.Notify(); }).ok());
  EXPECT_TRUE(after.WaitForNotification());
}

TEST_P(SchedulerConformance, EmptyWorkIsRefused) {
  absl::Status status = scheduler_->Schedule(Work());
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
}

TEST_P(SchedulerConformance, MetricsCountUnitsSpawnedFromOutsideExactly) {
  constexpr int kUnits = 100;
  const SchedulerMetrics before = scheduler_->metrics();
  EXPECT_EQ(before.units_started, 0u);
  EXPECT_EQ(before.spawned_outside, 0u);
  CountDown all_ran(kUnits);
  for (int i = 0; i < kUnits; ++i) {
    ASSERT_TRUE(scheduler_->Schedule([&] { all_ran.Decrement(); }).ok());
  }
  ASSERT_TRUE(all_ran.Wait());
  const SchedulerMetrics after = scheduler_->metrics();
  EXPECT_EQ(after.spawned_outside, static_cast<uint64_t>(kUnits));
  EXPECT_EQ(after.spawned_inside, 0u);
  EXPECT_EQ(after.units_started, static_cast<uint64_t>(kUnits));
  EXPECT_LE(after.steals, after.steal_attempts);
  EXPECT_LE(after.helps, after.units_started);
  // Refused work is not counted.
  ASSERT_TRUE(scheduler_->Shutdown().ok());
  EXPECT_FALSE(scheduler_->Schedule([] {}).ok());
  EXPECT_EQ(scheduler_->metrics().spawned_outside, static_cast<uint64_t>(kUnits));
}

TEST_P(SchedulerConformance, MetricsCountUnitsSpawnedFromInsideApart) {
  constexpr int kChildren = 50;
  CountDown all_ran(kChildren + 1);
  ASSERT_TRUE(scheduler_->Schedule([&] {
    for (int i = 0; i < kChildren; ++i) {
      EXPECT_TRUE(scheduler_->Schedule([&] { all_ran.Decrement(); }).ok());
    }
    all_ran.Decrement();
  }).ok());
  ASSERT_TRUE(all_ran.Wait());
  const SchedulerMetrics metrics = scheduler_->metrics();
  EXPECT_EQ(metrics.spawned_outside, 1u);
  EXPECT_EQ(metrics.spawned_inside, static_cast<uint64_t>(kChildren));
  EXPECT_EQ(metrics.units_started, static_cast<uint64_t>(kChildren + 1));
  // The children queued behind their parent, all 50 before any could run
  // on a one-thread scheduler; at least one at a time elsewhere.
  EXPECT_GE(metrics.queue_high_water, 1u);
}

TEST_P(SchedulerConformance, MetricsCountAnIdleWorkerParking) {
  Notification ran;
  ASSERT_TRUE(scheduler_->Schedule([&] { ran.Notify(); }).ok());
  ASSERT_TRUE(ran.WaitForNotification());
  // With nothing left to do, every backend's workers go to sleep; wait for
  // the count to show it (no timing: the loop ends when the count moves).
  while (scheduler_->metrics().parks == 0) std::this_thread::yield();
  EXPECT_EQ(scheduler_->metrics().units_started, 1u);
}

TEST_P(SchedulerConformance, ReportsItsConcurrencyAndName) {
  EXPECT_GE(scheduler_->concurrency(), 1u);
  EXPECT_FALSE(scheduler_->name().empty());
}

INSTANTIATE_TEST_SUITE_P(Conformance, SchedulerConformance, ::testing::ValuesIn(WorkerCounts()),
                         WorkerCountName);

}  // namespace
}  // namespace taskrt::conformance
