// Conformance group: Select over channel ends (core/select.h), from the
// test's thread and from units of the scheduler under test, on the
// combination's channel backend and across every registered one.

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "backends/registry.h"
#include "core/channel.h"
#include "core/errors.h"
#include "core/select.h"
#include "gtest/gtest.h"
#include "tests/conformance/conformance.h"

namespace taskrt::conformance {
namespace {

absl::Span<const char> Bytes(const std::string& s) { return absl::MakeConstSpan(s); }

class SelectConformance : public ConformanceTest {
 protected:
  ChannelPair MakePair(size_t max_message_size = size_t{1} << 20, size_t buffer_bytes = 0) {
    ChannelOptions options;
    options.max_message_size = max_message_size;
    options.buffer_bytes = buffer_bytes;
    absl::StatusOr<ChannelPair> pair = channels_->CreatePair(options);
    EXPECT_TRUE(pair.ok()) << pair.status();
    return pair.ok() ? *std::move(pair) : ChannelPair{};
  }

  // Receives one message (up to 64 KiB) as a string.
  static absl::StatusOr<std::string> ReceiveString(ChannelEnd& end) {
    std::string buffer(1 << 16, '\0');
    absl::StatusOr<size_t> length = Receive(end, absl::MakeSpan(buffer));
    if (!length.ok()) return length.status();
    buffer.resize(std::min(*length, buffer.size()));
    return buffer;
  }

  // Sends equal messages to `end` until it would block; returns how many
  // it accepted (the last may still be held back unflushed: the end's next
  // send pushes it out first).
  static int Fill(ChannelEnd& end, const std::string& message) {
    int taken = 0;
    while (taken < (1 << 22)) {
      absl::Status sent = end.TrySend(Bytes(message));
      if (IsWouldBlock(sent)) break;
      EXPECT_TRUE(sent.ok()) << sent;
      if (!sent.ok()) break;
      ++taken;
    }
    return taken;
  }
};

TEST_P(SelectConformance, NoCasesOrACaseWithoutAnEndIsInvalid) {
  EXPECT_EQ(Select({}).status().code(), absl::StatusCode::kInvalidArgument);
  char buffer[8];
  std::array<SelectCase, 1> null_end = {SelectCase::Receive(nullptr, absl::MakeSpan(buffer))};
  absl::StatusOr<Selected> selected = Select(null_end);
  EXPECT_EQ(selected.status().code(), absl::StatusCode::kInvalidArgument) << selected.status();
}

TEST_P(SelectConformance, PerformsTheOneReadyReceiveAndTouchesNoOther) {
  ChannelPair a = MakePair();
  ChannelPair b = MakePair();
  ASSERT_TRUE(Send(*b.task_end, Bytes(std::string("to b"))).ok());
  char buffer_a[64];
  char buffer_b[64];
  std::array<SelectCase, 2> cases = {SelectCase::Receive(a.owner_end.get(), absl::MakeSpan(buffer_a)),
                                     SelectCase::Receive(b.owner_end.get(), absl::MakeSpan(buffer_b))};
  absl::StatusOr<Selected> selected = Select(cases);
  ASSERT_TRUE(selected.ok()) << selected.status();
  EXPECT_EQ(selected->index, 1u);
  ASSERT_TRUE(selected->status.ok()) << selected->status;
  EXPECT_EQ(std::string(buffer_b, selected->length), "to b");

  ASSERT_TRUE(Send(*a.task_end, Bytes(std::string("then a"))).ok());
  EXPECT_EQ(*ReceiveString(*a.owner_end), "then a") << "a's channel lost nothing";
}

TEST_P(SelectConformance, WaitsOnTheOwnersThreadUntilAUnitSends) {
  ChannelPair a = MakePair();
  ChannelPair b = MakePair();
  for (int round = 0; round < 20; ++round) {
    const bool to_a = round % 3 == 0;
    const std::string message = absl::StrCat("round ", round);
    Notification sent;  // the unit is done with its end before the pairs go
    ASSERT_TRUE(scheduler_->Schedule([&, to_a, message] {
      EXPECT_TRUE(Send(to_a ? *a.task_end : *b.task_end, Bytes(message)).ok());
      sent.Notify();
    }).ok());
    char buffer_a[64];
    char buffer_b[64];
    std::array<SelectCase, 2> cases = {
        SelectCase::Receive(a.owner_end.get(), absl::MakeSpan(buffer_a)),
        SelectCase::Receive(b.owner_end.get(), absl::MakeSpan(buffer_b))};
    absl::StatusOr<Selected> selected = Select(cases);
    ASSERT_TRUE(selected.ok()) << selected.status();
    ASSERT_TRUE(selected->status.ok()) << selected->status;
    EXPECT_EQ(selected->index, to_a ? 0u : 1u) << "round " << round;
    EXPECT_EQ(std::string(to_a ? buffer_a : buffer_b, selected->length), message);
    ASSERT_TRUE(sent.WaitForNotification());
  }
}

// A unit of the scheduler selects (a stackful task suspends, a worker
// sleeps), answering on the end it received from: the select_ping_pong
// benchmark's shape, checked for content.
TEST_P(SelectConformance, AUnitSelectsAndAnswersOnTheChosenEnd) {
  ChannelPair a = MakePair();
  ChannelPair b = MakePair();
  constexpr int kRounds = 200;
  Notification done;
  ASSERT_TRUE(scheduler_->Schedule([&] {
    char buffer_a[64];
    char buffer_b[64];
    std::array<SelectCase, 2> cases = {
        SelectCase::Receive(a.task_end.get(), absl::MakeSpan(buffer_a)),
        SelectCase::Receive(b.task_end.get(), absl::MakeSpan(buffer_b))};
    for (int i = 0; i < kRounds; ++i) {
      absl::StatusOr<Selected> selected = Select(cases);
      if (!selected.ok() || !selected->status.ok()) {
        ADD_FAILURE() << "round " << i << ": " << selected.status()
                      << (selected.ok() ? selected->status.ToString() : "");
        break;
      }
      ChannelEnd& end = selected->index == 0 ? *a.task_end : *b.task_end;
      const char* buffer = selected->index == 0 ? buffer_a : buffer_b;
      const std::string answer = absl::StrCat(std::string(buffer, selected->length), " back");
      EXPECT_TRUE(Send(end, Bytes(answer)).ok());
    }
    done.Notify();
  }).ok());
  for (int i = 0; i < kRounds; ++i) {
    ChannelEnd& end = i % 2 == 0 ? *a.owner_end : *b.owner_end;
    const std::string message = absl::StrCat("ping ", i);
    ASSERT_TRUE(Send(end, Bytes(message)).ok());
    absl::StatusOr<std::string> answer = ReceiveString(end);
    ASSERT_TRUE(answer.ok()) << answer.status();
    ASSERT_EQ(*answer, message + " back") << "answered on the end that asked";
  }
  EXPECT_TRUE(done.WaitForNotification());
}

TEST_P(SelectConformance, ASendCaseSendsWholeMessages) {
  ChannelPair a = MakePair();
  const std::string message(3000, 'm');
  std::array<SelectCase, 1> cases = {SelectCase::Send(a.owner_end.get(), Bytes(message))};
  absl::StatusOr<Selected> selected = Select(cases);
  ASSERT_TRUE(selected.ok()) << selected.status();
  EXPECT_EQ(selected->index, 0u);
  EXPECT_TRUE(selected->status.ok()) << selected->status;
  EXPECT_EQ(*ReceiveString(*a.task_end), message);
}

// Receive-ready and send-ready cases in one select: the send case is on a
// full channel, so the receive is the one that proceeds; once the peer
// reads, the send case proceeds and its message arrives after the others.
TEST_P(SelectConformance, MixesSendAndReceiveCases) {
  ChannelPair full = MakePair(size_t{1} << 20, /*buffer_bytes=*/4096);
  ChannelPair inbox = MakePair();
  const std::string filler(8, 'f');
  const int taken = Fill(*full.owner_end, filler);
  ASSERT_GT(taken, 0);
  ASSERT_TRUE(Send(*inbox.task_end, Bytes(std::string("mail"))).ok());

  const std::string extra = "extra";
  char buffer[64];
  std::array<SelectCase, 2> cases = {SelectCase::Send(full.owner_end.get(), Bytes(extra)),
                                     SelectCase::Receive(inbox.owner_end.get(), absl::MakeSpan(buffer))};
  absl::StatusOr<Selected> first = Select(cases);
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ(first->index, 1u) << "the full channel cannot take a message";
  EXPECT_EQ(std::string(buffer, first->length), "mail");

  // The task side reads everything, in order; meanwhile the owner's select
  // (send on the full channel, receive on the now empty inbox) can only
  // proceed by sending.
  Notification read_all;
  ASSERT_TRUE(scheduler_->Schedule([&] {
    for (int i = 0; i < taken; ++i) {
      absl::StatusOr<std::string> got = ReceiveString(*full.task_end);
      if (!got.ok() || *got != filler) {
        ADD_FAILURE() << "filler " << i << ": " << got.status();
        break;
      }
    }
    absl::StatusOr<std::string> last = ReceiveString(*full.task_end);
    EXPECT_TRUE(last.ok()) << last.status();
    if (last.ok()) {
      EXPECT_EQ(*last, extra) << "the select's message came last, whole";
    }
    read_all.Notify();
  }).ok());
  absl::StatusOr<Selected> second = Select(cases);
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_EQ(second->index, 0u);
  EXPECT_TRUE(second->status.ok()) << second->status;
  EXPECT_TRUE(read_all.WaitForNotification());
}

// Go picks among ready cases at random: over many rounds with every case
// ready, each is chosen often (the bound is far below the expected third;
// a fair coin misses it with a probability under 1e-30).
TEST_P(SelectConformance, NoReadyCaseStarves) {
  constexpr int kCases = 3;
  constexpr int kRounds = 1500;
  std::vector<ChannelPair> pairs;
  for (int i = 0; i < kCases; ++i) pairs.push_back(MakePair());
  std::array<int, kCases> chosen{};
  std::array<int, kCases> queued{};
  char buffer[16];
  std::vector<SelectCase> cases;
  for (ChannelPair& pair : pairs) {
    cases.push_back(SelectCase::Receive(pair.owner_end.get(), absl::MakeSpan(buffer)));
  }
  for (int round = 0; round < kRounds; ++round) {
    // Keep one message waiting on every channel; wait until each end sees
    // it, so all cases are ready when the select starts.
    for (int i = 0; i < kCases; ++i) {
      if (queued[i] == 0) {
        ASSERT_TRUE(Send(*pairs[i].task_end, Bytes(std::string("x"))).ok());
        queued[i] = 1;
      }
      while (!pairs[i].owner_end->ReceiveReady()) {
        ASSERT_TRUE(pairs[i].owner_end->WaitUntilReady(ChannelDirection::kReceive).ok());
      }
    }
    absl::StatusOr<Selected> selected = Select(cases);
    ASSERT_TRUE(selected.ok()) << selected.status();
    ASSERT_TRUE(selected->status.ok()) << selected->status;
    ++chosen[selected->index];
    queued[selected->index] = 0;
  }
  for (int i = 0; i < kCases; ++i) {
    EXPECT_GT(chosen[i], kRounds / kCases / 2) << "case " << i << " chosen " << chosen[i] << " of "
                                               << kRounds;
  }
}

TEST_P(SelectConformance, AClosedEndIsReportedNotWaitedOn) {
  ChannelPair live = MakePair();
  ChannelPair closed = MakePair();
  ASSERT_TRUE(Send(*closed.task_end, Bytes(std::string("last words"))).ok());
  closed.task_end->Close();
  char buffer_live[64];
  char buffer_closed[64];
  std::array<SelectCase, 2> cases = {
      SelectCase::Receive(live.owner_end.get(), absl::MakeSpan(buffer_live)),
      SelectCase::Receive(closed.owner_end.get(), absl::MakeSpan(buffer_closed))};
  absl::StatusOr<Selected> first = Select(cases);
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ(first->index, 1u);
  ASSERT_TRUE(first->status.ok()) << "the message sent before the close: " << first->status;
  EXPECT_EQ(std::string(buffer_closed, first->length), "last words");
  absl::StatusOr<Selected> second = Select(cases);
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_EQ(second->index, 1u);
  EXPECT_EQ(second->status.code(), absl::StatusCode::kOutOfRange) << second->status;

  std::array<SelectCase, 2> send_cases = {
      SelectCase::Receive(live.owner_end.get(), absl::MakeSpan(buffer_live)),
      SelectCase::Send(closed.owner_end.get(), Bytes(std::string("anyone?")))};
  absl::StatusOr<Selected> refused = Select(send_cases);
  ASSERT_TRUE(refused.ok()) << refused.status();
  EXPECT_EQ(refused->index, 1u);
  EXPECT_EQ(refused->status.code(), absl::StatusCode::kFailedPrecondition) << refused->status;
}

TEST_P(SelectConformance, AnOversizedSendIsSelectedWithItsError) {
  ChannelPair pair = MakePair(/*max_message_size=*/16);
  const std::string big(17, 'b');
  std::array<SelectCase, 1> cases = {SelectCase::Send(pair.owner_end.get(), Bytes(big))};
  absl::StatusOr<Selected> selected = Select(cases);
  ASSERT_TRUE(selected.ok()) << selected.status();
  EXPECT_EQ(selected->status.code(), absl::StatusCode::kResourceExhausted) << selected->status;
  char byte;
  EXPECT_TRUE(IsWouldBlock(pair.task_end->TryReceive(absl::MakeSpan(&byte, 1)).status()))
      << "nothing was sent";
}

// A select that times out takes nothing: what is sent afterwards arrives
// whole, and a past deadline still polls each case once.
TEST_P(SelectConformance, ATimedOutSelectLeavesTheChannelsAsTheyWere) {
  ChannelPair a = MakePair();
  ChannelPair b = MakePair();
  char buffer_a[64];
  char buffer_b[64];
  std::array<SelectCase, 2> cases = {SelectCase::Receive(a.owner_end.get(), absl::MakeSpan(buffer_a)),
                                     SelectCase::Receive(b.owner_end.get(), absl::MakeSpan(buffer_b))};
  const absl::Time deadline = absl::Now() + absl::Milliseconds(5);
  absl::StatusOr<Selected> timed_out = Select(cases, deadline);
  EXPECT_EQ(timed_out.status().code(), absl::StatusCode::kDeadlineExceeded) << timed_out.status();
  EXPECT_GE(absl::Now(), deadline) << "never gives up early";
  EXPECT_EQ(Select(cases, absl::InfinitePast()).status().code(),
            absl::StatusCode::kDeadlineExceeded);

  ASSERT_TRUE(Send(*b.task_end, Bytes(std::string("after the timeout"))).ok());
  absl::StatusOr<std::string> got = ReceiveString(*b.owner_end);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(*got, "after the timeout");

  ASSERT_TRUE(Send(*a.task_end, Bytes(std::string("ready"))).ok());
  while (!a.owner_end->ReceiveReady()) {
    ASSERT_TRUE(a.owner_end->WaitUntilReady(ChannelDirection::kReceive).ok());
  }
  absl::StatusOr<Selected> polled = Select(cases, absl::InfinitePast());
  ASSERT_TRUE(polled.ok()) << "a ready case proceeds whatever the deadline: " << polled.status();
  EXPECT_EQ(polled->index, 0u);
  EXPECT_EQ(std::string(buffer_a, polled->length), "ready");
}

// One select over an end of every registered channel backend; each backend
// in turn gets the message.
TEST_P(SelectConformance, MixesChannelBackends) {
  std::vector<std::unique_ptr<ChannelFactory>> factories;
  std::vector<ChannelPair> pairs;
  for (const ChannelDescriptor* descriptor : Channels()) {
    absl::StatusOr<std::unique_ptr<ChannelFactory>> factory = descriptor->create({});
    if (!factory.ok()) {
      std::printf("[ skipped  ] channel %s: %s\n", std::string(descriptor->name).c_str(),
                  factory.status().ToString().c_str());
      continue;
    }
    absl::StatusOr<ChannelPair> pair = (*factory)->CreatePair({});
    ASSERT_TRUE(pair.ok()) << pair.status();
    factories.push_back(*std::move(factory));
    pairs.push_back(*std::move(pair));
  }
  ASSERT_GE(pairs.size(), 1u);
  std::vector<std::array<char, 64>> buffers(pairs.size());
  std::vector<SelectCase> cases;
  for (size_t i = 0; i < pairs.size(); ++i) {
    cases.push_back(SelectCase::Receive(pairs[i].owner_end.get(), absl::MakeSpan(buffers[i])));
  }
  for (size_t target = 0; target < pairs.size(); ++target) {
    const std::string message = absl::StrCat("to ", factories[target]->name());
    ChannelEnd* sender = pairs[target].task_end.get();
    Notification sent;
    ASSERT_TRUE(scheduler_->Schedule([sender, message, &sent] {
      EXPECT_TRUE(Send(*sender, Bytes(message)).ok());
      sent.Notify();
    }).ok());
    absl::StatusOr<Selected> selected = Select(cases);
    ASSERT_TRUE(selected.ok()) << selected.status();
    EXPECT_EQ(selected->index, target);
    EXPECT_EQ(std::string(buffers[selected->index].data(), selected->length), message);
    ASSERT_TRUE(sent.WaitForNotification());
  }
}

INSTANTIATE_TEST_SUITE_P(Conformance, SelectConformance, ::testing::ValuesIn(WorkerCounts()),
                         WorkerCountName);

}  // namespace
}  // namespace taskrt::conformance
