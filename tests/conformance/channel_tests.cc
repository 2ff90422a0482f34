// Conformance group: the Channel contract (core/channel.h). The task side of
// each pair is driven from work on the scheduler under test, the owner side
// from the test's thread.

#include <fcntl.h>

#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/channel.h"
#include "core/errors.h"
#include "gtest/gtest.h"
#include "tests/conformance/conformance.h"

namespace taskrt::conformance {
namespace {

class ChannelConformance : public ConformanceTest {
 protected:
  ChannelPair MakePair(size_t max_message_size = size_t{1} << 20) {
    ChannelOptions options;
    options.max_message_size = max_message_size;
    absl::StatusOr<ChannelPair> pair = channels_->CreatePair(options);
    EXPECT_TRUE(pair.ok()) << pair.status();
    return pair.ok() ? *std::move(pair) : ChannelPair{};
  }

  // Receives one message of any length up to `limit` as a string. The
  // buffer is left uninitialised: zeroing a megabyte per message made
  // ThreadSanitizer builds spend minutes in memset.
  static absl::StatusOr<std::string> ReceiveString(ChannelEnd& end, size_t limit = 1 << 20) {
    std::unique_ptr<char[]> buffer(new char[limit]);
    absl::StatusOr<size_t> length = Receive(end, absl::MakeSpan(buffer.get(), limit));
    if (!length.ok()) return length.status();
    return std::string(buffer.get(), std::min(*length, limit));
  }

  // After refused sends: a message of exactly `maximum` bytes still passes,
  // and it is the only one the owner receives.
  static void ExpectMaximumPassesAlone(ChannelPair& pair, size_t maximum) {
    const std::string largest(maximum, 'y');
    ASSERT_TRUE(Send(*pair.task_end, absl::MakeConstSpan(largest)).ok()) << "exactly the maximum";
    absl::StatusOr<std::string> got = ReceiveString(*pair.owner_end);
    ASSERT_TRUE(got.ok()) << got.status();
    EXPECT_EQ(*got, largest);
    char byte;
    EXPECT_TRUE(IsWouldBlock(pair.owner_end->TryReceive(absl::MakeSpan(&byte, 1)).status()))
        << "nothing of the refused messages arrived";
  }

  static std::string Pattern(size_t size, uint32_t seed) {
    std::string data(size, '\0');
    uint32_t x = seed * 2654435761u + 1;
    for (char& c : data) {
      x = x * 1103515245u + 12345u;
      c = static_cast<char>(x >> 24);
    }
    return data;
  }
};

absl::Span<const char> Bytes(const std::string& s) { return absl::MakeConstSpan(s); }

TEST_P(ChannelConformance, KeepsBoundariesAndOrder) {
  ChannelPair pair = MakePair();
  constexpr int kMessages = 500;
  Notification sent;
  ASSERT_TRUE(scheduler_->Schedule([&] {
    for (int i = 0; i < kMessages; ++i) {
      ASSERT_TRUE(Send(*pair.task_end, Bytes(Pattern(static_cast<size_t>(i * 7 % 300), i))).ok());
    }
    sent.Notify();
  }).ok());
  for (int i = 0; i < kMessages; ++i) {
    absl::StatusOr<std::string> got = ReceiveString(*pair.owner_end);
    ASSERT_TRUE(got.ok()) << got.status();
    ASSERT_EQ(*got, Pattern(static_cast<size_t>(i * 7 % 300), i)) << "message " << i;
  }
  EXPECT_TRUE(sent.WaitForNotification());
}

TEST_P(ChannelConformance, ShortBufferTruncatesAndKeepsTheStreamInStep) {
  ChannelPair pair = MakePair();
  ASSERT_TRUE(Send(*pair.task_end, Bytes(std::string("hello world"))).ok());
  ASSERT_TRUE(Send(*pair.task_end, Bytes(std::string("next"))).ok());
  char small[5];
  absl::StatusOr<size_t> length = Receive(*pair.owner_end, absl::MakeSpan(small));
  ASSERT_TRUE(length.ok()) << length.status();
  EXPECT_EQ(*length, 11u) << "returns the message's original length";
  EXPECT_EQ(std::string(small, 5), "hello");
  absl::StatusOr<std::string> next = ReceiveString(*pair.owner_end);
  ASSERT_TRUE(next.ok()) << next.status();
  EXPECT_EQ(*next, "next") << "the rest of the truncated message was dropped";
}

TEST_P(ChannelConformance, MetricsCountMessagesBytesAndBlockedCallsExactly) {
  ChannelPair pair = MakePair();
  ASSERT_NE(pair.owner_end, nullptr);
  ChannelEnd& owner = *pair.owner_end;
  ChannelEnd& task = *pair.task_end;
  // Nothing yet: a receive on the empty end is one blocked receive.
  char byte;
  ASSERT_TRUE(IsWouldBlock(task.TryReceive(absl::MakeSpan(&byte, 1)).status()));
  EXPECT_EQ(task.metrics().receives_blocked, 1u);
  EXPECT_EQ(task.metrics().messages_received, 0u);
  // Three messages of 0, 5 and 100 bytes; the last read into 10 bytes
  // counts its full length.
  for (const std::string& message : {std::string(), std::string(5, 'a'), std::string(100, 'b')}) {
    ASSERT_TRUE(Send(owner, absl::MakeConstSpan(message)).ok());
  }
  ASSERT_TRUE(ReceiveString(task).ok());
  ASSERT_TRUE(ReceiveString(task).ok());
  char ten[10];
  absl::StatusOr<size_t> truncated = Receive(task, absl::MakeSpan(ten));
  ASSERT_TRUE(truncated.ok()) << truncated.status();
  EXPECT_EQ(*truncated, 100u);
  const ChannelMetrics sent = owner.metrics();
  const ChannelMetrics received = task.metrics();
  EXPECT_EQ(sent.messages_sent, 3u);
  EXPECT_EQ(sent.bytes_sent, 105u);
  EXPECT_EQ(sent.messages_received, 0u);
  EXPECT_EQ(received.messages_received, 3u);
  EXPECT_EQ(received.bytes_received, 105u);
  EXPECT_EQ(received.messages_sent, 0u);
  // Refused sends are not counted.
  EXPECT_FALSE(owner.TrySend(absl::MakeConstSpan(std::string((size_t{1} << 20) + 1, 'c'))).ok());
  EXPECT_EQ(owner.metrics().messages_sent, 3u);
}

TEST_P(ChannelConformance, MetricsCountTheSendThatFoundTheChannelFull) {
  ChannelPair pair = MakePair();
  ASSERT_NE(pair.owner_end, nullptr);
  ChannelEnd& owner = *pair.owner_end;
  const std::string kilobyte(1024, 'k');
  uint64_t accepted = 0;
  absl::Status status;
  // Nobody reads: every backend's buffers fill within a few megabytes.
  while ((status = owner.TrySend(absl::MakeConstSpan(kilobyte))).ok() && accepted < 1 << 16) {
    ++accepted;
  }
  ASSERT_TRUE(IsWouldBlock(status)) << status;
  const ChannelMetrics metrics = owner.metrics();
  EXPECT_EQ(metrics.messages_sent, accepted);
  EXPECT_EQ(metrics.bytes_sent, accepted * 1024);
  EXPECT_EQ(metrics.sends_blocked, 1u);
}

TEST_P(ChannelConformance, ZeroLengthMessageIsAMessage) {
  ChannelPair pair = MakePair();
  ASSERT_TRUE(Send(*pair.task_end, {}).ok());
  ASSERT_TRUE(Send(*pair.task_end, Bytes(std::string("after"))).ok());
  absl::StatusOr<std::string> empty = ReceiveString(*pair.owner_end);
  ASSERT_TRUE(empty.ok()) << empty.status();
  EXPECT_EQ(*empty, "");
  absl::StatusOr<std::string> after = ReceiveString(*pair.owner_end);
  ASSERT_TRUE(after.ok()) << after.status();
  EXPECT_EQ(*after, "after");
}

// A maximum below the size a backend's fast path handles (the memory
// channel copies up to 16 bytes inline) still refuses what exceeds it.
TEST_P(ChannelConformance, TinyMaximumRefusesASmallMessage) {
  ChannelPair pair = MakePair(/*max_message_size=*/4);
  absl::Status refused = Send(*pair.task_end, Bytes(std::string(10, 'x')));
  EXPECT_EQ(refused.code(), absl::StatusCode::kResourceExhausted) << refused;
  EXPECT_EQ(pair.task_end->TrySend(Bytes(std::string(5, 'x'))).code(),
            absl::StatusCode::kResourceExhausted);

  ExpectMaximumPassesAlone(pair, 4);
}

TEST_P(ChannelConformance, OversizedMessageIsRefusedAndNothingIsSent) {
  ChannelPair pair = MakePair(/*max_message_size=*/1024);
  absl::Status refused = Send(*pair.task_end, Bytes(std::string(1025, 'x')));
  EXPECT_EQ(refused.code(), absl::StatusCode::kResourceExhausted) << refused;
  EXPECT_NE(refused.message().find("1025"), absl::string_view::npos) << refused;
  absl::Status refused_owner = Send(*pair.owner_end, Bytes(std::string(4096, 'x')));
  EXPECT_EQ(refused_owner.code(), absl::StatusCode::kResourceExhausted) << refused_owner;

  ExpectMaximumPassesAlone(pair, 1024);
}

TEST_P(ChannelConformance, NonBlockingReceiveOnEmptyChannelWouldBlock) {
  ChannelPair pair = MakePair();
  char byte;
  EXPECT_TRUE(IsWouldBlock(pair.owner_end->TryReceive(absl::MakeSpan(&byte, 1)).status()));
  EXPECT_FALSE(pair.owner_end->ReceiveReady());
  EXPECT_TRUE(pair.owner_end->TryFlush().ok()) << "nothing to flush";
}

// ReceiveReady() says whether a message waits, and takes nothing: an owner
// that reads one message per notification asks it whether to read again.
TEST_P(ChannelConformance, ReceiveReadySeesWaitingMessagesWithoutTakingThem) {
  ChannelPair pair = MakePair();
  ChannelEnd& owner = *pair.owner_end;
  // A backend may see a sent message only once it has arrived (io_uring's
  // completion): wait for readiness between the questions.
  auto wait_until_ready = [&owner] {
    while (!owner.ReceiveReady()) {
      absl::Status waited = owner.WaitUntilReady(ChannelDirection::kReceive);
      if (!waited.ok()) return waited;
    }
    return absl::OkStatus();
  };
  EXPECT_FALSE(owner.ReceiveReady()) << "nothing was sent";
  Notification sent;
  ASSERT_TRUE(scheduler_->Schedule([&] {
    EXPECT_TRUE(Send(*pair.task_end, Bytes(std::string("one"))).ok());
    EXPECT_TRUE(Send(*pair.task_end, Bytes(std::string())).ok());
    EXPECT_TRUE(Send(*pair.task_end, Bytes(Pattern(200000, 3))).ok());  // past any buffer
    pair.task_end->Close();
    sent.Notify();
  }).ok());
  ASSERT_TRUE(wait_until_ready().ok());
  EXPECT_TRUE(owner.ReceiveReady()) << "asking again takes nothing";
  EXPECT_EQ(*ReceiveString(owner), "one");
  ASSERT_TRUE(wait_until_ready().ok());
  EXPECT_EQ(*ReceiveString(owner), "") << "a zero-length message is a message";
  ASSERT_TRUE(wait_until_ready().ok());
  EXPECT_EQ(*ReceiveString(owner), Pattern(200000, 3));
  EXPECT_FALSE(owner.ReceiveReady()) << "all three were read";
  EXPECT_EQ(ReceiveString(owner).status().code(), absl::StatusCode::kOutOfRange);
  EXPECT_FALSE(owner.ReceiveReady()) << "closed and drained: no message";
  ASSERT_TRUE(sent.WaitForNotification());
  owner.Close();
  EXPECT_FALSE(owner.ReceiveReady()) << "after this end's own Close()";
}

// False from ReceiveReady() stands for a receive that would block: the
// watched readiness fires when the next message arrives, even though no
// receive was tried (a reader that took its one message and asked).
TEST_P(ChannelConformance, ReadinessFiresAfterReceiveReadySaidNone) {
  ChannelPair pair = MakePair();
  ChannelEnd& owner = *pair.owner_end;
  int calls = 0;
  absl::StatusOr<WatchId> watch = loop_->Watch(owner.receive_readiness(), [&calls] { ++calls; });
  ASSERT_TRUE(watch.ok()) << watch.status();
  for (int round = 0; round < 3; ++round) {
    ASSERT_TRUE(loop_->RunOnce(absl::ZeroDuration()).ok());  // any edge from before
    EXPECT_FALSE(owner.ReceiveReady());
    const int before = calls;
    const std::string message = absl::StrCat("news ", round);
    ASSERT_TRUE(Send(*pair.task_end, Bytes(message)).ok());
    EXPECT_TRUE(PumpUntil([&] { return calls > before; })) << "round " << round;
    EXPECT_TRUE(owner.ReceiveReady());
    EXPECT_EQ(*ReceiveString(owner), message);
  }
  EXPECT_TRUE(loop_->Unwatch(*watch).ok());
}

// Go's unbuffered and small-buffer patterns: the receiver takes messages
// and waits for the sender's next step somewhere else, never on the channel.
// The channel is filled with equal messages until TrySend would block; a
// sender then blocks on one more. One receive makes room for it, so after
// exactly one receive, and no further call on the receiving end, the sender
// must complete. Each round the sender says it is about to send before the
// receive, so that most rounds find it already blocked; either order must
// work.
TEST_P(ChannelConformance, OneReceiveFreesASenderBlockedOnAFullChannel) {
  ChannelOptions options;
  options.buffer_bytes = 4096;  // where the backend buffers in its own memory
  absl::StatusOr<ChannelPair> made = channels_->CreatePair(options);
  ASSERT_TRUE(made.ok()) << made.status();
  ChannelPair pair = *std::move(made);
  const std::string message = "12345678";
  constexpr int kRounds = 20;
  int filled = 0;
  for (;; ++filled) {
    absl::Status sent = pair.task_end->TrySend(Bytes(message));
    if (IsWouldBlock(sent)) break;
    ASSERT_TRUE(sent.ok()) << sent;
    ASSERT_LT(filled, 1 << 22) << "the channel never filled";
  }
  for (int round = 0; round < kRounds; ++round) {
    Notification sending;
    Notification sent;
    ASSERT_TRUE(scheduler_->Schedule([&] {
      sending.Notify();
      EXPECT_TRUE(Send(*pair.task_end, Bytes(message)).ok());
      sent.Notify();
    }).ok());
    ASSERT_TRUE(sending.WaitForNotification());
    ASSERT_EQ(*ReceiveString(*pair.owner_end), message) << "round " << round;
    const bool got_through = sent.WaitForNotification();
    if (!got_through) {
      // Free the sender, so that the failure is reported instead of a hang.
      while (!sent.HasBeenNotified()) (void)ReceiveString(*pair.owner_end);
    }
    ASSERT_TRUE(got_through) << "round " << round << ": the sender stayed blocked after the one "
                             << "receive that made room (" << filled << " messages filled the channel)";
  }
  for (int i = 0; i < filled; ++i) ASSERT_EQ(*ReceiveString(*pair.owner_end), message) << i;
}

// core/channel.h: the readiness fds stay valid until the end is destroyed,
// Close() or not.
TEST_P(ChannelConformance, ReadinessFdsStayOpenAndUnchangedAfterClose) {
  ChannelPair pair = MakePair();
  for (ChannelEnd* end : {pair.task_end.get(), pair.owner_end.get()}) {
    const int send_fd = end->send_readiness().fd;
    const int receive_fd = end->receive_readiness().fd;
    end->Close();
    EXPECT_EQ(end->send_readiness().fd, send_fd);
    EXPECT_EQ(end->receive_readiness().fd, receive_fd);
    EXPECT_NE(fcntl(send_fd, F_GETFD), -1) << "send readiness fd " << send_fd << " was closed";
    EXPECT_NE(fcntl(receive_fd, F_GETFD), -1) << "receive readiness fd " << receive_fd << " was closed";
  }
}

// An owner that closes its end before it unwatches it, then makes a new
// pair: unwatching the old watch must not take the new pair's watch with
// it (it would, were the old fd number free for the new pair to reuse).
TEST_P(ChannelConformance, UnwatchAfterCloseLeavesANewPairsWatchAlone) {
  ChannelPair old_pair = MakePair();
  absl::StatusOr<WatchId> old_watch = loop_->Watch(old_pair.owner_end->receive_readiness(), [] {});
  ASSERT_TRUE(old_watch.ok()) << old_watch.status();
  old_pair.owner_end->Close();
  ChannelPair new_pair = MakePair();
  int calls = 0;
  absl::StatusOr<WatchId> new_watch =
      loop_->Watch(new_pair.owner_end->receive_readiness(), [&calls] { ++calls; });
  ASSERT_TRUE(new_watch.ok()) << new_watch.status();
  ASSERT_TRUE(loop_->Unwatch(*old_watch).ok());
  ASSERT_TRUE(loop_->RunOnce(absl::ZeroDuration()).ok());  // any edge from before
  EXPECT_FALSE(new_pair.owner_end->ReceiveReady());
  const int before = calls;
  ASSERT_TRUE(Send(*new_pair.task_end, Bytes(std::string("to the new pair"))).ok());
  EXPECT_TRUE(PumpUntil([&] { return calls > before; })) << "the new pair's watch never fired";
  EXPECT_EQ(*ReceiveString(*new_pair.owner_end), "to the new pair");
  EXPECT_TRUE(loop_->Unwatch(*new_watch).ok());
}

TEST_P(ChannelConformance, CloseDeliversWhatWasSentThenReportsEndOfStream) {
  ChannelPair pair = MakePair();
  Notification closed;
  ASSERT_TRUE(scheduler_->Schedule([&] {
    EXPECT_TRUE(Send(*pair.task_end, Bytes(std::string("one"))).ok());
    EXPECT_TRUE(Send(*pair.task_end, Bytes(std::string("two"))).ok());
    pair.task_end->Close();
    closed.Notify();
  }).ok());
  ASSERT_TRUE(closed.WaitForNotification());
  EXPECT_EQ(*ReceiveString(*pair.owner_end), "one");
  EXPECT_EQ(*ReceiveString(*pair.owner_end), "two");
  for (int i = 0; i < 2; ++i) {
    absl::StatusOr<std::string> end = ReceiveString(*pair.owner_end);
    EXPECT_EQ(end.status().code(), absl::StatusCode::kOutOfRange) << end.status();
  }
  absl::Status to_closed = Send(*pair.owner_end, Bytes(std::string("late")));
  EXPECT_EQ(to_closed.code(), absl::StatusCode::kFailedPrecondition) << to_closed;
  // The closed end itself refuses calls with an error, not a crash.
  absl::Status after_close = pair.task_end->TrySend(Bytes(std::string("x")));
  EXPECT_EQ(after_close.code(), absl::StatusCode::kFailedPrecondition) << after_close;
  char byte;
  EXPECT_EQ(pair.task_end->TryReceive(absl::MakeSpan(&byte, 1)).status().code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST_P(ChannelConformance, WorksInBothDirections) {
  ChannelPair pair = MakePair();
  constexpr int kRounds = 200;
  Notification echoed;
  ASSERT_TRUE(scheduler_->Schedule([&] {
    for (int i = 0; i < kRounds; ++i) {
      absl::StatusOr<std::string> got = ReceiveString(*pair.task_end);
      ASSERT_TRUE(got.ok()) << got.status();
      ASSERT_TRUE(Send(*pair.task_end, Bytes(*got + "!")).ok());
    }
    echoed.Notify();
  }).ok());
  for (int i = 0; i < kRounds; ++i) {
    const std::string message = absl::StrCat("ping ", i);
    ASSERT_TRUE(Send(*pair.owner_end, Bytes(message)).ok());
    absl::StatusOr<std::string> reply = ReceiveString(*pair.owner_end);
    ASSERT_TRUE(reply.ok()) << reply.status();
    ASSERT_EQ(*reply, message + "!");
  }
  EXPECT_TRUE(echoed.WaitForNotification());
}

TEST_P(ChannelConformance, MessagesLargerThanTheSocketBufferWork) {
  constexpr size_t kSize = 4 << 20;  // far above any default socket buffer
  ChannelPair pair = MakePair(/*max_message_size=*/kSize);
  const std::string big_up = Pattern(kSize, 1);
  const std::string big_down = Pattern(kSize - 3, 2);
  Notification done;
  ASSERT_TRUE(scheduler_->Schedule([&] {
    EXPECT_TRUE(Send(*pair.task_end, Bytes(big_up)).ok());
    absl::StatusOr<std::string> got = ReceiveString(*pair.task_end, kSize);
    EXPECT_TRUE(got.ok()) << got.status();
    EXPECT_TRUE(got.ok() && *got == big_down) << "task received a corrupted large message";
    done.Notify();
  }).ok());
  absl::StatusOr<std::string> got = ReceiveString(*pair.owner_end, kSize);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_TRUE(*got == big_up) << "owner received a corrupted large message";
  ASSERT_TRUE(Send(*pair.owner_end, Bytes(big_down)).ok());
  EXPECT_TRUE(done.WaitForNotification());
}

TEST_P(ChannelConformance, ManyWritersToOneOwner) {
  constexpr int kWriters = 32;
  constexpr int kMessages = 100;
  std::vector<ChannelPair> pairs;
  for (int w = 0; w < kWriters; ++w) pairs.push_back(MakePair());
  CountDown writers_done(kWriters);
  for (int w = 0; w < kWriters; ++w) {
    ASSERT_TRUE(scheduler_->Schedule([&, w] {
      for (int i = 0; i < kMessages; ++i) {
        EXPECT_TRUE(Send(*pairs[w].task_end, Bytes(absl::StrCat(w, ":", i))).ok());
      }
      pairs[w].task_end->Close();
      writers_done.Decrement();
    }).ok());
  }
  for (int w = 0; w < kWriters; ++w) {
    for (int i = 0; i < kMessages; ++i) {
      absl::StatusOr<std::string> got = ReceiveString(*pairs[w].owner_end);
      ASSERT_TRUE(got.ok()) << got.status();
      ASSERT_EQ(*got, absl::StrCat(w, ":", i));
    }
    EXPECT_EQ(ReceiveString(*pairs[w].owner_end).status().code(), absl::StatusCode::kOutOfRange);
  }
  EXPECT_TRUE(writers_done.Wait()) << "the pairs outlive the work that uses them";
}

TEST_P(ChannelConformance, DestroyingOneEndEndsThePeersStream) {
  ChannelPair pair = MakePair();
  ASSERT_TRUE(Send(*pair.task_end, Bytes(std::string("last words"))).ok());
  pair.task_end.reset();
  EXPECT_EQ(*ReceiveString(*pair.owner_end), "last words");
  EXPECT_EQ(ReceiveString(*pair.owner_end).status().code(), absl::StatusCode::kOutOfRange);
}

INSTANTIATE_TEST_SUITE_P(Conformance, ChannelConformance, ::testing::ValuesIn(WorkerCounts()),
                         WorkerCountName);

}  // namespace
}  // namespace taskrt::conformance
