// Backend-specific tests of the io_uring loop: edge-triggered multishot
// polls, re-arming, prompt release of unwatched files, watches from other
// threads, coalesced wake-ups and the probe's refusals. The EventLoop
// contract itself is tested by tests/conformance/.

#include "event_loops/io_uring/io_uring_loop.h"

#include <liburing.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstddef>
#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "core/channel.h"
#include "event_loops/io_uring/io_uring_loop_internal.h"
#include "gtest/gtest.h"
#include "platform/io_uring/refuse_for_test.h"
#include "platform/io_uring/ring.h"

namespace taskrt {
namespace {

class IoUringLoopTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<std::unique_ptr<EventLoop>> loop = NewIoUringLoop();
    if (absl::IsUnavailable(loop.status())) {
      GTEST_SKIP() << "io_uring unavailable here: " << loop.status();
    }
    ASSERT_TRUE(loop.ok()) << loop.status();
    loop_ = *std::move(loop);
  }

  void TearDown() override {
    for (int fd : fds_) close(fd);
  }

  // A connected, non-blocking stream socketpair closed at TearDown.
  std::pair<int, int> SocketPair() {
    int fds[2];
    EXPECT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds), 0);
    fds_.push_back(fds[0]);
    fds_.push_back(fds[1]);
    return {fds[0], fds[1]};
  }

  // Runs the loop until `done()`, or a generous hang guard expires.
  bool PumpUntil(const std::function<bool()>& done) {
    const absl::Time give_up = absl::Now() + absl::Seconds(60);
    while (!done()) {
      if (absl::Now() > give_up) return false;
      absl::StatusOr<int> ran = loop_->RunOnce(absl::Milliseconds(50));
      if (!ran.ok()) {
        ADD_FAILURE() << ran.status();
        return false;
      }
    }
    return true;
  }

  io_uring_loop_internal::LoopStats Stats() {
    std::optional<io_uring_loop_internal::LoopStats> stats =
        io_uring_loop_internal::GetLoopStats(*loop_);
    EXPECT_TRUE(stats.has_value());
    return stats.value_or(io_uring_loop_internal::LoopStats{});
  }

  std::unique_ptr<EventLoop> loop_;
  std::vector<int> fds_;
};

void Drain(int fd) {
  char buffer[256];
  while (read(fd, buffer, sizeof buffer) > 0) {
  }
}

TEST_F(IoUringLoopTest, WatchesAreEdgeTriggered) {
  auto [a, b] = SocketPair();
  int calls = 0;
  absl::StatusOr<WatchId> watch = loop_->Watch({a, POLLIN}, [&] { ++calls; });  // reads nothing
  ASSERT_TRUE(watch.ok()) << watch.status();
  ASSERT_EQ(write(b, "x", 1), 1);
  ASSERT_TRUE(PumpUntil([&] { return calls == 1; }));
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(loop_->RunOnce(absl::ZeroDuration()).ok());
  EXPECT_EQ(calls, 1) << "data left unread is not reported again";
  ASSERT_EQ(write(b, "y", 1), 1);
  ASSERT_TRUE(PumpUntil([&] { return calls == 2; })) << "new data is";
  EXPECT_TRUE(loop_->Unwatch(*watch).ok());
}

TEST_F(IoUringLoopTest, UnwatchLetsGoOfTheFileAtOnce) {
  auto [a, b] = SocketPair();
  absl::StatusOr<WatchId> watch = loop_->Watch({a, POLLIN}, [] {});
  ASSERT_TRUE(watch.ok()) << watch.status();
  ASSERT_TRUE(loop_->Unwatch(*watch).ok());
  // Had the poll stayed armed it would hold the socket open, and the peer
  // would see EAGAIN instead of the end of the stream.
  close(a);
  fds_.erase(fds_.begin());
  char byte;
  EXPECT_EQ(recv(b, &byte, 1, MSG_DONTWAIT), 0) << std::strerror(errno);
}

TEST_F(IoUringLoopTest, PollsOfAnotherRingKeepFiring) {
  // The kernel turns polls of another ring's fd one-shot; the loop re-arms.
  // The other ring here is a plain one whose completions are no-ops, as an
  // io_uring backend's ring would be watched by an owner.
  io_uring ring{};
  absl::StatusOr<io_uring_platform::RingSetup> setup =
      io_uring_platform::SetUpRing(&ring, {.user = "test", .sq_entries = 4});
  if (absl::IsUnavailable(setup.status())) GTEST_SKIP() << setup.status();
  ASSERT_TRUE(setup.ok()) << setup.status();
  int reaped = 0;
  absl::StatusOr<WatchId> watch = loop_->Watch({ring.ring_fd, POLLIN}, [&] {
    io_uring_cqe* cqe;
    while (io_uring_peek_cqe(&ring, &cqe) == 0) {
      io_uring_cqe_seen(&ring, cqe);
      ++reaped;
    }
  });
  ASSERT_TRUE(watch.ok()) << watch.status();
  constexpr int kRounds = 20;
  for (int i = 0; i < kRounds; ++i) {
    io_uring_sqe* sqe = io_uring_get_sqe(&ring);
    ASSERT_NE(sqe, nullptr);
    io_uring_prep_nop(sqe);
    ASSERT_EQ(io_uring_submit(&ring), 1);
    ASSERT_TRUE(PumpUntil([&] { return reaped == i + 1; })) << "round " << i;
  }
  std::printf("polls ended by the kernel and re-armed: %llu\n",
              static_cast<unsigned long long>(Stats().polls_ended));
  EXPECT_TRUE(loop_->Unwatch(*watch).ok());
  io_uring_platform::ExitRing(&ring);
}

TEST_F(IoUringLoopTest, AWatchAddedByAThreadThatExitsKeepsWorking) {
  auto [a, b] = SocketPair();
  std::atomic<int> calls{0};
  absl::StatusOr<WatchId> watch;
  std::thread adder([&, fd = a] {
    watch = loop_->Watch({fd, POLLIN}, [&, fd] {
      Drain(fd);
      calls.fetch_add(1);
    });
  });
  adder.join();
  ASSERT_TRUE(watch.ok()) << watch.status();
  for (int i = 1; i <= 3; ++i) {
    ASSERT_EQ(write(b, "z", 1), 1);
    ASSERT_TRUE(PumpUntil([&] { return calls.load() >= i; })) << "write " << i;
  }
  EXPECT_TRUE(loop_->Unwatch(*watch).ok());
}

TEST_F(IoUringLoopTest, AThousandWatchesFanIn) {
  constexpr int kWatches = 1000;
  std::vector<int> writers;
  std::vector<WatchId> ids;
  int calls = 0;
  for (int i = 0; i < kWatches; ++i) {
    auto [a, b] = SocketPair();
    writers.push_back(b);
    absl::StatusOr<WatchId> watch = loop_->Watch({a, POLLIN}, [&calls, fd = a] {
      Drain(fd);
      ++calls;
    });
    ASSERT_TRUE(watch.ok()) << watch.status();
    ids.push_back(*watch);
  }
  for (int fd : writers) ASSERT_EQ(write(fd, "m", 1), 1);
  ASSERT_TRUE(PumpUntil([&] { return calls >= kWatches; }));
  EXPECT_EQ(calls, kWatches);
  for (WatchId id : ids) EXPECT_TRUE(loop_->Unwatch(id).ok());
}

TEST_F(IoUringLoopTest, PostsFromManyThreadsRunInOrderWithCoalescedWakeUps) {
  constexpr int kThreads = 4;
  constexpr int kPosts = 1000;
  std::vector<std::vector<int>> seen(kThreads);
  std::vector<std::thread> posters;
  for (int t = 0; t < kThreads; ++t) {
    posters.emplace_back([&, t] {
      for (int i = 0; i < kPosts; ++i) {
        EXPECT_TRUE(loop_->Post([&seen, t, i] { seen[t].push_back(i); }).ok());
      }
    });
  }
  for (std::thread& poster : posters) poster.join();
  ASSERT_TRUE(PumpUntil([&] {
    size_t total = 0;
    for (const auto& s : seen) total += s.size();
    return total == static_cast<size_t>(kThreads * kPosts);
  }));
  for (int t = 0; t < kThreads; ++t) {
    for (int i = 0; i < kPosts; ++i) ASSERT_EQ(seen[t][i], i) << "thread " << t;
  }
  const io_uring_loop_internal::LoopStats stats = Stats();
  EXPECT_GE(stats.wake_ups, 1u);
  EXPECT_LE(stats.wake_ups, static_cast<uint64_t>(kThreads * kPosts));
  std::printf("%d posts, %llu wake-ups\n", kThreads * kPosts,
              static_cast<unsigned long long>(stats.wake_ups));
}

TEST_F(IoUringLoopTest, RunOnceWithATimeoutAndNothingToDoReturnsZero) {
  absl::StatusOr<int> ran = loop_->RunOnce(absl::Milliseconds(5));
  ASSERT_TRUE(ran.ok()) << ran.status();
  EXPECT_EQ(*ran, 0);
  ran = loop_->RunOnce(absl::ZeroDuration());
  ASSERT_TRUE(ran.ok()) << ran.status();
  EXPECT_EQ(*ran, 0);
}

TEST_F(IoUringLoopTest, AWatchOfAClosedFdIsRefused) {
  auto [a, b] = SocketPair();
  (void)b;
  const int closed = dup(a);
  ASSERT_GE(closed, 0);
  close(closed);
  EXPECT_EQ(loop_->Watch({closed, POLLIN}, [] {}).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(IoUringLoopProbeTest, AKernelThatRefusesIoUringMakesTheLoopUnavailable) {
  io_uring_platform::ExpectUnavailableWhenIoUringIsRefused([] { return NewIoUringLoop().status(); });
}

}  // namespace
}  // namespace taskrt
