#include "core/execution_context.h"

#include <time.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <memory>
#include <thread>
#include <vector>

#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"

namespace taskrt {
namespace {

TEST(ParkerTest, UnparkBeforeParkReturnsAtOnce) {
  Parker parker;
  parker.Unpark();
  parker.Park();  // would hang if the early Unpark were lost
  SUCCEED();
}

// Many rounds, each with a Parker on the sleeper's stack, freed the moment
// `park(parker, round)` returns, and another thread that unparks it once
// published: races between the two sides show up here (under tsan and asan
// too).
template <typename ParkFunction>
void RaceUnparkWith(ParkFunction park) {
  for (int round = 0; round < 2000; ++round) {
    std::atomic<Parker*> published{nullptr};
    std::thread waker([&] {
      Parker* parker;
      while ((parker = published.load(std::memory_order_acquire)) == nullptr) {
        std::this_thread::yield();
      }
      parker->Unpark();
    });
    {
      Parker parker;
      published.store(&parker, std::memory_order_release);
      park(parker, round);
    }
    waker.join();
  }
}

TEST(ParkerTest, UnparkFromAnotherThreadWakesASleeper) {
  RaceUnparkWith([](Parker& parker, int) { parker.Park(); });
}

absl::Duration MonotonicNow() {
  timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  return absl::DurationFromTimespec(now);
}

TEST(ParkerTest, ParkUntilTimesOutAndALateUnparkIsConsumedByPark) {
  Parker parker;
  const absl::Time deadline = absl::Now() + absl::Milliseconds(2);
  EXPECT_FALSE(parker.ParkUntil(deadline));
  EXPECT_GE(absl::Now(), deadline);  // not before the deadline
  parker.Unpark();                   // late: nobody waits
  parker.Park();                     // consumes it; would hang if it were lost
}

TEST(ParkerTest, ParkUntilAfterUnparkReturnsTrueAtOnceEvenPastTheDeadline) {
  Parker parker;
  parker.Unpark();
  EXPECT_TRUE(parker.ParkUntil(absl::InfinitePast()));
}

TEST(ParkerTest, ParkUntilWithADeadlineInThePastTimesOutAtOnce) {
  Parker parker;
  EXPECT_FALSE(parker.ParkUntil(absl::InfinitePast()));
  EXPECT_FALSE(parker.ParkUntil(absl::Now() - absl::Seconds(1)));
  parker.Unpark();
  EXPECT_TRUE(parker.ParkUntil(absl::InfinitePast()));
}

TEST(ParkerTest, ParkUntilReturnsTrueWhenUnparkedFromAnotherThread) {
  Parker parker;
  std::thread waker([&] { parker.Unpark(); });
  EXPECT_TRUE(parker.ParkUntil(absl::Now() + absl::Hours(1)));
  waker.join();
}

TEST(ParkerTest, ParkUntilRacingUnparkFollowsTheRule) {
  // The waker always unparks, so the sleeper cannot withdraw: after a
  // timeout it parks again to consume the Unpark, and only then frees the
  // Parker. Deadlines straddle the Unpark's arrival, so both outcomes occur.
  int timed_out = 0;
  RaceUnparkWith([&](Parker& parker, int round) {
    if (!parker.ParkUntil(absl::Now() + absl::Microseconds(round % 50))) {
      ++timed_out;
      parker.Park();
    }
  });
  std::printf("ParkUntil timed out in %d of 2000 rounds\n", timed_out);
}

TEST(SleepTest, SleepForOnAnOsThreadNeverReturnsEarly) {
  for (absl::Duration duration :
       {absl::Nanoseconds(1), absl::Microseconds(50), absl::Milliseconds(1),
        absl::Milliseconds(3)}) {
    const absl::Duration before = MonotonicNow();
    ASSERT_TRUE(taskrt::SleepFor(duration).ok());
    EXPECT_GE(MonotonicNow() - before, duration);
  }
}

TEST(SleepTest, SleepUntilOnAnOsThreadNeverReturnsEarly) {
  const absl::Time deadline = absl::Now() + absl::Milliseconds(2);
  ASSERT_TRUE(SleepUntil(deadline).ok());
  EXPECT_GE(absl::Now(), deadline);
}

TEST(SleepTest, ZeroNegativeAndPastSleepsReturn) {
  EXPECT_TRUE(taskrt::SleepFor(absl::ZeroDuration()).ok());
  EXPECT_TRUE(taskrt::SleepFor(-absl::Seconds(5)).ok());
  EXPECT_TRUE(taskrt::SleepFor(-absl::InfiniteDuration()).ok());
  EXPECT_TRUE(SleepUntil(absl::InfinitePast()).ok());
  EXPECT_TRUE(SleepUntil(absl::Now() - absl::Hours(1)).ok());
}

TEST(TaskLocalsTest, KeysAreIndependentAndNullRemoves) {
  static const char kFirst = 0;
  static const char kSecond = 0;
  static const char kThird = 0;
  int one = 1, two = 2, three = 3;
  TaskLocals locals;
  EXPECT_EQ(locals.Get(&kFirst), nullptr);
  locals.Set(&kFirst, &one);
  locals.Set(&kSecond, &two);
  locals.Set(&kThird, &three);
  EXPECT_EQ(locals.Get(&kFirst), &one);
  EXPECT_EQ(locals.Get(&kSecond), &two);
  EXPECT_EQ(locals.Get(&kThird), &three);
  locals.Set(&kSecond, nullptr);
  EXPECT_EQ(locals.Get(&kSecond), nullptr);
  EXPECT_EQ(locals.Get(&kFirst), &one);
  EXPECT_EQ(locals.Get(&kThird), &three);
  locals.Set(&kFirst, &three);
  EXPECT_EQ(locals.Get(&kFirst), &three);
  locals.Clear();
  EXPECT_EQ(locals.Get(&kFirst), nullptr);
  EXPECT_EQ(locals.Get(&kThird), nullptr);
}

TEST(ExecutionContextTest, TaskLocalsOfAnOsThreadArePerThread) {
  static const char kKey = 0;
  int mine = 0;
  CurrentExecutionContext().set_task_local(&kKey, &mine);
  void* other_thread_saw = &mine;
  std::thread([&] { other_thread_saw = CurrentExecutionContext().task_local(&kKey); }).join();
  EXPECT_EQ(other_thread_saw, nullptr);
  EXPECT_EQ(CurrentExecutionContext().task_local(&kKey), &mine);
  CurrentExecutionContext().set_task_local(&kKey, nullptr);
}

TEST(ExecutionContextTest, OsThreadContextBlocksTheThread) {
  ExecutionContext& context = CurrentExecutionContext();
  EXPECT_STREQ(context.name(), "os_thread");
  EXPECT_FALSE(context.suspends_task());
  Yield();  // an OS yield; returns
}

TEST(ExecutionContextTest, WaitFdUntilGivesUpAtTheDeadline) {
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  absl::Status status =
      CurrentExecutionContext().WaitFdUntil(fds[0], POLLIN, absl::Now() + absl::Milliseconds(1));
  EXPECT_EQ(status.code(), absl::StatusCode::kDeadlineExceeded) << status;
  ASSERT_EQ(write(fds[1], "x", 1), 1);
  EXPECT_TRUE(CurrentExecutionContext().WaitFdUntil(fds[0], POLLIN, absl::InfiniteFuture()).ok());
  close(fds[0]);
  close(fds[1]);
}

TEST(ExecutionContextTest, WaitFdOnAClosedDescriptorIsAnError) {
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  close(fds[0]);
  close(fds[1]);
  absl::Status status = CurrentExecutionContext().WaitFd(fds[0], POLLIN);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
}

}  // namespace
}  // namespace taskrt
