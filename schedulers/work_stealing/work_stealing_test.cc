// Work-stealing specifics the conformance suite does not reach: the
// lock-free injection queue racing Shutdown, overflow of a full deque, and
// TaskGroup's per-thread job block cache under cross-thread frees and
// thread exit.

#include "schedulers/work_stealing/work_stealing.h"

#include <array>
#include <atomic>
#include <cstdint>
#include <future>
#include <memory>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "core/task_group.h"
#include "gtest/gtest.h"

namespace taskrt {
namespace {

std::unique_ptr<Scheduler> MakePool(size_t workers) {
  absl::StatusOr<std::unique_ptr<Scheduler>> pool = NewWorkStealingPool(workers);
  EXPECT_TRUE(pool.ok()) << pool.status();
  return pool.ok() ? *std::move(pool) : nullptr;
}

// Outside threads schedule as fast as they can while Shutdown runs: every
// unit accepted runs exactly once, and every refusal is kFailedPrecondition.
TEST(WorkStealingTest, ScheduleRacingShutdownRunsEveryAcceptedUnit) {
  constexpr int kProducers = 3;
  for (int round = 0; round < 20; ++round) {
    std::unique_ptr<Scheduler> pool = MakePool(2);
    ASSERT_NE(pool, nullptr);
    std::atomic<int> accepted{0};
    std::atomic<int> ran{0};
    std::atomic<int> wrong_errors{0};
    std::atomic<int> producing{0};
    std::vector<std::thread> producers;
    for (int p = 0; p < kProducers; ++p) {
      producers.emplace_back([&] {
        producing.fetch_add(1);
        while (true) {
          absl::Status status = pool->Schedule([&] { ran.fetch_add(1); });
          if (status.ok()) {
            accepted.fetch_add(1);
            continue;
          }
          if (status.code() != absl::StatusCode::kFailedPrecondition) wrong_errors.fetch_add(1);
          return;
        }
      });
    }
    while (producing.load() < kProducers || accepted.load() < 1000) std::this_thread::yield();
    ASSERT_TRUE(pool->Shutdown().ok());
    const int ran_at_shutdown = ran.load();
    for (auto& producer : producers) producer.join();
    EXPECT_EQ(wrong_errors.load(), 0);
    EXPECT_EQ(ran_at_shutdown, accepted.load()) << "round " << round;
    EXPECT_EQ(ran.load(), accepted.load());
  }
}

// More children than a deque holds, queued from inside one unit that does
// not help: the rest overflow to the injection queue and still run.
TEST(WorkStealingTest, AFullDequeOverflowsToTheInjectionQueue) {
  for (size_t workers : {1, 2}) {
    std::unique_ptr<Scheduler> pool = MakePool(workers);
    ASSERT_NE(pool, nullptr);
    constexpr int kChildren = 5000;  // the deque holds 1024
    std::atomic<int> ran{0};
    std::atomic<int> refused{0};
    std::promise<void> queued;
    ASSERT_TRUE(pool->Schedule([&] {
      for (int i = 0; i < kChildren; ++i) {
        if (!pool->Schedule([&] { ran.fetch_add(1); }).ok()) refused.fetch_add(1);
      }
      queued.set_value();
    }).ok());
    queued.get_future().wait();
    ASSERT_TRUE(pool->Shutdown().ok());
    EXPECT_EQ(refused.load(), 0);
    EXPECT_EQ(ran.load(), kChildren) << workers << " workers";
  }
}

// Holds every worker of `pool` until Open(), so that work queued meanwhile
// is still pending.
class WorkerGate {
 public:
  WorkerGate(Scheduler& pool, size_t workers) : opened_(open_.get_future().share()) {
    for (size_t i = 0; i < workers; ++i) {
      // The task owns a copy of the future: it may still be returning from
      // wait() after the gate is gone.
      EXPECT_TRUE(pool.Schedule([this, opened = opened_] {
        entered_.fetch_add(1);
        opened.wait();
      }).ok());
    }
    while (entered_.load() < static_cast<int>(workers)) std::this_thread::yield();
  }
  void Open() { open_.set_value(); }

 private:
  std::promise<void> open_;
  std::shared_future<void> opened_;
  std::atomic<int> entered_{0};
};

// Children spawned by threads that exit before the children run: their
// blocks belong to caches whose threads are gone, and are freed by the
// workers (AddressSanitizer builds bypass the cache; ThreadSanitizer checks
// the hand-over).
TEST(WorkStealingTest, ChildrenOfThreadsThatExitedStillRun) {
  std::unique_ptr<Scheduler> pool = MakePool(2);
  ASSERT_NE(pool, nullptr);
  constexpr int kThreads = 4;
  constexpr int kChildrenEach = 3000;  // more than one cache list holds
  std::atomic<int> ran{0};
  TaskGroup group(*pool);
  WorkerGate gate(*pool, 2);
  std::vector<std::thread> spawners;
  for (int t = 0; t < kThreads; ++t) {
    spawners.emplace_back([&] {
      for (int i = 0; i < kChildrenEach; ++i) {
        EXPECT_TRUE(group.Spawn([&ran] { ran.fetch_add(1); }).ok());
      }
    });
  }
  for (auto& spawner : spawners) spawner.join();  // their caches are released
  gate.Open();
  group.Wait();
  EXPECT_EQ(ran.load(), kThreads * kChildrenEach);
}

// Spawns from outside come back to the spawning thread's cache through the
// remote list, round after round; more than a list holds goes to delete.
TEST(WorkStealingTest, OutsideSpawnsRecycleBlocksAcrossRounds) {
  std::unique_ptr<Scheduler> pool = MakePool(2);
  ASSERT_NE(pool, nullptr);
  for (int round = 0; round < 5; ++round) {
    constexpr int kChildren = 50000;
    std::atomic<int> ran{0};
    TaskGroup group(*pool);
    for (int i = 0; i < kChildren; ++i) {
      ASSERT_TRUE(group.Spawn([&ran] { ran.fetch_add(1, std::memory_order_relaxed); }).ok());
    }
    group.Wait();
    EXPECT_EQ(ran.load(), kChildren) << "round " << round;
  }
}

// Children too large or too aligned for a cache block take operator new;
// both kinds mix with cached ones in one group.
TEST(WorkStealingTest, LargeAndOverAlignedChildrenBypassTheCache) {
  std::unique_ptr<Scheduler> pool = MakePool(2);
  ASSERT_NE(pool, nullptr);
  // 32: above operator new's default alignment, and no more than
  // AddressSanitizer's fake stack frames give a local.
  struct alignas(32) Aligned {
    int value;
  };
  std::atomic<int64_t> sum{0};
  std::atomic<int> misaligned{0};
  {
    TaskGroup group(*pool);
    for (int i = 0; i < 1000; ++i) {
      std::array<int64_t, 32> large{};
      large.fill(1);
      ASSERT_TRUE(group.Spawn([&sum, large] {
        int64_t total = 0;
        for (int64_t v : large) total += v;
        sum.fetch_add(total);
      }).ok());
      Aligned aligned{2};
      ASSERT_TRUE(group.Spawn([&sum, &misaligned, aligned] {
        if (reinterpret_cast<uintptr_t>(&aligned) % alignof(Aligned) != 0) misaligned.fetch_add(1);
        sum.fetch_add(aligned.value);
      }).ok());
      ASSERT_TRUE(group.Spawn([&sum] { sum.fetch_add(3); }).ok());
    }
  }  // the destructor waits
  EXPECT_EQ(sum.load(), 1000 * (32 + 2 + 3));
  EXPECT_EQ(misaligned.load(), 0);
}

TEST(WorkStealingMetricsTest, AChildWhoseParentBlocksItsWorkerIsStolen) {
  std::unique_ptr<Scheduler> pool = MakePool(2);
  ASSERT_NE(pool, nullptr);
  std::promise<std::thread::id> child_ran;
  std::promise<void> parent_done;
  ASSERT_TRUE(pool->Schedule([&] {
    const std::thread::id parent = std::this_thread::get_id();
    // Onto this worker's own deque; this worker then blocks its thread
    // (not a wait that helps), so only the other worker can run the child,
    // and it can only reach it by stealing.
    EXPECT_TRUE(pool->Schedule([&] { child_ran.set_value(std::this_thread::get_id()); }).ok());
    const std::thread::id child = child_ran.get_future().get();
    EXPECT_NE(child, parent);
    parent_done.set_value();
  }).ok());
  parent_done.get_future().wait();
  const SchedulerMetrics metrics = pool->metrics();
  EXPECT_GE(metrics.steals, 1u);
  EXPECT_GE(metrics.steal_attempts, metrics.steals);
  EXPECT_EQ(metrics.spawned_inside, 1u);
  EXPECT_EQ(metrics.spawned_outside, 1u);
  EXPECT_EQ(metrics.units_started, 2u);
  EXPECT_EQ(metrics.helps, 0u);
}

TEST(WorkStealingMetricsTest, HelpingCountsAndAOneWorkerPoolNeverSteals) {
  std::unique_ptr<Scheduler> pool = MakePool(1);
  ASSERT_NE(pool, nullptr);
  std::promise<bool> helped;
  ASSERT_TRUE(pool->Schedule([&] {
    bool child_ran = false;
    EXPECT_TRUE(pool->Schedule([&] { child_ran = true; }).ok());
    // The child is on this worker's deque: helping runs it here.
    const bool ran_one = pool->RunPendingWork();
    helped.set_value(ran_one && child_ran);
  }).ok());
  EXPECT_TRUE(helped.get_future().get());
  // The parent unit may still be returning: wait for the count of units
  // started, which both have.
  const SchedulerMetrics metrics = pool->metrics();
  EXPECT_EQ(metrics.helps, 1u);
  EXPECT_EQ(metrics.units_started, 2u);
  EXPECT_EQ(metrics.steals, 0u);
  EXPECT_EQ(metrics.steal_attempts, 0u);
}

TEST(WorkStealingMetricsTest, AUnitFromOutsideWakesTheSleepingWorkerOnce) {
  std::unique_ptr<Scheduler> pool = MakePool(1);
  ASSERT_NE(pool, nullptr);
  // The lone worker finds nothing, spins, and parks.
  while (pool->metrics().parks == 0) std::this_thread::yield();
  EXPECT_EQ(pool->metrics().wakes, 0u);
  std::promise<void> ran;
  ASSERT_TRUE(pool->Schedule([&] { ran.set_value(); }).ok());
  ran.get_future().wait();
  EXPECT_EQ(pool->metrics().wakes, 1u);
  EXPECT_EQ(pool->metrics().queue_high_water, 1u);  // the one unit, in the injection queue
}

}  // namespace
}  // namespace taskrt
