// LoopTimers on its own, single-threaded where the order of hand-overs
// matters: which path frees a slot when an arm from another thread and a
// cancel reach the loop in either order, slot reuse and ids, the chunks.
// Cross-thread races run in the conformance suite (tests/conformance/
// timer_tests.cc) on every loop.

#include "event_loops/loop_base/loop_timers.h"

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"

namespace taskrt::loop_internal {
namespace {

const std::string kLabel = "test loop";

// Timers whose closures count their runs and hold a token, so the test can
// see when the closures are destroyed.
class HeldTimersTest : public ::testing::Test {
 protected:
  std::function<void()> Closure() {
    return [token = token_, runs = &runs_] { ++*runs; };
  }
  absl::StatusOr<TimerId> ArmOnLoop(uint64_t deadline) {
    std::function<void()> closure = Closure();
    absl::StatusOr<TimerId> id = timers_.ArmOnLoop(deadline, closure);
    EXPECT_FALSE(closure) << "the closure is moved into the timer";
    return id;
  }
  absl::StatusOr<TimerId> ArmFromOtherThread(uint64_t deadline, bool& wake) {
    std::function<void()> closure = Closure();
    return timers_.ArmFromOtherThread(deadline, closure, wake);
  }
  // Runs what is due now; expects nothing ran and every closure is gone.
  void ExpectFreedWithoutRunning() {
    EXPECT_EQ(timers_.RunDue(MonotonicNowNs()), 0);
    EXPECT_EQ(runs_, 0);
    EXPECT_EQ(token_.use_count(), 1);
  }

  LoopTimers timers_{kLabel};
  int runs_ = 0;
  std::shared_ptr<int> token_ = std::make_shared<int>();
};

TEST_F(HeldTimersTest, ArmedOnTheLoopRunsWhenDue) {
  const uint64_t now = MonotonicNowNs();
  absl::StatusOr<TimerId> id = ArmOnLoop(now + 100);
  ASSERT_TRUE(id.ok());
  EXPECT_EQ(timers_.RunDue(now + 99), 0);
  EXPECT_EQ(timers_.RunDue(now + 100), 1);
  EXPECT_EQ(runs_, 1);
  EXPECT_EQ(token_.use_count(), 1) << "the closure is destroyed once it ran";
  bool wake = false;
  EXPECT_EQ(timers_.Cancel(*id, true, wake).code(), absl::StatusCode::kFailedPrecondition);
}

TEST_F(HeldTimersTest, OtherThreadArmThenCancelBeforeTheLoopTakesEither) {
  bool wake = false;
  absl::StatusOr<TimerId> id = ArmFromOtherThread(0, wake);
  ASSERT_TRUE(id.ok());
  EXPECT_TRUE(wake) << "the first hand-over wakes the loop";
  wake = false;
  EXPECT_TRUE(timers_.Cancel(*id, /*on_loop_thread=*/false, wake).ok());
  EXPECT_TRUE(wake);
  EXPECT_EQ(token_.use_count(), 2);
  ExpectFreedWithoutRunning();
}

TEST_F(HeldTimersTest, LoopCancelsATimerStillInTransit) {
  bool wake = false;
  absl::StatusOr<TimerId> id = ArmFromOtherThread(0, wake);
  ASSERT_TRUE(id.ok());
  EXPECT_TRUE(timers_.Cancel(*id, /*on_loop_thread=*/true, wake).ok());
  ExpectFreedWithoutRunning();
}

TEST_F(HeldTimersTest, OtherThreadCancelOfATimerInTheWheel) {
  absl::StatusOr<TimerId> id = ArmOnLoop(MonotonicNowNs() + 1'000'000'000);
  ASSERT_TRUE(id.ok());
  bool wake = false;
  EXPECT_TRUE(timers_.Cancel(*id, /*on_loop_thread=*/false, wake).ok());
  EXPECT_TRUE(wake);
  EXPECT_FALSE(timers_.NextDeadline().has_value()) << "taking the cancel empties the wheel";
  ExpectFreedWithoutRunning();
}

TEST(LoopTimersTest, SlotsAreReusedWithNewGenerations) {
  LoopTimers timers(kLabel);
  const uint64_t far = MonotonicNowNs() + 3'600'000'000'000;
  std::vector<TimerId> old_ids;
  bool wake = false;
  for (int i = 0; i < 100; ++i) {
    std::function<void()> closure = [] {};
    absl::StatusOr<TimerId> id = timers.ArmOnLoop(far, closure);
    ASSERT_TRUE(id.ok());
    for (TimerId old : old_ids) EXPECT_NE(*id, old);
    EXPECT_NE(*id, 0u);
    ASSERT_TRUE(timers.Cancel(*id, true, wake).ok());
    old_ids.push_back(*id);
  }
  // One slot served them all, so every old id is stale, not unknown.
  for (TimerId old : old_ids) {
    EXPECT_EQ(timers.Cancel(old, true, wake).code(), absl::StatusCode::kFailedPrecondition);
  }
  EXPECT_EQ(timers.Cancel(old_ids.back() + (uint64_t{1} << 32), true, wake).code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(LoopTimersTest, ManyChunksOfSlots) {
  LoopTimers timers(kLabel);
  const uint64_t now = MonotonicNowNs();
  std::vector<TimerId> ids;
  int runs = 0;
  for (int i = 0; i < 5000; ++i) {
    std::function<void()> closure = [&runs] { ++runs; };
    absl::StatusOr<TimerId> id = timers.ArmOnLoop(now + 1000 + static_cast<uint64_t>(i), closure);
    ASSERT_TRUE(id.ok());
    ids.push_back(*id);
  }
  bool wake = false;
  for (size_t i = 0; i < ids.size(); i += 2) ASSERT_TRUE(timers.Cancel(ids[i], true, wake).ok());
  EXPECT_EQ(timers.RunDue(now + 1000 + 5000), 2500);
  EXPECT_EQ(runs, 2500);
}

TEST(LoopTimersTest, EqualWallDeadlinesConvertToEqualMonotonicOnes) {
  LoopTimers timers(kLabel);
  const absl::Time t = absl::Now() + absl::Seconds(1);
  const uint64_t first = timers.ToMonotonic(t);
  for (int i = 0; i < 1000; ++i) {
    const uint64_t again = timers.ToMonotonic(t);
    ASSERT_GE(again, first) << "a later conversion of the same deadline came out earlier";
    ASSERT_GE(timers.ToMonotonic(t + absl::Nanoseconds(1)), again + 1);
  }
  EXPECT_EQ(timers.ToMonotonic(absl::InfinitePast()), 0u);
  EXPECT_EQ(timers.ToMonotonic(absl::InfiniteFuture()), UINT64_MAX);
  // Never early: the converted deadline is at least now + the time left.
  const uint64_t before = MonotonicNowNs();
  EXPECT_GE(timers.ToMonotonic(absl::Now() + absl::Milliseconds(5)), before + 5'000'000);
}

}  // namespace
}  // namespace taskrt::loop_internal
