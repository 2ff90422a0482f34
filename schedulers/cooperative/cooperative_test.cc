// Backend-specific behaviour of the cooperative scheduler that the
// conformance suite does not pin down: the same-thread wake-up and
// hand-off paths that the same-thread benchmarks depend on, the place of
// deadline-woken tasks in the run order, and stacks beyond the kernel's
// map limit.

#include "schedulers/cooperative/cooperative.h"

#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <future>
#include <memory>
#include <thread>
#include <vector>

#include "backends/registry.h"
#include "core/channel.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "core/execution_context.h"
#include "core/task_group.h"
#include "gtest/gtest.h"

namespace taskrt {
namespace {

std::unique_ptr<Scheduler> NewScheduler() {
  absl::StatusOr<std::unique_ptr<Scheduler>> scheduler = NewCooperativeScheduler();
  EXPECT_TRUE(scheduler.ok()) << scheduler.status();
  return scheduler.ok() ? *std::move(scheduler) : nullptr;
}

TEST(CooperativeTest, YieldToReadyOnAnOsThreadDoesNothing) {
  EXPECT_FALSE(CurrentExecutionContext().YieldToReady());
}

TEST(CooperativeTest, YieldToReadyRunsTheReadyTasksOnceAndSaysSo) {
  std::unique_ptr<Scheduler> scheduler = NewScheduler();
  ASSERT_NE(scheduler, nullptr);
  std::vector<int> order;  // all on the scheduler's thread
  bool alone = true;
  bool with_other = false;
  Parker done;
  ASSERT_TRUE(scheduler
                  ->Schedule([&] {
                    alone = CurrentExecutionContext().YieldToReady();
                    order.push_back(1);
                    (void)scheduler->Schedule([&] { order.push_back(2); });
                    with_other = CurrentExecutionContext().YieldToReady();
                    order.push_back(3);
                    done.Unpark();
                  })
                  .ok());
  done.Park();
  EXPECT_FALSE(alone);
  EXPECT_TRUE(with_other);
  EXPECT_EQ(order, (std::vector<int>{1, 2, 3}));
  EXPECT_TRUE(scheduler->Shutdown().ok());
}

TEST(CooperativeTest, SameThreadUnparkResumesASuspendedTask) {
  std::unique_ptr<Scheduler> scheduler = NewScheduler();
  ASSERT_NE(scheduler, nullptr);
  std::vector<int> order;
  Parker parker;
  Parker done;
  ASSERT_TRUE(scheduler
                  ->Schedule([&] {
                    order.push_back(1);
                    parker.Park();  // suspends; the second task runs
                    order.push_back(3);
                    done.Unpark();
                  })
                  .ok());
  ASSERT_TRUE(scheduler
                  ->Schedule([&] {
                    order.push_back(2);
                    parker.Unpark();  // the first is suspended: the fast path
                  })
                  .ok());
  done.Park();
  EXPECT_EQ(order, (std::vector<int>{1, 2, 3}));
  EXPECT_TRUE(scheduler->Shutdown().ok());
}

TEST(CooperativeTest, UnparkFromAnotherThreadResumesASuspendedTask) {
  std::unique_ptr<Scheduler> scheduler = NewScheduler();
  ASSERT_NE(scheduler, nullptr);
  Parker parker;
  Parker done;
  std::promise<void> suspended;
  ASSERT_TRUE(scheduler
                  ->Schedule([&] {
                    parker.Park();
                    done.Unpark();
                  })
                  .ok());
  // Runs only once the first task has suspended (one thread, FIFO).
  ASSERT_TRUE(scheduler->Schedule([&] { suspended.set_value(); }).ok());
  suspended.get_future().wait();
  std::thread waker([&] { parker.Unpark(); });
  done.Park();
  waker.join();
  EXPECT_TRUE(scheduler->Shutdown().ok());
}

// Task-local storage is per task: two tasks interleaved on the one thread
// each see their own pointers across a suspension, and a new task (on a
// reused record) starts with none.
TEST(CooperativeTest, TaskLocalStorageIsPerTask) {
  static const char kKey = 0;
  static const char kOtherKey = 0;
  std::unique_ptr<Scheduler> scheduler = NewScheduler();
  ASSERT_NE(scheduler, nullptr);
  int a = 0, b = 0;
  void* a_seen = nullptr;
  void* a_other_seen = &a;
  void* b_seen_first = &b;
  void* b_seen = nullptr;
  void* later_seen = &a;
  Parker a_parked, b_parked, done;
  ASSERT_TRUE(scheduler
                  ->Schedule([&] {
                    CurrentExecutionContext().set_task_local(&kKey, &a);
                    a_parked.Park();  // B runs meanwhile
                    a_seen = CurrentExecutionContext().task_local(&kKey);
                    a_other_seen = CurrentExecutionContext().task_local(&kOtherKey);
                    CurrentExecutionContext().set_task_local(&kKey, nullptr);
                    b_parked.Unpark();
                  })
                  .ok());
  ASSERT_TRUE(scheduler
                  ->Schedule([&] {
                    b_seen_first = CurrentExecutionContext().task_local(&kKey);
                    CurrentExecutionContext().set_task_local(&kKey, &b);
                    CurrentExecutionContext().set_task_local(&kOtherKey, &b);
                    a_parked.Unpark();
                    b_parked.Park();  // A runs meanwhile, and ends
                    b_seen = CurrentExecutionContext().task_local(&kKey);
                    // A new task, likely on A's reused record.
                    (void)scheduler->Schedule([&] {
                      later_seen = CurrentExecutionContext().task_local(&kKey);
                      done.Unpark();
                    });
                  })
                  .ok());
  done.Park();
  EXPECT_EQ(a_seen, &a);
  EXPECT_EQ(a_other_seen, nullptr) << "B's second key is B's";
  EXPECT_EQ(b_seen_first, nullptr) << "a new task starts with none";
  EXPECT_EQ(b_seen, &b);
  EXPECT_EQ(later_seen, nullptr);
  EXPECT_EQ(CurrentExecutionContext().task_local(&kKey), nullptr) << "the test's thread has its own";
  EXPECT_TRUE(scheduler->Shutdown().ok());
}

// Two tasks of one scheduler ping-pong over each registered channel: every
// reply arrives, in order, whichever of the wake-up paths (yield to the
// ready peer, or park and be woken) each wait takes.
class CooperativeChannelTest : public ::testing::TestWithParam<const ChannelDescriptor*> {};

TEST_P(CooperativeChannelTest, SameThreadPingPongKeepsOrder) {
  std::unique_ptr<Scheduler> scheduler = NewScheduler();
  ASSERT_NE(scheduler, nullptr);
  absl::StatusOr<std::unique_ptr<ChannelFactory>> factory = GetParam()->create(BackendOptions{});
  if (absl::IsUnavailable(factory.status())) GTEST_SKIP() << factory.status();
  ASSERT_TRUE(factory.ok()) << factory.status();
  absl::StatusOr<ChannelPair> pair = (*factory)->CreatePair(ChannelOptions{});
  ASSERT_TRUE(pair.ok()) << pair.status();
  constexpr int kRounds = 10000;
  int wrong = 0;
  Parker done;
  ASSERT_TRUE(scheduler
                  ->Schedule([&] {
                    int value = 0;
                    auto buffer = absl::MakeSpan(reinterpret_cast<char*>(&value), sizeof value);
                    while (Receive(*pair->task_end, buffer).ok() && value >= 0) {
                      value += 1;
                      if (!Send(*pair->task_end, buffer).ok()) break;
                    }
                  })
                  .ok());
  ASSERT_TRUE(scheduler
                  ->Schedule([&] {
                    int value = 0;
                    auto buffer = absl::MakeSpan(reinterpret_cast<char*>(&value), sizeof value);
                    for (int i = 0; i < kRounds; ++i) {
                      value = 2 * i;
                      if (!Send(*pair->owner_end, buffer).ok() ||
                          !Receive(*pair->owner_end, buffer).ok() || value != 2 * i + 1) {
                        ++wrong;
                      }
                      // Now and then let the peer park first, so both paths run.
                      if (i % 7 == 0) Yield();
                    }
                    value = -1;
                    (void)Send(*pair->owner_end, buffer);
                    done.Unpark();
                  })
                  .ok());
  done.Park();
  EXPECT_EQ(wrong, 0);
  EXPECT_TRUE(scheduler->Shutdown().ok());
}

INSTANTIATE_TEST_SUITE_P(
    EveryChannel, CooperativeChannelTest, ::testing::ValuesIn(Channels()),
    [](const ::testing::TestParamInfo<const ChannelDescriptor*>& info) {
      return std::string(info.param->name);
    });

// A sleeper whose deadline passed while a long queue formed runs within a
// loop interval (61 switches), not behind the whole queue.
TEST(CooperativeTest, ADeadlineWokenTaskRunsAheadOfALongReadyQueue) {
  constexpr int kQueued = 600;
  std::unique_ptr<Scheduler> scheduler = NewScheduler();
  ASSERT_NE(scheduler, nullptr);
  std::vector<int> order;  // all on the scheduler's thread; -1 is the sleeper
  TaskGroup root(*scheduler);
  ASSERT_TRUE(root.Spawn([&] {
                    TaskGroup group(*scheduler);
                    const absl::Time deadline = absl::Now() + absl::Milliseconds(1);
                    ASSERT_TRUE(group.Spawn([&] {
                                       ASSERT_TRUE(SleepUntil(deadline).ok());
                                       order.push_back(-1);
                                     })
                                    .ok());
                    CurrentExecutionContext().Yield();  // the sleeper goes to sleep
                    // Waits for the clock, not for another thread: nothing
                    // else may run before the queue below forms.
                    while (absl::Now() < deadline) {
                    }
                    for (int i = 0; i < kQueued; ++i) {
                      ASSERT_TRUE(group.Spawn([&order, i] { order.push_back(i); }).ok());
                    }
                    group.Wait();
                  })
                  .ok());
  root.Wait();
  ASSERT_EQ(order.size(), static_cast<size_t>(kQueued + 1));
  size_t sleeper = 0;
  while (order[sleeper] != -1) ++sleeper;
  EXPECT_LE(sleeper, 61u) << "the sleeper waited behind the queue";
  EXPECT_TRUE(scheduler->Shutdown().ok());
}

// Whether the kernel has guard regions (madvise MADV_GUARD_INSTALL).
bool KernelHasGuardRegions() {
  constexpr int kGuardInstall = 102;  // MADV_GUARD_INSTALL, Linux 6.13
  const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  void* probe = mmap(nullptr, page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (probe == MAP_FAILED) return false;
  const bool has = madvise(probe, page, kGuardInstall) == 0;
  munmap(probe, page);
  return has;
}

// More live tasks at once than the kernel's default map limit allows
// PROT_NONE guard pages for (about 32,000): with guard regions they all get
// a guarded stack at once. Each task holds its stack until every task has
// started, giving up after two turns of the whole queue (so a task left
// without a stack shows as a failure, not a hang).
TEST(CooperativeTest, FortyThousandLiveTasksEachGetAGuardedStack) {
#ifdef TASKRT_TSAN
  GTEST_SKIP() << "ThreadSanitizer tracks each stackful task as a thread and stops the process "
                  "past 8,128 of them";
#endif
  if (!KernelHasGuardRegions()) {
    GTEST_SKIP() << "the kernel has no guard regions (Linux 6.13): guarded stacks are two "
                    "memory maps each, and vm.max_map_count bounds their number";
  }
  constexpr int kTasks = 40000;
  std::unique_ptr<Scheduler> scheduler = NewScheduler();
  ASSERT_NE(scheduler, nullptr);
  int started = 0;  // both on the scheduler's thread
  int gave_up = 0;
  TaskGroup root(*scheduler);
  ASSERT_TRUE(root.Spawn([&] {
                    TaskGroup group(*scheduler);
                    for (int i = 0; i < kTasks; ++i) {
                      ASSERT_TRUE(group.Spawn([&] {
                                         ++started;
                                         for (int turn = 0; started < kTasks; ++turn) {
                                           if (turn == 2) {
                                             ++gave_up;
                                             return;
                                           }
                                           CurrentExecutionContext().Yield();
                                         }
                                       })
                                      .ok());
                    }
                    group.Wait();
                  })
                  .ok());
  root.Wait();
  EXPECT_EQ(started, kTasks);
  EXPECT_EQ(gave_up, 0) << "tasks started only after others had finished";
  EXPECT_TRUE(scheduler->Shutdown().ok());
}

}  // namespace
}  // namespace taskrt
