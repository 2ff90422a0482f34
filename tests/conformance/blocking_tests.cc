// Conformance group: blocking inside work. A unit blocked on a channel, a
// fork-join wait or an event loop must not stop the scheduler's other
// units. On a cooperative scheduler they share the blocked unit's thread;
// on OS-thread schedulers they need another worker, so those tests skip
// (saying why) when the scheduler has a single OS worker.

#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "core/channel.h"
#include "core/event_loop.h"
#include "core/execution_context.h"
#include "core/task_group.h"
#include "gtest/gtest.h"
#include "tests/conformance/conformance.h"

namespace taskrt::conformance {
namespace {

class BlockingConformance : public ConformanceTest {
 protected:
  ChannelPair MakePair() {
    absl::StatusOr<ChannelPair> pair = channels_->CreatePair(ChannelOptions{});
    EXPECT_TRUE(pair.ok()) << pair.status();
    return pair.ok() ? *std::move(pair) : ChannelPair{};
  }

  // Whether a blocking call inside this scheduler's work suspends just that
  // unit (stackful tasks) rather than its OS thread.
  bool BlockingSuspendsUnits() {
    Notification probed;
    bool suspends = false;
    EXPECT_TRUE(scheduler_->Schedule([&] {
      suspends = CurrentExecutionContext().suspends_task();
      probed.Notify();
    }).ok());
    EXPECT_TRUE(probed.WaitForNotification());
    return suspends;
  }

  // True (and the test should skip) when a blocked unit would hold the
  // only OS worker.
  bool OneBlockedUnitStopsAll() {
    return !BlockingSuspendsUnits() && scheduler_->concurrency() < 2;
  }
};

constexpr const char* kOneWorkerReason =
    "one OS worker: a blocked unit holds it, so nothing else can run (a cooperative scheduler "
    "suspends the unit instead)";

TEST_P(BlockingConformance, AUnitBlockedOnAChannelDoesNotStopOthers) {
  if (OneBlockedUnitStopsAll()) {
    GTEST_SKIP() << kOneWorkerReason;
  }
  ChannelPair pair = MakePair();
  std::atomic<bool> receiver_got{false};
  bool receiver_done_before_sender_ran = true;
  Notification receiver_done;
  Notification sender_done;
  // The receiver is scheduled first and can only finish after the sender,
  // scheduled second, has run.
  ASSERT_TRUE(scheduler_->Schedule([&] {
    char byte = 0;
    absl::StatusOr<size_t> got = Receive(*pair.task_end, absl::MakeSpan(&byte, 1));
    EXPECT_TRUE(got.ok()) << got.status();
    EXPECT_EQ(byte, 'x');
    receiver_got = true;
    receiver_done.Notify();
  }).ok());
  ASSERT_TRUE(scheduler_->Schedule([&] {
    receiver_done_before_sender_ran = receiver_got.load();
    EXPECT_TRUE(Send(*pair.owner_end, absl::MakeConstSpan("x", 1)).ok());
    sender_done.Notify();
  }).ok());
  ASSERT_TRUE(sender_done.WaitForNotification()) << "the second unit never ran";
  ASSERT_TRUE(receiver_done.WaitForNotification()) << "the blocked unit never woke";
  EXPECT_FALSE(receiver_done_before_sender_ran);
  EXPECT_TRUE(receiver_got.load());
}

TEST_P(BlockingConformance, ManyBlockedUnitsWakeWhenDataArrivesFromOutside) {
  // Works on every scheduler: units that cannot start yet find their data
  // waiting when they do.
  constexpr int kUnits = 64;
  std::vector<ChannelPair> pairs;
  for (int i = 0; i < kUnits; ++i) pairs.push_back(MakePair());
  CountDown all_woke(kUnits);
  std::vector<int> received(kUnits, -1);
  for (int i = 0; i < kUnits; ++i) {
    ASSERT_TRUE(scheduler_->Schedule([&, i] {
      int value = -1;
      absl::StatusOr<size_t> got =
          Receive(*pairs[i].task_end, absl::MakeSpan(reinterpret_cast<char*>(&value), sizeof value));
      EXPECT_TRUE(got.ok()) << got.status();
      received[i] = value;
      all_woke.Decrement();
    }).ok());
  }
  for (int i = kUnits - 1; i >= 0; --i) {  // reverse order: no unit is woken by luck of order
    const int value = i * 3;
    ASSERT_TRUE(
        Send(*pairs[i].owner_end, absl::MakeConstSpan(reinterpret_cast<const char*>(&value),
                                                      sizeof value))
            .ok());
  }
  ASSERT_TRUE(all_woke.Wait());
  for (int i = 0; i < kUnits; ++i) EXPECT_EQ(received[i], i * 3) << "unit " << i;
}

TEST_P(BlockingConformance, AForkJoinWaitDoesNotStopAChildThatIsBlocked) {
  if (OneBlockedUnitStopsAll()) {
    GTEST_SKIP() << kOneWorkerReason;
  }
  // The parent waits for two children: one blocks on a channel that only
  // the other writes. Helping must not run the blocked child in a way that
  // keeps the writer from running.
  ChannelPair pair = MakePair();
  std::atomic<int> delivered{0};
  Notification parent_done;
  ASSERT_TRUE(scheduler_->Schedule([&] {
    TaskGroup group(*scheduler_);
    EXPECT_TRUE(group.Spawn([&] {
      char byte = 0;
      if (Receive(*pair.task_end, absl::MakeSpan(&byte, 1)).ok() && byte == 'y') {
        delivered.fetch_add(1);
      }
    }).ok());
    EXPECT_TRUE(group.Spawn([&] {
      EXPECT_TRUE(Send(*pair.owner_end, absl::MakeConstSpan("y", 1)).ok());
    }).ok());
    group.Wait();
    parent_done.Notify();
  }).ok());
  ASSERT_TRUE(parent_done.WaitForNotification()) << "fork-join wait never returned";
  EXPECT_EQ(delivered.load(), 1);
}

TEST_P(BlockingConformance, AnEventLoopRunInAUnitLetsOtherUnitsRun) {
  if (OneBlockedUnitStopsAll()) {
    GTEST_SKIP() << kOneWorkerReason;
  }
  // Kore's worker shape: one unit runs the owner's event loop; other units
  // write to it. The loop must wait without stopping the writers.
  constexpr int kWriters = 8;
  constexpr int kMessagesEach = 20;
  std::vector<ChannelPair> pairs;
  for (int i = 0; i < kWriters; ++i) pairs.push_back(MakePair());
  std::atomic<int> received{0};
  absl::Status run_status;
  Notification loop_done;
  EventLoop* loop = loop_.get();
  ASSERT_TRUE(scheduler_->Schedule([&] {
    for (int i = 0; i < kWriters; ++i) {
      ChannelEnd* owner = pairs[i].owner_end.get();
      absl::StatusOr<WatchId> id = loop->Watch(owner->receive_readiness(), [&, owner] {
        char buffer[16];
        while (owner->TryReceive(absl::MakeSpan(buffer)).ok()) {
          if (received.fetch_add(1) + 1 == kWriters * kMessagesEach) loop->Stop();
        }
      });
      EXPECT_TRUE(id.ok()) << id.status();
    }
    run_status = loop->Run();
    loop_done.Notify();
  }).ok());
  CountDown writers_done(kWriters);
  for (int i = 0; i < kWriters; ++i) {
    ASSERT_TRUE(scheduler_->Schedule([&, i] {
      for (int m = 0; m < kMessagesEach; ++m) {
        EXPECT_TRUE(Send(*pairs[i].task_end, absl::MakeConstSpan("message", 7)).ok());
        Yield();  // interleave with the loop and the other writers
      }
      writers_done.Decrement();
    }).ok());
  }
  ASSERT_TRUE(loop_done.WaitForNotification()) << "the loop never saw every message";
  ASSERT_TRUE(writers_done.Wait());
  EXPECT_TRUE(run_status.ok()) << run_status;
  EXPECT_EQ(received.load(), kWriters * kMessagesEach);
}

INSTANTIATE_TEST_SUITE_P(Conformance, BlockingConformance, ::testing::ValuesIn(WorkerCounts()),
                         WorkerCountName);

}  // namespace
}  // namespace taskrt::conformance
