// Backend-specific tests of the io_uring loop: edge-triggered multishot
// polls, re-arming, prompt release of unwatched files, watches from other
// threads, coalesced wake-ups and the probe's refusals. The EventLoop
// contract itself is tested by tests/conformance/.

#include "event_loops/io_uring/io_uring_loop.h"

#include <arpa/inet.h>
#include <liburing.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstddef>
#include <cstring>
#include <functional>
#include <future>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "core/channel.h"
#include "core/event_loop.h"
#include "event_loops/io_uring/io_uring_loop_internal.h"
#include "gtest/gtest.h"
#include "platform/io_uring/refuse_for_test.h"
#include "platform/io_uring/ring.h"

namespace taskrt {
namespace {

// An IORING_SETUP_* bit no kernel knows: the single-issuer setup fails with
// EINVAL, as on a kernel without SINGLE_ISSUER, and the loop falls back.
constexpr unsigned kUnknownSetupFlag = 1u << 31;

// Parameter: whether the loop takes the plain-ring fallback.
class IoUringLoopTest : public ::testing::TestWithParam<bool> {
 protected:
  void SetUp() override {
    absl::StatusOr<std::unique_ptr<EventLoop>> loop =
        io_uring_loop_internal::NewLoopForTest(GetParam() ? kUnknownSetupFlag : 0);
    if (absl::IsUnavailable(loop.status())) {
      GTEST_SKIP() << "io_uring unavailable here: " << loop.status();
    }
    ASSERT_TRUE(loop.ok()) << loop.status();
    loop_ = *std::move(loop);
  }

  void TearDown() override {
    StopLoopThread();
    for (int fd : fds_) close(fd);
  }

  // Runs the loop on a thread of its own until StopLoopThread().
  void StartLoopThread() {
    loop_thread_ = std::thread([this] { EXPECT_TRUE(loop_->Run().ok()); });
  }

  void StopLoopThread() {
    if (!loop_thread_.joinable()) return;
    loop_->Stop();
    loop_thread_.join();
  }

  // Waits until the running loop thread has run everything posted so far.
  void Barrier() {
    std::promise<void> ran;
    ASSERT_TRUE(loop_->Post([&ran] { ran.set_value(); }).ok());
    ran.get_future().wait();
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
  std::thread loop_thread_;
};

INSTANTIATE_TEST_SUITE_P(Rings, IoUringLoopTest, ::testing::Bool(),
                         [](const ::testing::TestParamInfo<bool>& info) {
                           return info.param ? "PlainRingFallback" : "SingleIssuer";
                         });

void Drain(int fd) {
  char buffer[256];
  while (read(fd, buffer, sizeof buffer) > 0) {
  }
}

TEST_P(IoUringLoopTest, WatchesAreEdgeTriggered) {
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

TEST_P(IoUringLoopTest, UnwatchLetsGoOfTheFileAtOnce) {
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

TEST_P(IoUringLoopTest, PollsOfAnotherRingKeepFiring) {
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

TEST_P(IoUringLoopTest, AWatchAddedByAThreadThatExitsKeepsWorking) {
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

TEST_P(IoUringLoopTest, AThousandWatchesFanIn) {
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

TEST_P(IoUringLoopTest, PostsFromManyThreadsToALoopThatIsAwakeRunInOrderWithoutWakeUps) {
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
  // The loop never slept while they posted: no eventfd write was needed.
  EXPECT_EQ(Stats().wake_ups, 0u);
}

TEST_P(IoUringLoopTest, PostsToALoopThreadThatSleepsBetweenThemAllRun) {
  StartLoopThread();
  constexpr int kRounds = 100;
  // Each round waits for the loop to run its post, and the loop goes back
  // to sleep when it can: a lost wake-up hangs here.
  for (int i = 0; i < kRounds; ++i) Barrier();
  // How many posts found the loop asleep depends on the timing; at most
  // one eventfd write each.
  const io_uring_loop_internal::LoopStats stats = Stats();
  EXPECT_LE(stats.wake_ups, static_cast<uint64_t>(kRounds));
  std::printf("%d posts to a loop that sleeps between them, %llu wake-ups\n", kRounds,
              static_cast<unsigned long long>(stats.wake_ups));
}

TEST_P(IoUringLoopTest, WatchUnwatchAndPostFromAnotherThreadArriveInOrder) {
  StartLoopThread();
  constexpr int kRounds = 50;
  std::vector<int> seen;  // loop thread only
  for (int round = 0; round < kRounds; ++round) {
    auto [a, b] = SocketPair();
    std::atomic<int> removed_calls{0};
    std::promise<void> fired;
    std::atomic<bool> fired_once{false};
    ASSERT_TRUE(loop_->Post([&seen, round] { seen.push_back(2 * round); }).ok());
    absl::StatusOr<WatchId> removed = loop_->Watch({a, POLLIN}, [&] { removed_calls.fetch_add(1); });
    ASSERT_TRUE(removed.ok()) << removed.status();
    ASSERT_TRUE(loop_->Unwatch(*removed).ok());
    absl::StatusOr<WatchId> kept = loop_->Watch({a, POLLIN}, [&, fd = a] {
      Drain(fd);
      if (!fired_once.exchange(true)) fired.set_value();
    });
    ASSERT_TRUE(kept.ok()) << kept.status();
    ASSERT_TRUE(loop_->Post([&seen, round] { seen.push_back(2 * round + 1); }).ok());
    // Readable only now: a callback of the first watch would have to come
    // after its Unwatch returned.
    ASSERT_EQ(write(b, "x", 1), 1);
    fired.get_future().wait();
    ASSERT_TRUE(loop_->Unwatch(*kept).ok());
    Barrier();
    EXPECT_EQ(removed_calls.load(), 0) << "round " << round << ": an unwatched callback ran";
  }
  StopLoopThread();
  ASSERT_EQ(seen.size(), static_cast<size_t>(2 * kRounds));
  for (int i = 0; i < 2 * kRounds; ++i) EXPECT_EQ(seen[i], i);
  std::printf("requests handed to the loop thread: %llu\n",
              static_cast<unsigned long long>(Stats().handed_over));
}

TEST_P(IoUringLoopTest, UnwatchFromAnotherThreadThenCloseAndReuseOfTheFdNumberFiresNoOldCallback) {
  StartLoopThread();
  auto [a, b] = SocketPair();
  std::atomic<int> old_calls{0};
  std::promise<void> old_fired;
  absl::StatusOr<WatchId> old_watch = loop_->Watch({a, POLLIN}, [&, fd = a] {
    Drain(fd);
    if (old_calls.fetch_add(1) == 0) old_fired.set_value();
  });
  ASSERT_TRUE(old_watch.ok()) << old_watch.status();
  ASSERT_EQ(write(b, "x", 1), 1);
  old_fired.get_future().wait();  // the poll is in the kernel now
  ASSERT_TRUE(loop_->Unwatch(*old_watch).ok());
  close(a);
  // The kernel let go of the socket: its peer sees the end of the stream.
  char byte;
  EXPECT_EQ(recv(b, &byte, 1, MSG_DONTWAIT), 0) << std::strerror(errno);

  // A new socket under the old number.
  int fds[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds), 0);
  if (fds[0] != a) {  // the lowest free number is usually `a` already
    ASSERT_EQ(dup2(fds[0], a), a);
    close(fds[0]);
  }
  fds_[0] = a;  // closed at TearDown, with the new peer
  fds_.push_back(fds[1]);
  std::promise<void> new_fired;
  std::atomic<int> new_calls{0};
  absl::StatusOr<WatchId> new_watch = loop_->Watch({a, POLLIN}, [&, fd = a] {
    Drain(fd);
    if (new_calls.fetch_add(1) == 0) new_fired.set_value();
  });
  ASSERT_TRUE(new_watch.ok()) << new_watch.status();
  ASSERT_EQ(write(fds[1], "y", 1), 1);
  new_fired.get_future().wait();
  Barrier();
  EXPECT_EQ(old_calls.load(), 1) << "the old callback fired for the new socket";
  EXPECT_TRUE(loop_->Unwatch(*new_watch).ok());
}

TEST_P(IoUringLoopTest, UnwatchOnTheLoopThreadLetsGoOfTheFileAtOnce) {
  ASSERT_TRUE(loop_->RunOnce(absl::ZeroDuration()).ok());  // this thread runs the loop
  auto [a, b] = SocketPair();
  absl::StatusOr<WatchId> watch = loop_->Watch({a, POLLIN}, [] {});
  ASSERT_TRUE(watch.ok()) << watch.status();
  ASSERT_TRUE(loop_->RunOnce(absl::ZeroDuration()).ok());  // submits the poll
  ASSERT_TRUE(loop_->Unwatch(*watch).ok());
  close(a);
  fds_.erase(fds_.begin());
  char byte;
  EXPECT_EQ(recv(b, &byte, 1, MSG_DONTWAIT), 0) << std::strerror(errno);
}

TEST_P(IoUringLoopTest, UnwatchWhileAWakeUpOfThePollWaitsLetsGoOfTheFile) {
  ASSERT_TRUE(loop_->RunOnce(absl::ZeroDuration()).ok());  // this thread runs the loop
  auto [a, b] = SocketPair();
  absl::StatusOr<WatchId> watch = loop_->Watch({a, POLLIN}, [] {});
  ASSERT_TRUE(watch.ok()) << watch.status();
  ASSERT_TRUE(loop_->RunOnce(absl::ZeroDuration()).ok());  // submits the poll
  // Wakes the poll; with DEFER_TASKRUN the wake-up waits for the loop
  // thread to enter the kernel, and a poll-remove would fail meanwhile.
  ASSERT_EQ(write(b, "x", 1), 1);
  ASSERT_TRUE(loop_->Unwatch(*watch).ok());
  close(a);
  fds_.erase(fds_.begin());
  // Closed with a byte unread: the peer sees a reset (a socket still held
  // open would say EAGAIN).
  char byte;
  const ssize_t got = recv(b, &byte, 1, MSG_DONTWAIT);
  const int error = errno;
  EXPECT_TRUE(got == 0 || (got < 0 && error == ECONNRESET)) << got << " " << std::strerror(error);
}

TEST(IoUringLoopSetupTest, TheRingSetupAndItsFallbackAreReported) {
  absl::StatusOr<std::unique_ptr<EventLoop>> loop = NewIoUringLoop();
  if (absl::IsUnavailable(loop.status())) GTEST_SKIP() << "io_uring unavailable here: " << loop.status();
  ASSERT_TRUE(loop.ok()) << loop.status();
  std::optional<io_uring_loop_internal::LoopSetup> setup =
      io_uring_loop_internal::GetLoopSetup(**loop);
  ASSERT_TRUE(setup.has_value());
  EXPECT_EQ(setup->single_issuer, setup->fallback.empty());
  EXPECT_FALSE(setup->ring_fd_registered) << "registered before the loop thread is known";
  std::printf("this kernel: single issuer %s%s\n", setup->single_issuer ? "yes" : "no, ",
              setup->fallback.c_str());
  std::printf("socket I/O: %s%s\n", setup->completion_io ? "completions" : "readiness, ",
              setup->io_fallback.c_str());
  EXPECT_EQ(setup->completion_io, setup->io_fallback.empty());
  ASSERT_TRUE((*loop)->RunOnce(absl::ZeroDuration()).ok());
  std::printf("ring fd registered: %s\n",
              io_uring_loop_internal::GetLoopSetup(**loop)->ring_fd_registered ? "yes" : "no");

  absl::StatusOr<std::unique_ptr<EventLoop>> plain =
      io_uring_loop_internal::NewLoopForTest(kUnknownSetupFlag);
  ASSERT_TRUE(plain.ok()) << plain.status();
  setup = io_uring_loop_internal::GetLoopSetup(**plain);
  ASSERT_TRUE(setup.has_value());
  EXPECT_FALSE(setup->single_issuer);
  EXPECT_NE(setup->fallback.find("io_uring_setup"), std::string::npos) << setup->fallback;
  EXPECT_NE(setup->fallback.find(std::strerror(EINVAL)), std::string::npos) << setup->fallback;
}

TEST_P(IoUringLoopTest, RunOnceWithATimeoutAndNothingToDoReturnsZero) {
  absl::StatusOr<int> ran = loop_->RunOnce(absl::Milliseconds(5));
  ASSERT_TRUE(ran.ok()) << ran.status();
  EXPECT_EQ(*ran, 0);
  ran = loop_->RunOnce(absl::ZeroDuration());
  ASSERT_TRUE(ran.ok()) << ran.status();
  EXPECT_EQ(*ran, 0);
}

TEST_P(IoUringLoopTest, AWatchOfAClosedFdIsRefused) {
  auto [a, b] = SocketPair();
  (void)b;
  const int closed = dup(a);
  ASSERT_GE(closed, 0);
  close(closed);
  EXPECT_EQ(loop_->Watch({closed, POLLIN}, [] {}).status().code(),
            absl::StatusCode::kInvalidArgument);
}

// Socket I/O: as completions on the ring, or on readiness when asked (the
// path a kernel without the opcodes takes). Parameter: readiness.
class IoUringSocketIoTest : public IoUringLoopTest {
 protected:
  void SetUp() override {
    absl::StatusOr<std::unique_ptr<EventLoop>> loop =
        io_uring_loop_internal::NewLoopForTest(0, /*readiness_io=*/GetParam());
    if (absl::IsUnavailable(loop.status())) {
      GTEST_SKIP() << "io_uring unavailable here: " << loop.status();
    }
    ASSERT_TRUE(loop.ok()) << loop.status();
    loop_ = *std::move(loop);
    const io_uring_loop_internal::LoopSetup setup = *io_uring_loop_internal::GetLoopSetup(*loop_);
    if (GetParam()) {
      EXPECT_FALSE(setup.completion_io);
      EXPECT_NE(setup.io_fallback.find("readiness"), std::string::npos) << setup.io_fallback;
    } else if (!setup.completion_io) {
      GTEST_SKIP() << "socket I/O as completions unavailable here: " << setup.io_fallback;
    }
    EXPECT_EQ(setup.completion_io, setup.io_fallback.empty());
  }
  void TearDown() override {
    // The fds outlive their operations.
    loop_.reset();
    IoUringLoopTest::TearDown();
  }
};

TEST_P(IoUringSocketIoTest, ReceiveAndSendUseThePathTheSetupNames) {
  auto [a, b] = SocketPair();
  std::string received;
  ASSERT_TRUE(loop_->ReceiveEach(b, [&](absl::StatusOr<absl::Span<const char>> data) {
    ASSERT_TRUE(data.ok()) << data.status();
    received.append(data->data(), data->size());
  }).ok());
  bool sent = false;
  ASSERT_TRUE(loop_->SendAll(a, "hello", [&](absl::Status status) {
    EXPECT_TRUE(status.ok()) << status;
    sent = true;
  }).ok());
  ASSERT_TRUE(PumpUntil([&] { return sent && received == "hello"; }));
  // Completions need no readiness poll; the readiness path watches.
  if (GetParam()) {
    EXPECT_GT(Stats().polls_armed, 0u);
  } else {
    EXPECT_EQ(Stats().polls_armed, 0u);
  }
}

// More receives complete at once than the loop has provided buffers: the
// kernel runs out (ENOBUFS) and the loop re-arms them once the buffers come
// back, losing nothing.
TEST_P(IoUringSocketIoTest, MoreReadyReceivesThanBuffersAllArrive) {
  constexpr int kPairs = 300;
  std::vector<std::pair<int, int>> pairs;
  std::vector<std::string> received(kPairs);
  int ended = 0;
  for (int i = 0; i < kPairs; ++i) {
    pairs.push_back(SocketPair());
    const std::string message = absl::StrCat("pair ", i);
    ASSERT_EQ(write(pairs[i].second, message.data(), message.size()),
              static_cast<ssize_t>(message.size()));
    ASSERT_EQ(shutdown(pairs[i].second, SHUT_WR), 0);
  }
  for (int i = 0; i < kPairs; ++i) {
    ASSERT_TRUE(loop_->ReceiveEach(pairs[i].first, [&, i](absl::StatusOr<absl::Span<const char>> data) {
      ASSERT_TRUE(data.ok()) << data.status();
      if (data->empty()) {
        ++ended;
      } else {
        received[i].append(data->data(), data->size());
      }
    }).ok());
  }
  ASSERT_TRUE(PumpUntil([&] { return ended == kPairs; }));
  for (int i = 0; i < kPairs; ++i) EXPECT_EQ(received[i], absl::StrCat("pair ", i));
  if (!GetParam()) {
    EXPECT_GT(Stats().io_rearmed, 0u)
        << "the kernel ran out of buffers and the receives were armed again";
  }
}

// A cancelled accept that took a connection before the cancel closes it:
// the client sees its connection end, and no fd leaks into the process.
TEST_P(IoUringSocketIoTest, ConnectionsAcceptedButNotDeliveredAreClosed) {
  const int listener = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  ASSERT_GE(listener, 0);
  fds_.push_back(listener);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(bind(listener, reinterpret_cast<sockaddr*>(&address), sizeof address), 0);
  ASSERT_EQ(listen(listener, 16), 0);
  socklen_t length = sizeof address;
  ASSERT_EQ(getsockname(listener, reinterpret_cast<sockaddr*>(&address), &length), 0);
  int delivered = 0;
  IoId id = 0;
  absl::StatusOr<IoId> accept = loop_->AcceptEach(listener, [&](absl::StatusOr<int> fd) {
    ASSERT_TRUE(fd.ok()) << fd.status();
    ++delivered;
    close(*fd);
    // The first cancels: the second connection, if the loop took it
    // already, is closed by the loop.
    EXPECT_TRUE(loop_->CancelIo(id).ok());
  });
  ASSERT_TRUE(accept.ok()) << accept.status();
  id = *accept;
  ASSERT_TRUE(loop_->RunOnce(absl::ZeroDuration()).ok());
  int clients[2];
  for (int& client : clients) {
    client = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ASSERT_GE(client, 0);
    fds_.push_back(client);
    ASSERT_EQ(connect(client, reinterpret_cast<sockaddr*>(&address), sizeof address), 0);
  }
  ASSERT_TRUE(PumpUntil([&] { return delivered == 1; }));
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(loop_->RunOnce(absl::ZeroDuration()).ok());
  EXPECT_EQ(delivered, 1);
  // The second client's connection is either waiting in the backlog or was
  // closed by the loop; a new accept takes what waits.
  int second = -1;
  ASSERT_TRUE(loop_->AcceptEach(listener, [&](absl::StatusOr<int> fd) {
    ASSERT_TRUE(fd.ok()) << fd.status();
    second = *fd;
  }).ok());
  bool peer_closed = false;
  ASSERT_TRUE(loop_->ReceiveEach(clients[1], [&](absl::StatusOr<absl::Span<const char>> data) {
    if (!data.ok() || data->empty()) peer_closed = true;
  }).ok());
  ASSERT_TRUE(PumpUntil([&] { return second >= 0 || peer_closed; }));
  if (second >= 0) close(second);
}

INSTANTIATE_TEST_SUITE_P(Paths, IoUringSocketIoTest, ::testing::Bool(),
                         [](const ::testing::TestParamInfo<bool>& info) {
                           return info.param ? "Readiness" : "Completions";
                         });

TEST(IoUringLoopProbeTest, AKernelThatRefusesIoUringMakesTheLoopUnavailable) {
  io_uring_platform::ExpectUnavailableWhenIoUringIsRefused([] { return NewIoUringLoop().status(); });
}

}  // namespace
}  // namespace taskrt
