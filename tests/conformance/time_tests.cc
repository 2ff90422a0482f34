// Conformance group: time. Sleeping inside a unit of any scheduler, and the
// deadline variants of the blocking calls (ReceiveUntil, SendUntil,
// Parker::ParkUntil, TaskGroup::WaitUntil). Sleeps are checked never to
// end early on the monotonic clock, never against an upper bound; a
// timed-out call must leave its channel exactly as it was.

#include <time.h>

#include <atomic>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "core/channel.h"
#include "core/errors.h"
#include "core/execution_context.h"
#include "core/task_group.h"
#include "gtest/gtest.h"
#include "tests/conformance/conformance.h"

namespace taskrt::conformance {
namespace {

absl::Duration MonotonicNow() {
  timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  return absl::DurationFromTimespec(now);
}

// `size` bytes that differ with `seed`, so a swapped, cut or shifted
// message shows.
std::string Pattern(size_t size, uint32_t seed) {
  std::string bytes(size, '\0');
  for (size_t i = 0; i < size; ++i) bytes[i] = static_cast<char>(seed * 131 + i * 7 + (i >> 8));
  return bytes;
}

constexpr absl::StatusCode kDeadline = absl::StatusCode::kDeadlineExceeded;

class TimeConformance : public ConformanceTest {
 protected:
  ChannelPair MakePair(const ChannelOptions& options = {}) {
    absl::StatusOr<ChannelPair> pair = channels_->CreatePair(options);
    EXPECT_TRUE(pair.ok()) << pair.status();
    return pair.ok() ? *std::move(pair) : ChannelPair{};
  }

  // Runs `body` as one unit of the scheduler and waits for it.
  void RunInUnit(std::function<void()> body) {
    Notification done;
    ASSERT_TRUE(scheduler_->Schedule([&] {
      body();
      done.Notify();
    }).ok());
    ASSERT_TRUE(done.WaitForNotification()) << "the unit never finished";
  }

  bool UnitsAreStackfulTasks() {
    bool suspends = false;
    RunInUnit([&] { suspends = CurrentExecutionContext().suspends_task(); });
    return suspends;
  }
};

constexpr const char* kOneThreadOrderReason =
    "the order of wake-ups is fixed only where one thread runs every unit (stackful tasks); "
    "OS-thread workers wake in the kernel's order";

TEST_P(TimeConformance, SleepForInsideAUnitNeverReturnsEarly) {
  const std::vector<absl::Duration> durations = {absl::Nanoseconds(1), absl::Microseconds(20),
                                                 absl::Microseconds(500), absl::Milliseconds(1),
                                                 absl::Milliseconds(3)};
  std::vector<absl::Duration> slept(durations.size());
  std::vector<absl::Status> status(durations.size());
  CountDown all(static_cast<int>(durations.size()));
  for (size_t i = 0; i < durations.size(); ++i) {
    ASSERT_TRUE(scheduler_->Schedule([&, i] {
      const absl::Duration before = MonotonicNow();
      status[i] = taskrt::SleepFor(durations[i]);
      slept[i] = MonotonicNow() - before;
      all.Decrement();
    }).ok());
  }
  ASSERT_TRUE(all.Wait());
  for (size_t i = 0; i < durations.size(); ++i) {
    EXPECT_TRUE(status[i].ok()) << status[i];
    EXPECT_GE(slept[i], durations[i]) << "woke early from SleepFor(" << durations[i] << ")";
  }
}

TEST_P(TimeConformance, SleepUntilInsideAUnitNeverReturnsEarly) {
  RunInUnit([] {
    for (absl::Duration ahead : {absl::Microseconds(100), absl::Milliseconds(2)}) {
      const absl::Time deadline = absl::Now() + ahead;
      EXPECT_TRUE(SleepUntil(deadline).ok());
      EXPECT_GE(absl::Now(), deadline);
    }
  });
}

TEST_P(TimeConformance, ZeroNegativeAndPastSleepsReturn) {
  RunInUnit([] {
    EXPECT_TRUE(taskrt::SleepFor(absl::ZeroDuration()).ok());
    EXPECT_TRUE(taskrt::SleepFor(-absl::Milliseconds(5)).ok());
    EXPECT_TRUE(SleepUntil(absl::InfinitePast()).ok());
    EXPECT_TRUE(SleepUntil(absl::Now() - absl::Hours(1)).ok());
  });
}

TEST_P(TimeConformance, OtherTasksRunWhileOneSleeps) {
  if (!UnitsAreStackfulTasks()) {
    GTEST_SKIP() << "a sleeping unit holds its OS worker; only stackful tasks share a thread "
                    "with the sleeper";
  }
  // Both are scheduled from inside a unit, so they queue in order: A runs
  // first and sleeps; B must run while A sleeps, whatever the clock says.
  std::vector<std::string> order;
  CountDown both(2);
  RunInUnit([&] {
    ASSERT_TRUE(scheduler_->Schedule([&] {
      order.push_back("A sleeps");
      EXPECT_TRUE(taskrt::SleepFor(absl::Milliseconds(1)).ok());
      order.push_back("A woke");
      both.Decrement();
    }).ok());
    ASSERT_TRUE(scheduler_->Schedule([&] {
      order.push_back("B ran");
      both.Decrement();
    }).ok());
  });
  ASSERT_TRUE(both.Wait());
  EXPECT_EQ(order, (std::vector<std::string>{"A sleeps", "B ran", "A woke"}));
}

// Go's time package, TestAfterFuncStarvation (run there with GOMAXPROCS
// 1): two tasks play ping-pong on a channel, so one of them is always
// ready to run, while a third sleeps 1 ms twenty times. Its wake-ups must
// still come: a task whose deadline passed is not starved by tasks that
// never stop being ready.
TEST_P(TimeConformance, ASleeperIsNotStarvedByTasksThatAreAlwaysReady) {
  if (!UnitsAreStackfulTasks()) {
    GTEST_SKIP() << "OS-thread workers each run their own unit; only stackful tasks share a "
                    "thread with tasks that are always ready";
  }
  ChannelPair pair = MakePair();
  std::atomic<bool> stop{false};
  std::atomic<int> sleeps_done{0};
  CountDown all(3);
  RunInUnit([&] {
    ASSERT_TRUE(scheduler_->Schedule([&] {
      char answer[8];
      while (!stop.load()) {
        if (!Send(*pair.owner_end, absl::MakeConstSpan("p", 1)).ok() ||
            !Receive(*pair.owner_end, absl::MakeSpan(answer)).ok()) {
          ADD_FAILURE() << "the ping-pong broke";
          break;
        }
      }
      (void)Send(*pair.owner_end, absl::MakeConstSpan("q", 1));
      all.Decrement();
    }).ok());
    ASSERT_TRUE(scheduler_->Schedule([&] {
      char ball[8];
      while (true) {
        absl::StatusOr<size_t> got = Receive(*pair.task_end, absl::MakeSpan(ball));
        if (!got.ok() || (*got == 1 && ball[0] == 'q')) break;
        if (!Send(*pair.task_end, absl::MakeConstSpan(ball, *got)).ok()) break;
      }
      all.Decrement();
    }).ok());
    ASSERT_TRUE(scheduler_->Schedule([&] {
      for (int i = 0; i < 20; ++i) {
        EXPECT_TRUE(taskrt::SleepFor(absl::Milliseconds(1)).ok());
        sleeps_done.fetch_add(1);
      }
      stop.store(true);
      all.Decrement();
    }).ok());
  });
  const bool finished = all.Wait();
  stop.store(true);  // ends the ping-pong if the sleeper was starved
  EXPECT_TRUE(finished) << "the sleeper woke " << sleeps_done.load() << " times of 20";
  if (!finished) {
    ASSERT_TRUE(all.Wait()) << "the tasks did not end after the stop";
  }
}

TEST_P(TimeConformance, ManySleepersWakeInDeadlineOrder) {
  if (!UnitsAreStackfulTasks()) GTEST_SKIP() << kOneThreadOrderReason;
  // Sleeper i sleeps until base + (kSleepers - i) * step: created in the
  // reverse of its deadline order. Only sleepers whose deadline was still
  // ahead once every sleeper had gone to sleep are compared (the last one
  // reads the clock just before it sleeps); the base moves further out
  // until most are, so the check never passes empty on a slow machine.
  constexpr int kSleepers = 100;
  const absl::Duration step = absl::Microseconds(50);
  for (absl::Duration lead = absl::Milliseconds(5);; lead *= 4) {
    struct Record {
      absl::Time deadline;
      int wake_index = -1;
    };
    std::vector<Record> records(kSleepers);
    int registered = 0;
    int woken = 0;
    absl::Time all_asleep_at;
    CountDown all(kSleepers);
    RunInUnit([&] {
      const absl::Time base = absl::Now() + lead;
      for (int i = 0; i < kSleepers; ++i) {
        records[i].deadline = base + (kSleepers - i) * step;
        ASSERT_TRUE(scheduler_->Schedule([&, i] {
          if (++registered == kSleepers) all_asleep_at = absl::Now();
          EXPECT_TRUE(SleepUntil(records[i].deadline).ok());
          records[i].wake_index = woken++;
          all.Decrement();
        }).ok());
      }
    });
    ASSERT_TRUE(all.Wait());
    int compared = 0;
    int previous_index = -1;
    for (int i = kSleepers - 1; i >= 0; --i) {  // ascending deadlines
      if (records[i].deadline <= all_asleep_at) continue;
      EXPECT_GT(records[i].wake_index, previous_index) << "sleeper " << i << " woke out of order";
      previous_index = records[i].wake_index;
      ++compared;
    }
    if (compared >= kSleepers / 2 || lead > absl::Seconds(10)) {
      std::printf("compared the wake order of %d of %d sleepers\n", compared, kSleepers);
      EXPECT_GE(compared, kSleepers / 2);
      break;
    }
  }
}

TEST_P(TimeConformance, ReceiveUntilTimesOutAndALaterMessageArrivesIntact) {
  ChannelPair pair = MakePair();
  const std::vector<size_t> sizes = {0, 1, 300, 100000};
  Notification timed_out;
  std::vector<std::string> received;
  Notification done;
  ASSERT_TRUE(scheduler_->Schedule([&] {
    std::vector<char> buffer(200000);
    absl::StatusOr<size_t> got =
        ReceiveUntil(*pair.task_end, absl::MakeSpan(buffer), absl::Now() + absl::Milliseconds(2));
    EXPECT_EQ(got.status().code(), kDeadline) << got.status();
    got = ReceiveUntil(*pair.task_end, absl::MakeSpan(buffer), absl::InfinitePast());
    EXPECT_EQ(got.status().code(), kDeadline) << got.status();
    timed_out.Notify();
    for (size_t i = 0; i < sizes.size(); ++i) {
      got = Receive(*pair.task_end, absl::MakeSpan(buffer));
      EXPECT_TRUE(got.ok()) << got.status();
      if (!got.ok()) break;
      received.emplace_back(buffer.data(), *got);
    }
    done.Notify();
  }).ok());
  ASSERT_TRUE(timed_out.WaitForNotification());
  for (size_t i = 0; i < sizes.size(); ++i) {
    const std::string message = Pattern(sizes[i], static_cast<uint32_t>(i));
    ASSERT_TRUE(Send(*pair.owner_end, absl::MakeConstSpan(message)).ok());
  }
  ASSERT_TRUE(done.WaitForNotification());
  ASSERT_EQ(received.size(), sizes.size());
  for (size_t i = 0; i < sizes.size(); ++i) {
    EXPECT_TRUE(received[i] == Pattern(sizes[i], static_cast<uint32_t>(i)))
        << "message " << i << " (" << sizes[i] << " bytes) arrived changed";
  }
}

TEST_P(TimeConformance, ReceivesThatKeepTimingOutStillGetALargeMessageWhole) {
  // The message is larger than any backend's buffer, so it streams in while
  // the receiver's short deadlines keep passing: what a timed-out receive
  // has pulled in must stay for the next one.
  ChannelPair pair = MakePair();
  const std::string message = Pattern(400000, 7);
  std::string received;
  int timeouts = 0;
  Notification done;
  ASSERT_TRUE(scheduler_->Schedule([&] {
    std::vector<char> buffer(message.size() + 1);
    while (true) {
      absl::StatusOr<size_t> got = ReceiveUntil(*pair.task_end, absl::MakeSpan(buffer),
                                                absl::Now() + absl::Microseconds(100));
      if (got.ok()) {
        received.assign(buffer.data(), *got);
        break;
      }
      if (got.status().code() != kDeadline) {
        ADD_FAILURE() << got.status();
        break;
      }
      ++timeouts;
    }
    done.Notify();
  }).ok());
  ASSERT_TRUE(Send(*pair.owner_end, absl::MakeConstSpan(message)).ok());
  ASSERT_TRUE(done.WaitForNotification());
  std::printf("the receive timed out %d times\n", timeouts);
  EXPECT_TRUE(received == message) << "got " << received.size() << " bytes, not the message";
}

TEST_P(TimeConformance, SendUntilOnAFullChannelTimesOutAndSendsNothing) {
  ChannelPair pair = MakePair();
  constexpr int kMaxMessages = 1 << 20;  // far beyond any backend's buffer
  constexpr size_t kSmall = 64;
  int accepted = 0;
  Notification full;
  Notification drained;
  Notification done;
  ASSERT_TRUE(scheduler_->Schedule([&] {
    absl::Status status;
    while (accepted < kMaxMessages) {
      const std::string message = Pattern(kSmall, static_cast<uint32_t>(accepted));
      status = SendUntil(*pair.task_end, absl::MakeConstSpan(message),
                         absl::Now() + absl::Milliseconds(2));
      if (!status.ok()) break;
      ++accepted;
    }
    EXPECT_EQ(status.code(), kDeadline) << status;
    // Full: a past deadline is an immediate timeout. A backend whose peer
    // drains the socket by itself (io_uring's armed receive) may have made
    // room meanwhile; what it takes is part of the sequence.
    do {
      const std::string message = Pattern(kSmall, static_cast<uint32_t>(accepted));
      status = SendUntil(*pair.task_end, absl::MakeConstSpan(message), absl::InfinitePast());
      if (status.ok()) ++accepted;
    } while (status.ok() && accepted < kMaxMessages);
    EXPECT_EQ(status.code(), kDeadline) << status;
    full.Notify();
    if (!drained.WaitForNotification()) return;
    EXPECT_TRUE(Send(*pair.task_end, absl::MakeConstSpan("end", 3)).ok());
    pair.task_end->Close();
    done.Notify();
  }).ok());
  ASSERT_TRUE(full.WaitForNotification());
  std::printf("the channel took %d messages before a send timed out\n", accepted);
  std::vector<char> buffer(kSmall + 16);
  for (int i = 0; i < accepted; ++i) {
    absl::StatusOr<size_t> got = Receive(*pair.owner_end, absl::MakeSpan(buffer));
    ASSERT_TRUE(got.ok()) << got.status();
    ASSERT_EQ(std::string(buffer.data(), *got), Pattern(kSmall, static_cast<uint32_t>(i)))
        << "message " << i;
  }
  drained.Notify();
  absl::StatusOr<size_t> got = Receive(*pair.owner_end, absl::MakeSpan(buffer));
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(std::string(buffer.data(), *got), "end") << "a timed-out send left bytes behind";
  got = Receive(*pair.owner_end, absl::MakeSpan(buffer));
  EXPECT_EQ(got.status().code(), absl::StatusCode::kOutOfRange) << got.status();
  ASSERT_TRUE(done.WaitForNotification());
}

TEST_P(TimeConformance, ParkUntilTimeoutThenALateUnparkIsHarmless) {
  // The unparker is an outside thread that always unparks, so after a
  // timeout the unit cannot withdraw: by Parker's rule it parks again to
  // consume the Unpark before its Parker goes away. Deadlines straddle the
  // Unpark's arrival, so both outcomes occur.
  constexpr int kRounds = 300;
  std::atomic<Parker*> published{nullptr};
  std::atomic<bool> stop{false};
  std::thread unparker([&] {
    while (!stop.load()) {
      Parker* parker = published.exchange(nullptr);
      if (parker != nullptr) {
        parker->Unpark();
      } else {
        std::this_thread::yield();
      }
    }
  });
  int timed_out = 0;
  RunInUnit([&] {
    {
      Parker parker;  // nobody unparks: a plain timeout, then a late Unpark
      EXPECT_FALSE(parker.ParkUntil(absl::Now() + absl::Milliseconds(1)));
      EXPECT_FALSE(parker.ParkUntil(absl::InfinitePast()));
      published.store(&parker);
      parker.Park();
    }
    for (int round = 0; round < kRounds; ++round) {
      Parker parker;
      published.store(&parker);
      if (!parker.ParkUntil(absl::Now() + absl::Microseconds(round % 40))) {
        ++timed_out;
        parker.Park();
      }
    }
  });
  stop.store(true);
  unparker.join();
  std::printf("ParkUntil timed out in %d of %d rounds\n", timed_out, kRounds);
}

TEST_P(TimeConformance, ParkUntilIsWokenByAnotherUnit) {
  if (!UnitsAreStackfulTasks() && scheduler_->concurrency() < 2) {
    GTEST_SKIP() << "one OS worker: the parked unit holds it, so the unparking unit cannot run";
  }
  std::atomic<Parker*> published{nullptr};
  bool unparked = false;
  CountDown both(2);
  ASSERT_TRUE(scheduler_->Schedule([&] {
    Parker parker;
    published.store(&parker);
    unparked = parker.ParkUntil(absl::Now() + absl::Hours(1));
    both.Decrement();
  }).ok());
  ASSERT_TRUE(scheduler_->Schedule([&] {
    Parker* parker;
    while ((parker = published.load()) == nullptr) Yield();
    parker->Unpark();
    both.Decrement();
  }).ok());
  ASSERT_TRUE(both.Wait());
  EXPECT_TRUE(unparked);
}

TEST_P(TimeConformance, TaskGroupWaitUntilTimesOutWhileAChildIsBlocked) {
  ChannelPair pair = MakePair();
  std::string child_got;
  TaskGroup group(*scheduler_);
  ASSERT_TRUE(group.Spawn([&] {
    char buffer[16];
    absl::StatusOr<size_t> got = Receive(*pair.task_end, absl::MakeSpan(buffer));
    if (got.ok()) child_got.assign(buffer, *got);
  }).ok());
  absl::Status status = group.WaitUntil(absl::Now() + absl::Milliseconds(2));
  EXPECT_EQ(status.code(), kDeadline) << status;
  status = group.WaitUntil(absl::InfinitePast());
  EXPECT_EQ(status.code(), kDeadline) << status;
  ASSERT_TRUE(Send(*pair.owner_end, absl::MakeConstSpan("go", 2)).ok());
  group.Wait();
  EXPECT_EQ(child_got, "go");
  EXPECT_TRUE(group.WaitUntil(absl::InfinitePast()).ok());  // nothing left to wait for
}

TEST_P(TimeConformance, TaskGroupWaitUntilInsideATaskLetsTheOthersRun) {
  if (!UnitsAreStackfulTasks()) {
    GTEST_SKIP() << "inside an OS worker, waiting helps by running the blocked child inline; "
                    "the wait from outside (previous test) covers these schedulers";
  }
  ChannelPair pair = MakePair();
  std::vector<std::string> order;
  RunInUnit([&] {
    TaskGroup group(*scheduler_);
    ASSERT_TRUE(group.Spawn([&] {
      char buffer[16];
      absl::StatusOr<size_t> got = Receive(*pair.task_end, absl::MakeSpan(buffer));
      order.push_back(got.ok() ? absl::StrCat("child got ", std::string(buffer, *got))
                               : got.status().ToString());
    }).ok());
    absl::Status status = group.WaitUntil(absl::Now() + absl::Milliseconds(2));
    order.push_back(status.code() == kDeadline ? "wait timed out" : status.ToString());
    ASSERT_TRUE(Send(*pair.owner_end, absl::MakeConstSpan("go", 2)).ok());
    status = group.WaitUntil(absl::Now() + absl::Hours(1));
    order.push_back(status.ok() ? "wait done" : status.ToString());
  });
  EXPECT_EQ(order, (std::vector<std::string>{"wait timed out", "child got go", "wait done"}));
}

INSTANTIATE_TEST_SUITE_P(Conformance, TimeConformance, ::testing::ValuesIn(WorkerCounts()),
                         WorkerCountName);

}  // namespace
}  // namespace taskrt::conformance
