// Conformance group: the event loop's timers (core/event_loop.h, Timers).
//
// "Never early" is checked inside each closure against the monotonic clock:
// for a deadline `d` after a moment, the bound is the monotonic time read
// before that moment plus `d`. Nothing checks how late a timer is.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <iterator>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "core/event_loop.h"
#include "gtest/gtest.h"
#include "tests/conformance/conformance.h"

namespace taskrt::conformance {
namespace {

int64_t MonotonicNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// -1 if /proc is not there.
long CountOpenDescriptors() {
  std::error_code error;
  std::filesystem::directory_iterator entries("/proc/self/fd", error);
  if (error) return -1;
  return std::distance(entries, std::filesystem::directory_iterator());
}

class TimerConformance : public ConformanceTest {
 protected:
  void SetUp() override {
    ConformanceTest::SetUp();
    if (IsSkipped() || HasFatalFailure()) return;
    // This thread becomes the loop thread.
    ASSERT_TRUE(loop_->RunOnce(absl::ZeroDuration()).ok());
  }

  // A closure that appends `label` to `order_` and checks it is not early:
  // the monotonic clock must be at `not_before_ns` or later.
  std::function<void()> Recorder(std::string label, int64_t not_before_ns) {
    return [this, label, not_before_ns] {
      const int64_t now = MonotonicNs();
      EXPECT_GE(now, not_before_ns) << label << " ran " << (not_before_ns - now) << " ns early";
      EXPECT_TRUE(loop_->IsLoopThread()) << label;
      order_.push_back(label);
    };
  }

  std::vector<std::string> order_;
};

TEST_P(TimerConformance, DeadlinesRunInDeadlineOrderThenArmOrderAndNeverEarly) {
  const int64_t start = MonotonicNs();
  // Its deadline is before `wall + 5ms` whatever the machine's speed: it is
  // armed before `wall` is read. "after-25ms", armed last, is after all.
  ASSERT_TRUE(loop_->RunAfter(absl::Milliseconds(1), Recorder("after-1ms", start + 1'000'000)).ok());
  const absl::Time wall = absl::Now();
  const absl::Time t = wall + absl::Milliseconds(15);
  // Armed out of order; three share a deadline; three are 1 ns apart,
  // armed in reverse.
  ASSERT_TRUE(loop_->RunAt(t, Recorder("equal-1", start + 15'000'000)).ok());
  ASSERT_TRUE(loop_->RunAt(t, Recorder("equal-2", start + 15'000'000)).ok());
  ASSERT_TRUE(loop_->RunAt(wall + absl::Milliseconds(5), Recorder("5ms", start + 5'000'000)).ok());
  ASSERT_TRUE(loop_->RunAt(t + absl::Nanoseconds(2), Recorder("plus-2ns", start + 15'000'002)).ok());
  ASSERT_TRUE(loop_->RunAt(t + absl::Nanoseconds(1), Recorder("plus-1ns", start + 15'000'001)).ok());
  ASSERT_TRUE(loop_->RunAt(t, Recorder("equal-3", start + 15'000'000)).ok());
  ASSERT_TRUE(loop_->RunAfter(absl::Milliseconds(25), Recorder("after-25ms", start + 25'000'000)).ok());
  ASSERT_TRUE(PumpUntil([&] { return order_.size() == 8; }));
  EXPECT_EQ(order_, (std::vector<std::string>{"after-1ms", "5ms", "equal-1", "equal-2", "equal-3",
                                              "plus-1ns", "plus-2ns", "after-25ms"}));
}

TEST_P(TimerConformance, TimersArmedFromAnotherThreadKeepTheirOrder) {
  const int64_t start = MonotonicNs();
  const absl::Time t = absl::Now() + absl::Milliseconds(3);
  std::thread other([&] {
    EXPECT_FALSE(loop_->IsLoopThread());
    for (int i = 0; i < 5; ++i) {
      ASSERT_TRUE(loop_->RunAt(t, Recorder("other-" + std::to_string(i), start + 3'000'000)).ok());
    }
    ASSERT_TRUE(loop_->RunAt(t - absl::Milliseconds(1), Recorder("other-early", start + 2'000'000))
                    .ok());
  });
  other.join();
  // Armed on the loop thread after the other thread's: queued behind them.
  ASSERT_TRUE(loop_->RunAt(t, Recorder("loop", start + 3'000'000)).ok());
  ASSERT_TRUE(PumpUntil([&] { return order_.size() == 7; }));
  EXPECT_EQ(order_, (std::vector<std::string>{"other-early", "other-0", "other-1", "other-2",
                                              "other-3", "other-4", "loop"}));
}

TEST_P(TimerConformance, CancelBeforeTheDeadlineMeansItNeverRuns) {
  bool cancelled_ran = false;
  absl::StatusOr<TimerId> id = loop_->RunAfter(absl::Milliseconds(2), [&] { cancelled_ran = true; });
  ASSERT_TRUE(id.ok()) << id.status();
  EXPECT_NE(*id, 0u);
  EXPECT_TRUE(loop_->Cancel(*id).ok());
  const absl::Status again = loop_->Cancel(*id);
  EXPECT_EQ(again.code(), absl::StatusCode::kFailedPrecondition) << again;
  // Timers run in deadline order: once a later one ran, the cancelled one's
  // deadline has passed.
  bool marker = false;
  ASSERT_TRUE(loop_->RunAfter(absl::Milliseconds(4), [&] { marker = true; }).ok());
  ASSERT_TRUE(PumpUntil([&] { return marker; }));
  EXPECT_FALSE(cancelled_ran);
}

// Go's time package, TestOverflowSleep and the overflow cases of
// TestAfterFunc's neighbours: a delay too long to add to the clock
// saturates to "never" instead of wrapping into the past, and a delay far
// in the past is a timer due now.
TEST_P(TimerConformance, DelaysTooLongForTheClockNeverRunAndFarPastOnesRunNow) {
  int far_runs = 0;
  std::vector<TimerId> far;
  for (absl::Duration delay : {absl::InfiniteDuration(), absl::Seconds(INT64_MAX),
                               absl::Nanoseconds(INT64_MAX), absl::Hours(200'000'000)}) {
    absl::StatusOr<TimerId> id = loop_->RunAfter(delay, [&] { ++far_runs; });
    ASSERT_TRUE(id.ok()) << id.status();
    far.push_back(*id);
  }
  absl::StatusOr<TimerId> at_infinity = loop_->RunAt(absl::InfiniteFuture(), [&] { ++far_runs; });
  ASSERT_TRUE(at_infinity.ok()) << at_infinity.status();
  far.push_back(*at_infinity);
  int past_runs = 0;
  for (absl::Duration delay : {-absl::InfiniteDuration(), absl::Seconds(INT64_MIN),
                               absl::Nanoseconds(INT64_MIN)}) {
    ASSERT_TRUE(loop_->RunAfter(delay, [&] { ++past_runs; }).ok());
  }
  ASSERT_TRUE(loop_->RunAt(absl::InfinitePast(), [&] { ++past_runs; }).ok());
  bool marker = false;
  ASSERT_TRUE(loop_->RunAfter(absl::Milliseconds(2), [&] { marker = true; }).ok());
  ASSERT_TRUE(PumpUntil([&] { return marker; }));
  EXPECT_EQ(past_runs, 4) << "a delay far in the past is a timer due now";
  EXPECT_EQ(far_runs, 0) << "a delay too long for the clock wrapped into the past";
  for (TimerId id : far) EXPECT_TRUE(loop_->Cancel(id).ok()) << "still armed, never run";
}

TEST_P(TimerConformance, CancelAfterItRanIsReported) {
  int runs = 0;
  absl::StatusOr<TimerId> id = loop_->RunAfter(absl::ZeroDuration(), [&] { ++runs; });
  ASSERT_TRUE(id.ok()) << id.status();
  ASSERT_TRUE(PumpUntil([&] { return runs == 1; }));
  const absl::Status status = loop_->Cancel(*id);
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition) << status;
  // Its own id, cancelled from inside the closure: it is running.
  absl::Status from_inside;
  TimerId self = 0;
  absl::StatusOr<TimerId> second =
      loop_->RunAfter(absl::ZeroDuration(), [&] { from_inside = loop_->Cancel(self); });
  ASSERT_TRUE(second.ok());
  self = *second;
  ASSERT_TRUE(PumpUntil([&] { return !from_inside.ok(); }));
  EXPECT_EQ(from_inside.code(), absl::StatusCode::kFailedPrecondition) << from_inside;
  EXPECT_EQ(runs, 1);
}

TEST_P(TimerConformance, BadIdsAndEmptyClosuresAreRefused) {
  EXPECT_EQ(loop_->Cancel(0).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(loop_->Cancel(~uint64_t{0}).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(loop_->Cancel((uint64_t{7} << 32) | 3).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(loop_->RunAt(absl::Now(), nullptr).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(loop_->RunAfter(absl::Seconds(1), nullptr).status().code(),
            absl::StatusCode::kInvalidArgument);
  absl::StatusOr<TimerId> id = loop_->RunAfter(absl::Hours(1), [] {});
  ASSERT_TRUE(id.ok());
  // Another generation of a slot that exists: never issued.
  EXPECT_EQ(loop_->Cancel(*id + (uint64_t{1} << 32)).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(loop_->Cancel(*id).ok());
  const absl::Status twice = loop_->Cancel(*id);
  EXPECT_EQ(twice.code(), absl::StatusCode::kFailedPrecondition) << twice;
  EXPECT_NE(twice.message().find("cancelled"), absl::string_view::npos) << twice;
}

TEST_P(TimerConformance, PastDeadlinesRunAtTheNextIterationInDeadlineOrder) {
  ASSERT_TRUE(loop_->RunAt(absl::Now() - absl::Seconds(2), Recorder("minus-2s", 0)).ok());
  ASSERT_TRUE(loop_->RunAfter(absl::Seconds(-1), Recorder("minus-1s", 0)).ok());
  ASSERT_TRUE(loop_->RunAt(absl::InfinitePast(), Recorder("infinite-past", 0)).ok());
  std::thread other([&] {
    ASSERT_TRUE(loop_->RunAfter(absl::Seconds(-30), Recorder("other-minus-30s", 0)).ok());
  });
  other.join();
  absl::StatusOr<int> ran = loop_->RunOnce(absl::ZeroDuration());
  ASSERT_TRUE(ran.ok()) << ran.status();
  EXPECT_EQ(*ran, 4);
  EXPECT_EQ(order_,
            (std::vector<std::string>{"infinite-past", "other-minus-30s", "minus-2s", "minus-1s"}));
}

TEST_P(TimerConformance, TimerArmedInsideATimerRunsAtTheNextIteration) {
  int chain = 0;
  std::function<void()> step = [&] {
    ++chain;
    if (chain < 5) {
      EXPECT_TRUE(loop_->RunAfter(absl::ZeroDuration(), step).ok());
    }
  };
  ASSERT_TRUE(loop_->RunAfter(absl::ZeroDuration(), step).ok());
  for (int iteration = 1; iteration <= 5; ++iteration) {
    ASSERT_TRUE(loop_->RunOnce(absl::ZeroDuration()).ok());
    EXPECT_EQ(chain, iteration) << "one link of the chain per iteration";
  }
  ASSERT_TRUE(loop_->RunOnce(absl::ZeroDuration()).ok());
  EXPECT_EQ(chain, 5);
}

TEST_P(TimerConformance, RunAtFromAnotherThreadWakesASleepingRun) {
  const int64_t start = MonotonicNs();
  std::atomic<bool> ran{false};
  Notification run_returned;
  // Posted, so the other thread starts once Run() is under way; Run() has
  // nothing else to wake it.
  ASSERT_TRUE(loop_->Post([&] {
    ASSERT_TRUE(scheduler_->Schedule([&] {
      EXPECT_FALSE(loop_->IsLoopThread());
      absl::StatusOr<TimerId> id = loop_->RunAt(absl::Now() + absl::Milliseconds(1), [&] {
        EXPECT_GE(MonotonicNs(), start + 1'000'000);
        ran = true;
        loop_->Stop();
      });
      EXPECT_TRUE(id.ok()) << id.status();
    }).ok());
  }).ok());
  // A hang guard only: stops Run() if the timer never fires.
  std::thread guard([&] {
    if (!run_returned.WaitForNotification()) loop_->Stop();
  });
  EXPECT_TRUE(loop_->Run().ok());
  run_returned.Notify();
  guard.join();
  EXPECT_TRUE(ran) << "Run() was not woken for a timer armed from another thread";
}

TEST_P(TimerConformance, CancelRacingFireHasExactlyOneOutcome) {
  constexpr int kRounds = 300;
  std::vector<int> runs(kRounds, 0);
  std::vector<absl::Status> results(kRounds);
  std::atomic<uint64_t> published{0};  // round + 1 << 40 | id, 0: none
  std::atomic<int> cancelled_round{-1};
  std::thread canceller([&] {
    std::minstd_rand random(GetParam());
    for (int round = 0; round < kRounds; ++round) {
      TimerId id;
      while (true) {
        const uint64_t value = published.load(std::memory_order_acquire);
        if (value != 0 && static_cast<int>(value >> 48) == round + 1) {
          id = value & ((uint64_t{1} << 48) - 1);
          break;
        }
        std::this_thread::yield();
      }
      for (int spin = static_cast<int>(random() % 2000); spin > 0; --spin) {
        std::atomic_signal_fence(std::memory_order_seq_cst);
      }
      results[round] = loop_->Cancel(id);
      cancelled_round.store(round, std::memory_order_release);
      // Wakes the loop, which may be waiting with no timer left.
      EXPECT_TRUE(loop_->Post([] {}).ok());
    }
  });
  std::minstd_rand random(GetParam() + 1);
  for (int round = 0; round < kRounds; ++round) {
    absl::StatusOr<TimerId> id =
        loop_->RunAfter(absl::Nanoseconds(random() % 20'000), [&runs, round] { ++runs[round]; });
    ASSERT_TRUE(id.ok()) << id.status();
    ASSERT_LT(*id, uint64_t{1} << 48) << "the test packs ids into 48 bits";
    published.store((uint64_t(round + 1) << 48) | *id, std::memory_order_release);
    ASSERT_TRUE(PumpUntil([&] { return cancelled_round.load(std::memory_order_acquire) == round; }));
  }
  canceller.join();
  // Timers run in deadline order: once this one ran, every round's deadline
  // has passed.
  bool marker = false;
  ASSERT_TRUE(loop_->RunAfter(absl::Milliseconds(1), [&] { marker = true; }).ok());
  ASSERT_TRUE(PumpUntil([&] { return marker; }));
  int cancelled = 0;
  for (int round = 0; round < kRounds; ++round) {
    if (results[round].ok()) {
      ++cancelled;
      EXPECT_EQ(runs[round], 0) << "round " << round << ": cancelled, yet it ran";
    } else {
      EXPECT_EQ(results[round].code(), absl::StatusCode::kFailedPrecondition) << results[round];
      EXPECT_EQ(runs[round], 1) << "round " << round << ": " << results[round];
    }
  }
  std::printf("[ timers   ] %d of %d cancels won the race\n", cancelled, kRounds);
}

TEST_P(TimerConformance, PendingTimersAreFreedWithoutRunningWhenTheLoopGoes) {
  absl::StatusOr<std::unique_ptr<EventLoop>> made = NewLoop();
  ASSERT_TRUE(made.ok()) << made.status();
  std::unique_ptr<EventLoop> loop = *std::move(made);
  auto token = std::make_shared<int>(0);
  std::atomic<int> ran{0};
  // From a thread that is not (yet) the loop thread...
  ASSERT_TRUE(loop->RunAfter(absl::Hours(1), [token, &ran] { ++ran; }).ok());
  ASSERT_TRUE(loop->RunOnce(absl::ZeroDuration()).ok());
  // ...from the loop thread, and from another thread, one cancelled there.
  ASSERT_TRUE(loop->RunAfter(absl::Hours(2), [token, &ran] { ++ran; }).ok());
  std::thread other([&] {
    EXPECT_TRUE(loop->RunAt(absl::Now() + absl::Hours(3), [token, &ran] { ++ran; }).ok());
    absl::StatusOr<TimerId> id = loop->RunAfter(absl::Hours(4), [token, &ran] { ++ran; });
    ASSERT_TRUE(id.ok());
    EXPECT_TRUE(loop->Cancel(*id).ok());
  });
  other.join();
  EXPECT_EQ(token.use_count(), 5);
  loop.reset();
  EXPECT_EQ(token.use_count(), 1) << "closures of pending timers outlived their loop";
  EXPECT_EQ(ran, 0);
}

TEST_P(TimerConformance, TenThousandTimersTakeNoDescriptor) {
  const long before = CountOpenDescriptors();
  ASSERT_GT(before, 0);
  std::vector<TimerId> ids;
  for (int i = 0; i < 10'000; ++i) {
    absl::StatusOr<TimerId> id = loop_->RunAfter(absl::Hours(1) + absl::Milliseconds(i), [] {});
    ASSERT_TRUE(id.ok()) << id.status();
    ids.push_back(*id);
  }
  EXPECT_EQ(CountOpenDescriptors(), before);
  for (TimerId id : ids) ASSERT_TRUE(loop_->Cancel(id).ok());
}

// RunUntil: the deadline ends the run, never early, with no timer armed.
TEST_P(TimerConformance, RunUntilReturnsDeadlineExceededNeverBeforeItsDeadline) {
  const int64_t start = MonotonicNs();
  const absl::Time deadline = absl::Now() + absl::Milliseconds(5);
  const absl::Status status = loop_->RunUntil(deadline);
  const int64_t end = MonotonicNs();
  EXPECT_EQ(status.code(), absl::StatusCode::kDeadlineExceeded) << status;
  EXPECT_GE(end, start + 5'000'000) << "RunUntil returned " << (start + 5'000'000 - end)
                                    << " ns early";
}

TEST_P(TimerConformance, RunUntilRunsTimersDueBeforeItsDeadlineAndLeavesLaterOnesArmed) {
  const int64_t start = MonotonicNs();
  const absl::Time deadline = absl::Now() + absl::Milliseconds(10);
  ASSERT_TRUE(loop_->RunAfter(absl::Milliseconds(1), Recorder("1ms", start + 1'000'000)).ok());
  ASSERT_TRUE(loop_->RunAt(deadline - absl::Milliseconds(5), Recorder("5ms", start + 5'000'000))
                  .ok());
  bool late_ran = false;
  absl::StatusOr<TimerId> late =
      loop_->RunAt(deadline + absl::Hours(1), [&] { late_ran = true; });
  ASSERT_TRUE(late.ok()) << late.status();
  const absl::Status status = loop_->RunUntil(deadline);
  EXPECT_EQ(status.code(), absl::StatusCode::kDeadlineExceeded) << status;
  EXPECT_GE(MonotonicNs(), start + 10'000'000);
  EXPECT_EQ(order_, (std::vector<std::string>{"1ms", "5ms"}));
  EXPECT_FALSE(late_ran);
  EXPECT_TRUE(loop_->Cancel(*late).ok()) << "the later timer was no longer armed";
}

TEST_P(TimerConformance, StopEndsRunUntilBeforeItsDeadline) {
  // From the loop thread: a closure posted before the run.
  ASSERT_TRUE(loop_->Post([&] { loop_->Stop(); }).ok());
  EXPECT_TRUE(loop_->RunUntil(absl::Now() + absl::Hours(1)).ok());
  // From another thread, once the run is under way.
  ASSERT_TRUE(loop_->Post([&] {
    ASSERT_TRUE(scheduler_->Schedule([&] {
      EXPECT_FALSE(loop_->IsLoopThread());
      EXPECT_TRUE(loop_->Post([&] { loop_->Stop(); }).ok());
    }).ok());
  }).ok());
  EXPECT_TRUE(loop_->RunUntil(absl::Now() + absl::Hours(1)).ok());
  // A Stop() before the call wins over a deadline that has passed.
  loop_->Stop();
  EXPECT_TRUE(loop_->RunUntil(absl::InfinitePast()).ok());
}

TEST_P(TimerConformance, RunUntilAPastDeadlineRunsWhatIsReadyThenReportsTheDeadline) {
  ASSERT_TRUE(loop_->RunAt(absl::Now() - absl::Seconds(1), Recorder("due timer", 0)).ok());
  ASSERT_TRUE(loop_->Post([&] { order_.push_back("posted"); }).ok());
  const absl::Status status = loop_->RunUntil(absl::Now() - absl::Milliseconds(1));
  EXPECT_EQ(status.code(), absl::StatusCode::kDeadlineExceeded) << status;
  EXPECT_EQ(order_, (std::vector<std::string>{"due timer", "posted"}));
  // Work posted meanwhile waits for the next run, and InfinitePast is a
  // deadline like any other.
  ASSERT_TRUE(loop_->Post([&] { order_.push_back("posted again"); }).ok());
  EXPECT_EQ(loop_->RunUntil(absl::InfinitePast()).code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_EQ(order_.back(), "posted again");
}

TEST_P(TimerConformance, RunUntilFromAnotherThreadIsRefused) {
  absl::Status other_thread_status;
  std::thread other([&] { other_thread_status = loop_->RunUntil(absl::InfinitePast()); });
  other.join();
  EXPECT_EQ(other_thread_status.code(), absl::StatusCode::kPermissionDenied)
      << other_thread_status;
}

TEST_P(TimerConformance, RunUntilReenteredFromACallbackIsRefused) {
  absl::Status inside_run_until;
  absl::Status run_inside_run_until;
  absl::Status inside_run;
  ASSERT_TRUE(loop_->Post([&] {
    inside_run_until = loop_->RunUntil(absl::Now() + absl::Hours(1));
    run_inside_run_until = loop_->Run();
    loop_->Stop();
  }).ok());
  EXPECT_TRUE(loop_->RunUntil(absl::Now() + absl::Hours(1)).ok());
  ASSERT_TRUE(loop_->RunAfter(absl::ZeroDuration(), [&] {
    inside_run = loop_->RunUntil(absl::InfinitePast());
    loop_->Stop();
  }).ok());
  EXPECT_TRUE(loop_->Run().ok());
  EXPECT_EQ(inside_run_until.code(), absl::StatusCode::kFailedPrecondition) << inside_run_until;
  EXPECT_EQ(run_inside_run_until.code(), absl::StatusCode::kFailedPrecondition)
      << run_inside_run_until;
  EXPECT_EQ(inside_run.code(), absl::StatusCode::kFailedPrecondition) << inside_run;
}

INSTANTIATE_TEST_SUITE_P(Conformance, TimerConformance, ::testing::ValuesIn(WorkerCounts()),
                         WorkerCountName);

}  // namespace
}  // namespace taskrt::conformance
