#include "core/execution_context.h"

#include <unistd.h>

#include <atomic>
#include <memory>
#include <thread>
#include <vector>

#include "gtest/gtest.h"

namespace taskrt {
namespace {

TEST(ParkerTest, UnparkBeforeParkReturnsAtOnce) {
  Parker parker;
  parker.Unpark();
  parker.Park();  // would hang if the early Unpark were lost
  SUCCEED();
}

TEST(ParkerTest, UnparkFromAnotherThreadWakesASleeper) {
  // Many rounds with the Parker on the sleeper's stack, freed the moment
  // Park returns: races between the two sides show up here (under tsan and
  // asan too).
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
      parker.Park();
    }
    waker.join();
  }
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
