// Backend-specific tests of the io_uring channel: batching, the multishot
// receive's re-arm, readiness kept across send-side reaping, closing with a
// send in flight, many pairs, and the probe's refusals. The channel contract
// itself is tested by tests/conformance/.

#include "channels/io_uring/io_uring_channel.h"

#include <poll.h>
#include <sys/epoll.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "channels/io_uring/io_uring_channel_internal.h"
#include "core/channel.h"
#include "core/errors.h"
#include "gtest/gtest.h"
#include "platform/io_uring/refuse_for_test.h"

namespace taskrt {
namespace {

using io_uring_channel_internal::EndStats;
using io_uring_channel_internal::GetEndStats;

absl::Span<const char> Bytes(const std::string& s) { return absl::MakeConstSpan(s); }

std::string Pattern(size_t size, int seed) {
  std::string data(size, '\0');
  for (size_t i = 0; i < size; ++i) data[i] = static_cast<char>(i * 7 + static_cast<size_t>(seed));
  return data;
}

// Receives one message of up to `limit` bytes (a small default: a large
// buffer per message is slow under the sanitizers).
absl::StatusOr<std::string> ReceiveString(ChannelEnd& end, size_t limit = 8192) {
  std::string buffer(limit, '\0');
  absl::StatusOr<size_t> length = Receive(end, absl::MakeSpan(buffer));
  if (!length.ok()) return length.status();
  buffer.resize(std::min(*length, limit));
  return buffer;
}

EndStats Stats(const ChannelEnd& end) {
  std::optional<EndStats> stats = GetEndStats(end);
  EXPECT_TRUE(stats.has_value());
  return stats.value_or(EndStats{});
}

class IoUringChannelTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<std::unique_ptr<ChannelFactory>> factory = NewIoUringChannelFactory();
    if (absl::IsUnavailable(factory.status())) {
      GTEST_SKIP() << "io_uring unavailable here: " << factory.status();
    }
    ASSERT_TRUE(factory.ok()) << factory.status();
    factory_ = *std::move(factory);
  }

  ChannelPair MakePair(size_t max_message_size = size_t{1} << 20) {
    ChannelOptions options;
    options.max_message_size = max_message_size;
    absl::StatusOr<ChannelPair> pair = factory_->CreatePair(options);
    EXPECT_TRUE(pair.ok()) << pair.status();
    return pair.ok() ? *std::move(pair) : ChannelPair{};
  }

  std::unique_ptr<ChannelFactory> factory_;
};

TEST_F(IoUringChannelTest, NameAndLimits) {
  EXPECT_EQ(factory_->name(), "io_uring");
  ChannelOptions too_big;
  too_big.max_message_size = size_t{1} << 33;
  EXPECT_EQ(factory_->CreatePair(too_big).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(IoUringChannelTest, SendsWaitForTheFlushAndLeaveInOneSubmission) {
  ChannelPair pair = MakePair();
  constexpr int kMessages = 100;
  const EndStats before = Stats(*pair.task_end);
  for (int i = 0; i < kMessages; ++i) {
    ASSERT_TRUE(pair.task_end->TrySend(Bytes(absl::StrCat("message ", i))).ok());
  }
  EXPECT_EQ(Stats(*pair.task_end).submit_calls, before.submit_calls) << "TrySend submitted";
  char byte;
  EXPECT_TRUE(IsWouldBlock(pair.owner_end->TryReceive(absl::MakeSpan(&byte, 1)).status()))
      << "nothing may arrive before the flush";

  absl::Status flushed = pair.task_end->TryFlush();
  ASSERT_TRUE(flushed.ok() || IsWouldBlock(flushed)) << flushed;
  const EndStats after = Stats(*pair.task_end);
  EXPECT_EQ(after.send_submissions - before.send_submissions, 1u);
  EXPECT_EQ(after.submit_calls - before.submit_calls, 1u) << "one io_uring_enter for the batch";
  while (IsWouldBlock(flushed)) {  // only if the socket was full, which it is not here
    flushed = pair.task_end->TryFlush();
  }
  ASSERT_TRUE(flushed.ok()) << flushed;

  for (int i = 0; i < kMessages; ++i) {
    absl::StatusOr<std::string> got = ReceiveString(*pair.owner_end);
    ASSERT_TRUE(got.ok()) << got.status();
    ASSERT_EQ(*got, absl::StrCat("message ", i));
  }
  EXPECT_TRUE(IsWouldBlock(pair.owner_end->TryReceive(absl::MakeSpan(&byte, 1)).status()));
}

TEST_F(IoUringChannelTest, AFullBatchLeavesWithoutAFlush) {
  ChannelPair pair = MakePair();
  constexpr int kMessages = 20;  // 20 x 4 KiB: the batch fills at 64 KiB
  for (int i = 0; i < kMessages; ++i) {
    absl::Status sent = pair.task_end->TrySend(Bytes(Pattern(4096, i)));
    ASSERT_TRUE(sent.ok()) << "message " << i << ": " << sent;
  }
  EXPECT_GE(Stats(*pair.task_end).send_submissions, 1u);
  // The first full batch is readable with no flush from the sender.
  for (int i = 0; i < 15; ++i) {
    absl::StatusOr<std::string> got = ReceiveString(*pair.owner_end);
    ASSERT_TRUE(got.ok()) << got.status();
    ASSERT_EQ(*got, Pattern(4096, i)) << "message " << i;
  }
  ASSERT_TRUE(Send(*pair.task_end, {}).ok());  // flushes the rest
  for (int i = 15; i < kMessages; ++i) {
    absl::StatusOr<std::string> got = ReceiveString(*pair.owner_end);
    ASSERT_TRUE(got.ok()) << got.status();
    ASSERT_EQ(*got, Pattern(4096, i)) << "message " << i;
  }
  absl::StatusOr<std::string> empty = ReceiveString(*pair.owner_end);
  ASSERT_TRUE(empty.ok()) << empty.status();
  EXPECT_EQ(*empty, "");
}

TEST_F(IoUringChannelTest, MultishotReceiveIsReArmedAfterItsBuffersRunOut) {
  ChannelPair pair = MakePair();
  // 24 x 4000 bytes: more than the 16 x 4 KiB provided buffers, less than
  // the socket buffer. Nobody reads until all is sent, so the receive uses
  // up every buffer and ends with -ENOBUFS; the rest waits in the socket.
  constexpr int kMessages = 24;
  for (int i = 0; i < kMessages; ++i) {
    ASSERT_TRUE(Send(*pair.task_end, Bytes(Pattern(4000, i))).ok());
  }
  for (int i = 0; i < kMessages; ++i) {
    absl::StatusOr<std::string> got = ReceiveString(*pair.owner_end);
    ASSERT_TRUE(got.ok()) << got.status();
    ASSERT_EQ(*got, Pattern(4000, i)) << "message " << i;
  }
  const EndStats stats = Stats(*pair.owner_end);
  EXPECT_GE(stats.recv_buffer_exhaustions, 1u);
  EXPECT_GE(stats.recv_arms, 2u) << "armed at creation, re-armed after running out";
  // Still armed and working.
  ASSERT_TRUE(Send(*pair.task_end, Bytes(std::string("after"))).ok());
  absl::StatusOr<std::string> got = ReceiveString(*pair.owner_end);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(*got, "after");
}

TEST_F(IoUringChannelTest, AReaderFarBehindParksTheReceiveAndTheSenderFeelsIt) {
  ChannelPair pair = MakePair();
  constexpr int kLimit = 20000;
  constexpr size_t kSize = 1000;
  int sent = 0;
  int received = 0;
  std::string buffer(kSize, '\0');
  auto receive_one = [&]() -> absl::Status {
    absl::StatusOr<size_t> n = pair.owner_end->TryReceive(absl::MakeSpan(buffer));
    if (!n.ok()) return n.status();
    if (*n != kSize || buffer != Pattern(kSize, received)) {
      return absl::DataLossError(absl::StrCat("message ", received, " is wrong"));
    }
    ++received;
    return absl::OkStatus();
  };
  // The reader takes one message for every four sent: it falls behind until
  // its end parks the receive, the socket fills and the sender is held up.
  bool held_up = false;
  while (!held_up && sent < kLimit) {
    absl::Status status = pair.task_end->TrySend(Bytes(Pattern(kSize, sent)));
    if (IsWouldBlock(status)) {
      held_up = true;
      break;
    }
    ASSERT_TRUE(status.ok()) << status;
    ++sent;
    status = pair.task_end->TryFlush();
    if (IsWouldBlock(status)) {
      held_up = true;
    } else {
      ASSERT_TRUE(status.ok()) << status;
    }
    if (sent % 4 == 0) {
      absl::Status got = receive_one();
      ASSERT_TRUE(got.ok()) << got;
    }
  }
  EXPECT_TRUE(held_up) << "the sender never felt back-pressure";
  EXPECT_GE(Stats(*pair.owner_end).recv_parks, 1u);
  // Everything arrives, in order, once the reader catches up.
  for (int spins = 0; received < sent && spins < 10000000; ++spins) {
    absl::Status got = receive_one();
    if (got.ok()) continue;
    ASSERT_TRUE(IsWouldBlock(got)) << got;
    absl::Status flushed = pair.task_end->TryFlush();
    ASSERT_TRUE(flushed.ok() || IsWouldBlock(flushed)) << flushed;
  }
  EXPECT_EQ(received, sent);
  char byte;
  EXPECT_TRUE(IsWouldBlock(pair.owner_end->TryReceive(absl::MakeSpan(&byte, 1)).status()));
}

// The conformance suite's blocked-sender test, with the receiving end's
// counters in view: the channel is filled while nobody reads, a thread
// blocks sending one more, and one receive must free it.
TEST_F(IoUringChannelTest, OneReceiveFreesASenderBlockedOnAFullSocket) {
  ChannelPair pair = MakePair();
  const std::string message = "12345678";
  int filled = 0;
  while (true) {
    absl::Status sent = pair.task_end->TrySend(Bytes(message));
    if (IsWouldBlock(sent)) break;
    ASSERT_TRUE(sent.ok()) << sent;
    ++filled;
  }
  std::atomic<bool> sent{false};
  std::thread sender([&] {
    EXPECT_TRUE(Send(*pair.task_end, Bytes(message)).ok());
    sent.store(true);
  });
  absl::StatusOr<std::string> got = ReceiveString(*pair.owner_end);
  ASSERT_TRUE(got.ok()) << got.status();
  const EndStats after_one = Stats(*pair.owner_end);
  std::printf("[ receiver ] %d messages filled it; after one receive: %llu arms, %llu of them "
              "to drain the socket, %llu buffer exhaustions\n",
              filled, static_cast<unsigned long long>(after_one.recv_arms),
              static_cast<unsigned long long>(after_one.recv_drain_arms),
              static_cast<unsigned long long>(after_one.recv_buffer_exhaustions));
  EXPECT_GE(after_one.recv_drain_arms, 1u) << "64 KiB of provided buffers cannot drain a full socket";
  sender.join();
  EXPECT_TRUE(sent.load());
  for (int i = 0; i < filled; ++i) ASSERT_EQ(*ReceiveString(*pair.owner_end), message) << i;
}

// A receive that drains a large message out of the socket must leave the
// end listening (the receive or the parked end's poll armed): the peer's
// close that follows has to make the ring readable for an edge-triggered
// watcher, as core/task.cc's owner loop relies on to see an entry finish.
TEST_F(IoUringChannelTest, TheEndOfStreamAfterALargeMessageWakesAWatcher) {
  constexpr size_t kSize = 2 << 20;  // several times the socket buffer and the drain limit
  ChannelPair pair = MakePair(kSize);
  const int epoll_fd = epoll_create1(EPOLL_CLOEXEC);
  ASSERT_GE(epoll_fd, 0);
  epoll_event event{};
  event.events = EPOLLIN | EPOLLET;
  ASSERT_EQ(epoll_ctl(epoll_fd, EPOLL_CTL_ADD, pair.owner_end->receive_readiness().fd, &event), 0);
  const std::string big = Pattern(kSize, 3);
  std::thread sender([&] { EXPECT_TRUE(Send(*pair.task_end, Bytes(big)).ok()); });
  absl::StatusOr<std::string> got = ReceiveString(*pair.owner_end, kSize);
  sender.join();
  ASSERT_TRUE(got.ok()) << got.status();
  ASSERT_EQ(*got, big);
  const EndStats after = Stats(*pair.owner_end);
  EXPECT_TRUE((after.receive_armed && !after.receive_cancelling) ||
              (after.watch_armed && !after.watch_removing))
      << "the end is not listening: receive armed " << after.receive_armed << " (cancelling "
      << after.receive_cancelling << "), poll armed " << after.watch_armed << " (removing "
      << after.watch_removing << ")";
  // Whatever edges the receive raised are old news: take them.
  epoll_event out[4];
  while (epoll_wait(epoll_fd, out, 4, 0) > 0) {
  }
  pair.task_end->Close();
  int ready;
  do {
    ready = epoll_wait(epoll_fd, out, 4, 60 * 1000);  // a hang guard
  } while (ready < 0 && errno == EINTR);
  EXPECT_EQ(ready, 1) << "the peer's close never made the ring readable";
  char byte;
  EXPECT_EQ(pair.owner_end->TryReceive(absl::MakeSpan(&byte, 1)).status().code(),
            absl::StatusCode::kOutOfRange);
  close(epoll_fd);
}

TEST_F(IoUringChannelTest, ReceiveReadinessSurvivesTheSendSideReapingIt) {
  ChannelPair pair = MakePair();
  const int epoll_fd = epoll_create1(EPOLL_CLOEXEC);
  ASSERT_GE(epoll_fd, 0);
  epoll_event event{};
  event.events = EPOLLIN | EPOLLET;
  ASSERT_EQ(epoll_ctl(epoll_fd, EPOLL_CTL_ADD, pair.owner_end->receive_readiness().fd, &event), 0);

  // A message reaches the owner's completion queue; before its loop gets to
  // it, the owner sends, and the send side reaps that completion.
  ASSERT_TRUE(Send(*pair.task_end, Bytes(std::string("to owner"))).ok());
  ASSERT_TRUE(Send(*pair.owner_end, Bytes(std::string("to task"))).ok());
  epoll_event out[4];
  int ready;
  do {
    ready = epoll_wait(epoll_fd, out, 4, 0);
  } while (ready < 0 && errno == EINTR);
  EXPECT_EQ(ready, 1) << "the owner's loop must still see its ring readable";
  EXPECT_TRUE(pair.owner_end->ReceiveReady());
  absl::StatusOr<std::string> got = ReceiveString(*pair.owner_end);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(*got, "to owner");
  got = ReceiveString(*pair.task_end);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(*got, "to task");
  close(epoll_fd);
}

TEST_F(IoUringChannelTest, AnEndedStreamKeepsTheRingReadableAsASocketWould) {
  ChannelPair pair = MakePair();
  const int epoll_fd = epoll_create1(EPOLL_CLOEXEC);
  ASSERT_GE(epoll_fd, 0);
  epoll_event event{};
  event.events = EPOLLIN | EPOLLET;
  const int ring_fd = pair.owner_end->receive_readiness().fd;
  ASSERT_EQ(epoll_ctl(epoll_fd, EPOLL_CTL_ADD, ring_fd, &event), 0);

  // Direct receives (not the watcher) take the last message and the end of
  // the stream; an edge-triggered watcher must still hear of the end.
  ASSERT_TRUE(Send(*pair.task_end, Bytes(std::string("last"))).ok());
  pair.task_end->Close();
  absl::StatusOr<std::string> got = ReceiveString(*pair.owner_end);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(*got, "last");
  EXPECT_EQ(ReceiveString(*pair.owner_end).status().code(), absl::StatusCode::kOutOfRange);

  epoll_event out[4];
  int ready;
  do {
    ready = epoll_wait(epoll_fd, out, 4, 0);
  } while (ready < 0 && errno == EINTR);
  EXPECT_EQ(ready, 1) << "the watcher never hears that the stream ended";
  char byte;
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(pair.owner_end->TryReceive(absl::MakeSpan(&byte, 1)).status().code(),
              absl::StatusCode::kOutOfRange);
    pollfd level{ring_fd, POLLIN, 0};
    EXPECT_EQ(poll(&level, 1, 0), 1) << "readable for good, as a socket at end of stream";
  }
  EXPECT_EQ(Send(*pair.owner_end, Bytes(std::string("late"))).code(),
            absl::StatusCode::kFailedPrecondition);
  close(epoll_fd);
}

TEST_F(IoUringChannelTest, CloseWithASendInFlightReturnsAndEndsThePeersStream) {
  constexpr size_t kSize = 4 << 20;
  ChannelPair pair = MakePair(kSize);
  const std::string big = Pattern(kSize, 3);
  ASSERT_TRUE(pair.task_end->TrySend(Bytes(big)).ok());
  absl::Status flushed = pair.task_end->TryFlush();
  EXPECT_TRUE(IsWouldBlock(flushed)) << "4 MiB cannot fit the socket: " << flushed;
  pair.task_end->Close();  // must cancel the send and wait for it, not hang
  std::string buffer(kSize, '\0');
  absl::StatusOr<size_t> got = Receive(*pair.owner_end, absl::MakeSpan(buffer));  // one big buffer
  EXPECT_EQ(got.status().code(), absl::StatusCode::kDataLoss)
      << "a message cut short by the close: " << got.status();
  EXPECT_EQ(pair.task_end->TryFlush().code(), absl::StatusCode::kFailedPrecondition);
}

TEST_F(IoUringChannelTest, EndsRecoverWhenTheThreadThatArmedThemHasExited) {
  // The multishot receives are armed by the creating thread; once it has
  // exited the kernel cancels them when they fire, and the ends re-arm.
  ChannelPair pair;
  std::thread creator([&] { pair = MakePair(); });
  creator.join();
  ASSERT_NE(pair.task_end, nullptr);
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(Send(*pair.task_end, Bytes(absl::StrCat("up ", i))).ok());
    absl::StatusOr<std::string> got = ReceiveString(*pair.owner_end);
    ASSERT_TRUE(got.ok()) << got.status();
    EXPECT_EQ(*got, absl::StrCat("up ", i));
    ASSERT_TRUE(Send(*pair.owner_end, Bytes(absl::StrCat("down ", i))).ok());
    got = ReceiveString(*pair.task_end);
    ASSERT_TRUE(got.ok()) << got.status();
    EXPECT_EQ(*got, absl::StrCat("down ", i));
  }
}

TEST_F(IoUringChannelTest, AThousandPairs) {
  // The fan-in benchmark's shape: 1,000 pairs alive at once.
  constexpr int kPairs = 1000;
  std::vector<ChannelPair> pairs;
  pairs.reserve(kPairs);
  for (int i = 0; i < kPairs; ++i) {
    absl::StatusOr<ChannelPair> pair = factory_->CreatePair(ChannelOptions{});
    ASSERT_TRUE(pair.ok()) << "pair " << i << ": " << pair.status();
    pairs.push_back(*std::move(pair));
  }
  for (int i = 0; i < kPairs; ++i) {
    ASSERT_TRUE(Send(*pairs[i].task_end, Bytes(absl::StrCat(i))).ok());
  }
  for (int i = 0; i < kPairs; ++i) {
    absl::StatusOr<std::string> got = ReceiveString(*pairs[i].owner_end);
    ASSERT_TRUE(got.ok()) << got.status();
    ASSERT_EQ(*got, absl::StrCat(i));
  }
}

TEST_F(IoUringChannelTest, PingPongAcrossThreads) {
  ChannelPair pair = MakePair();
  constexpr int kRounds = 2000;
  std::thread echo([&] {
    for (int i = 0; i < kRounds; ++i) {
      absl::StatusOr<std::string> got = ReceiveString(*pair.task_end);
      ASSERT_TRUE(got.ok()) << got.status();
      ASSERT_TRUE(Send(*pair.task_end, Bytes(*got)).ok());
    }
  });
  for (int i = 0; i < kRounds; ++i) {
    const std::string message = absl::StrCat("ping ", i);
    ASSERT_TRUE(Send(*pair.owner_end, Bytes(message)).ok());
    absl::StatusOr<std::string> got = ReceiveString(*pair.owner_end);
    ASSERT_TRUE(got.ok()) << got.status();
    ASSERT_EQ(*got, message);
  }
  echo.join();
}

TEST(IoUringChannelProbeTest, AKernelThatRefusesIoUringMakesTheFactoryUnavailable) {
  io_uring_platform::ExpectUnavailableWhenIoUringIsRefused(
      [] { return NewIoUringChannelFactory().status(); });
}

}  // namespace
}  // namespace taskrt
