// Conformance group: the EventLoop contract (core/event_loop.h).

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <thread>
#include <vector>

#include "absl/time/time.h"
#include "core/event_loop.h"
#include "gtest/gtest.h"
#include "tests/conformance/conformance.h"

namespace taskrt::conformance {
namespace {

class EventLoopConformance : public ConformanceTest {
 protected:
  void SetUp() override {
    ConformanceTest::SetUp();
    if (IsSkipped() || HasFatalFailure()) return;
    ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds_), 0);
  }
  void TearDown() override {
    if (fds_[0] >= 0) close(fds_[0]);
    if (fds_[1] >= 0) close(fds_[1]);
    ConformanceTest::TearDown();
  }
  int fds_[2] = {-1, -1};
};

TEST_P(EventLoopConformance, PostedWorkRunsOnTheLoopThreadInOrder) {
  std::vector<int> order;
  std::atomic<int> posted_from_scheduler{0};
  for (int i = 0; i < 10; ++i) {
    ASSERT_TRUE(loop_->Post([&, i] {
      EXPECT_TRUE(loop_->IsLoopThread());
      order.push_back(i);
    }).ok());
  }
  // Posting from other threads is allowed too.
  ASSERT_TRUE(scheduler_->Schedule([&] {
    EXPECT_FALSE(loop_->IsLoopThread());
    EXPECT_TRUE(loop_->Post([&] { posted_from_scheduler = 1; }).ok());
  }).ok());
  ASSERT_TRUE(PumpUntil([&] { return order.size() == 10 && posted_from_scheduler == 1; }));
  for (int i = 0; i < 10; ++i) EXPECT_EQ(order[i], i);
}

TEST_P(EventLoopConformance, WatchFiresWhenDataArrivesFromAnotherThread) {
  int calls = 0;
  absl::StatusOr<WatchId> watch = loop_->Watch({fds_[0], POLLIN}, [&] {
    ++calls;
    char buffer[64];
    while (read(fds_[0], buffer, sizeof buffer) > 0) {
    }
  });
  ASSERT_TRUE(watch.ok()) << watch.status();
  ASSERT_TRUE(scheduler_->Schedule([fd = fds_[1]] {
    EXPECT_EQ(write(fd, "x", 1), 1);
  }).ok());
  ASSERT_TRUE(PumpUntil([&] { return calls >= 1; }));
  EXPECT_TRUE(loop_->Unwatch(*watch).ok());
}

TEST_P(EventLoopConformance, UnwatchFromInsideTheCallbackStopsFurtherCalls) {
  int calls = 0;
  WatchId id = 0;
  absl::StatusOr<WatchId> watch = loop_->Watch({fds_[0], POLLIN}, [&] {
    ++calls;
    EXPECT_TRUE(loop_->Unwatch(id).ok());
  });
  ASSERT_TRUE(watch.ok()) << watch.status();
  id = *watch;
  ASSERT_EQ(write(fds_[1], "a", 1), 1);
  ASSERT_TRUE(PumpUntil([&] { return calls == 1; }));
  // More data, more pumping: no further call. A marker posted after the
  // write proves the loop went round at least once after it.
  ASSERT_EQ(write(fds_[1], "b", 1), 1);
  bool marker = false;
  ASSERT_TRUE(loop_->Post([&] { marker = true; }).ok());
  ASSERT_TRUE(PumpUntil([&] { return marker; }));
  ASSERT_TRUE(loop_->RunOnce(absl::ZeroDuration()).ok());
  EXPECT_EQ(calls, 1);
}

TEST_P(EventLoopConformance, HangUpTriggersTheWatch) {
  bool called = false;
  absl::StatusOr<WatchId> watch = loop_->Watch({fds_[0], POLLIN}, [&] { called = true; });
  ASSERT_TRUE(watch.ok()) << watch.status();
  close(fds_[1]);
  fds_[1] = -1;
  ASSERT_TRUE(PumpUntil([&] { return called; }));
  EXPECT_TRUE(loop_->Unwatch(*watch).ok());
}

TEST_P(EventLoopConformance, MetricsCountIterationsCallbacksTimersAndPostedWorkExactly) {
  const LoopMetrics before = loop_->metrics();
  // Three posts, each asking for a wake-up; two timers already due.
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(loop_->Post([] {}).ok());
  ASSERT_TRUE(loop_->RunAt(absl::InfinitePast(), [] {}).ok());
  ASSERT_TRUE(loop_->RunAfter(absl::ZeroDuration(), [] {}).ok());
  // One byte waiting: an edge-triggered watch is called once for it.
  int calls = 0;
  absl::StatusOr<WatchId> watch = loop_->Watch({fds_[0], POLLIN}, [&] { ++calls; });
  ASSERT_TRUE(watch.ok()) << watch.status();
  ASSERT_EQ(write(fds_[1], "x", 1), 1);
  // Until the watch and both timers have run; each pass is one iteration.
  int passes = 0;
  LoopMetrics after;
  do {
    ASSERT_TRUE(loop_->RunOnce(absl::Seconds(10)).ok());
    ++passes;
    after = loop_->metrics();
  } while (calls == 0 || after.timers_run - before.timers_run < 2);
  EXPECT_EQ(after.iterations - before.iterations, static_cast<uint64_t>(passes));
  EXPECT_EQ(after.callbacks_run - before.callbacks_run, static_cast<uint64_t>(calls));
  EXPECT_EQ(after.timers_run - before.timers_run, 2u);
  EXPECT_EQ(after.posted_run - before.posted_run, 3u);
  EXPECT_GE(after.wake_requests - before.wake_requests, 3u);
  EXPECT_EQ(after.io_started - before.io_started, 0u);
  ASSERT_TRUE(loop_->Unwatch(*watch).ok());
}

TEST_P(EventLoopConformance, MetricsCountSocketOperationsStarted) {
  const uint64_t before = loop_->metrics().io_started;
  absl::StatusOr<IoId> receive =
      loop_->ReceiveEach(fds_[0], [](absl::StatusOr<absl::Span<const char>>) {});
  ASSERT_TRUE(receive.ok()) << receive.status();
  absl::StatusOr<IoId> send = loop_->SendAll(fds_[1], "hello", [](absl::Status) {});
  ASSERT_TRUE(send.ok()) << send.status();
  // Refused operations are not counted.
  EXPECT_FALSE(loop_->ReceiveEach(-1, [](absl::StatusOr<absl::Span<const char>>) {}).ok());
  EXPECT_EQ(loop_->metrics().io_started - before, 2u);
  EXPECT_TRUE(loop_->CancelIo(*receive).ok());
}

TEST_P(EventLoopConformance, RunOnceFromAnotherThreadIsRefused) {
  ASSERT_TRUE(loop_->RunOnce(absl::ZeroDuration()).ok()) << "binds the loop to this thread";
  EXPECT_TRUE(loop_->IsLoopThread());
  absl::Status other_thread_status;
  std::thread other([&] { other_thread_status = loop_->RunOnce(absl::ZeroDuration()).status(); });
  other.join();
  EXPECT_EQ(other_thread_status.code(), absl::StatusCode::kPermissionDenied) << other_thread_status;
}

TEST_P(EventLoopConformance, StopFromAnotherThreadEndsRun) {
  ASSERT_TRUE(scheduler_->Schedule([&] {
    // Post the Stop so that it happens after Run started on the loop thread.
    EXPECT_TRUE(loop_->Post([&] { loop_->Stop(); }).ok());
  }).ok());
  EXPECT_TRUE(loop_->Run().ok());
  // Stop before Run makes the next Run return at once.
  loop_->Stop();
  EXPECT_TRUE(loop_->Run().ok());
}

TEST_P(EventLoopConformance, BadArgumentsGetErrors) {
  EXPECT_EQ(loop_->Unwatch(987654).code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(loop_->Watch({-1, POLLIN}, [] {}).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(loop_->Watch({fds_[0], POLLIN}, nullptr).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(loop_->Post(Work()).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(loop_->RunOnce(absl::Seconds(-1)).status().code(), absl::StatusCode::kInvalidArgument);
}

INSTANTIATE_TEST_SUITE_P(Conformance, EventLoopConformance, ::testing::ValuesIn(WorkerCounts()),
                         WorkerCountName);

}  // namespace
}  // namespace taskrt::conformance
