// Conformance group: Select over channel ends (core/select.h), from the
// test's thread and from units of the scheduler under test, on the
// combination's channel backend and across every registered one.

#include <array>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/cleanup/cleanup.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "backends/registry.h"
#include "core/channel.h"
#include "core/errors.h"
#include "core/event_loop.h"
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

// Scenarios of Go's own select tests (go/test/chan), as a Go programmer
// would write them against this API. Go's unbuffered channels become
// channels with a small buffer, Go's nil and never-ready channels become
// cases on a full or an empty channel nobody serves, and Go's default case
// becomes a deadline that has passed. Where Go makes a goroutine block
// before the other side acts (runtime.Gosched), the other side here waits
// until the blocked end has counted a receive that would block, so the
// waiting paths are taken, not only the fast ones. A test that fails early
// closes the owner's ends, so that its unit ends before the test's
// objects go.

// Polls `read` until it returns more than `floor`; false if the hang guard
// expired first (no timing is asserted).
bool WaitUntilAbove(const std::function<uint64_t()>& read, uint64_t floor) {
  const auto give_up = std::chrono::steady_clock::now() + Notification::kHangGuard;
  while (read() <= floor) {
    if (std::chrono::steady_clock::now() > give_up) return false;
    std::this_thread::yield();
  }
  return true;
}

uint64_t ReceivesBlocked(const ChannelEnd& end) { return end.metrics().receives_blocked; }

// On a test's way out: unless its unit has said it is done, closes `ends`
// (the unit's blocking calls on their peers then end) and waits for the
// unit, so that it never outlives what it uses.
auto EndTheUnitFirst(Notification& done, std::vector<ChannelEnd*> ends) {
  return absl::Cleanup([&done, ends = std::move(ends)] {
    if (done.HasBeenNotified()) return;
    for (ChannelEnd* end : ends) end->Close();
    done.WaitForNotification();
  });
}

// test/chan/doubleselect.go: a sender selects a send of each value over
// four channels while the other side receives, so that a select that
// performed two cases would deliver a value twice. Go's other side is four
// goroutines racing for the values; here it is a second select, over the
// four receiving ends on the owner's thread. Every value arrives once, none
// is lost, and each channel keeps the order its values were sent in.
TEST_P(SelectConformance, GoDoubleSelectDeliversEveryValueOnce) {
  constexpr size_t kChannels = 4;
  constexpr uint32_t kValues = 2000;
  std::vector<ChannelPair> pairs;
  for (size_t i = 0; i < kChannels; ++i) {
    pairs.push_back(MakePair(size_t{1} << 20, /*buffer_bytes=*/256));
  }
  Notification sender_done;
  ASSERT_TRUE(scheduler_->Schedule([&] {
    std::array<char, sizeof(uint32_t)> value{};
    std::vector<SelectCase> cases;
    for (ChannelPair& pair : pairs) {
      cases.push_back(SelectCase::Send(pair.task_end.get(), absl::MakeConstSpan(value)));
    }
    for (uint32_t v = 0; v < kValues; ++v) {
      std::memcpy(value.data(), &v, sizeof v);
      absl::StatusOr<Selected> selected = Select(cases);
      if (!selected.ok() || !selected->status.ok()) {
        ADD_FAILURE() << "sending " << v << ": " << selected.status()
                      << (selected.ok() ? selected->status.ToString() : "");
        break;
      }
    }
    for (ChannelPair& pair : pairs) pair.task_end->Close();  // Go's deferred close()s
    sender_done.Notify();
  }).ok());

  std::vector<bool> seen(kValues, false);
  std::vector<int64_t> last_on(kChannels, -1);
  std::vector<std::array<char, 16>> buffers(kChannels);
  std::vector<size_t> open = {0, 1, 2, 3};
  uint32_t received = 0;
  std::string failure;
  while (!open.empty() && failure.empty()) {
    std::vector<SelectCase> cases;
    for (size_t channel : open) {
      cases.push_back(
          SelectCase::Receive(pairs[channel].owner_end.get(), absl::MakeSpan(buffers[channel])));
    }
    absl::StatusOr<Selected> selected = Select(cases, HangGuardDeadline());
    if (!selected.ok()) {
      failure = selected.status().ToString();
      break;
    }
    const size_t channel = open[selected->index];
    if (selected->status.code() == absl::StatusCode::kOutOfRange) {  // closed and drained
      open.erase(open.begin() + static_cast<std::ptrdiff_t>(selected->index));
      continue;
    }
    uint32_t v = 0;
    if (!selected->status.ok() || selected->length != sizeof v) {
      failure = absl::StrCat("channel ", channel, ": ", selected->status.ToString(), ", ",
                             selected->length, " bytes");
      break;
    }
    std::memcpy(&v, buffers[channel].data(), sizeof v);
    if (v >= kValues || seen[v]) {
      failure = absl::StrCat("value ", v, v >= kValues ? " was never sent" : " arrived twice");
    } else if (static_cast<int64_t>(v) <= last_on[channel]) {
      failure = absl::StrCat("channel ", channel, " gave ", v, " after ", last_on[channel]);
    } else {
      seen[v] = true;
      last_on[channel] = v;
      ++received;
    }
  }
  if (!failure.empty()) {
    for (ChannelPair& pair : pairs) pair.owner_end->Close();  // lets a blocked sender end
  }
  ASSERT_TRUE(sender_done.WaitForNotification());
  ASSERT_EQ(failure, "");
  EXPECT_EQ(received, kValues) << "values lost";
}

// test/chan/select6.go (Go issue 2075): a select that waited on two
// channels and went through one must leave the other as it was. A unit's
// select over c1 and c2 first times out (it has waited on both ends and
// given them back), then waits again and gets c2's message; then the unit
// waits on c1 with a plain blocking receive, which c1's message must wake.
TEST_P(SelectConformance, GoASelectLeavesTheEndItDidNotTakeWaitable) {
  ChannelPair c1 = MakePair();
  ChannelPair c2 = MakePair();
  Notification selecting;
  Notification took_c2;
  Notification done;
  uint64_t c2_blocked_before = 0;  // written before selecting.Notify()
  uint64_t c1_blocked_before = 0;  // written before took_c2.Notify()
  std::string after;
  auto end_the_unit = EndTheUnitFirst(done, {c1.owner_end.get(), c2.owner_end.get()});
  ASSERT_TRUE(scheduler_->Schedule([&] {
    char buffer_1[16];
    char buffer_2[16];
    std::array<SelectCase, 2> cases = {
        SelectCase::Receive(c1.task_end.get(), absl::MakeSpan(buffer_1)),
        SelectCase::Receive(c2.task_end.get(), absl::MakeSpan(buffer_2))};
    absl::StatusOr<Selected> timed_out = Select(cases, absl::Now() + absl::Milliseconds(1));
    EXPECT_EQ(timed_out.status().code(), absl::StatusCode::kDeadlineExceeded) << timed_out.status();
    c2_blocked_before = ReceivesBlocked(*c2.task_end);
    selecting.Notify();
    absl::StatusOr<Selected> selected = Select(cases, HangGuardDeadline());
    EXPECT_TRUE(selected.ok() && selected->status.ok() && selected->index == 1)
        << selected.status() << (selected.ok() ? selected->status.ToString() : "");
    c1_blocked_before = ReceivesBlocked(*c1.task_end);
    took_c2.Notify();
    absl::StatusOr<std::string> got = ReceiveString(*c1.task_end);
    EXPECT_TRUE(got.ok()) << got.status();
    if (got.ok()) after = *got;
    done.Notify();
  }).ok());
  ASSERT_TRUE(selecting.WaitForNotification());
  ASSERT_TRUE(WaitUntilAbove([&] { return ReceivesBlocked(*c2.task_end); }, c2_blocked_before))
      << "the select never tried c2";
  ASSERT_TRUE(Send(*c2.owner_end, Bytes(std::string("c2"))).ok());
  ASSERT_TRUE(took_c2.WaitForNotification());
  ASSERT_TRUE(WaitUntilAbove([&] { return ReceivesBlocked(*c1.task_end); }, c1_blocked_before))
      << "the receive never tried c1";
  ASSERT_TRUE(Send(*c1.owner_end, Bytes(std::string("c1"))).ok());
  ASSERT_TRUE(done.WaitForNotification()) << "the receive on c1 was never woken";
  EXPECT_EQ(after, "c1");
}

// The same for an owner whose loop watches c1, as a Kore owner watches its
// tasks' channels: its select over c1 and c2 times out (having waited on
// both ends and given them back), then goes through c2; c1's next message
// must still fire the loop's watch.
TEST_P(SelectConformance, GoASelectLeavesTheLoopsWatchOfTheOtherEnd) {
  ChannelPair c1 = MakePair();
  ChannelPair c2 = MakePair();
  int ready_calls = 0;
  ChannelEnd& watched = *c1.owner_end;
  absl::StatusOr<WatchId> watch = loop_->Watch(watched.receive_readiness(), [&] {
    if (watched.ReceiveReady()) ++ready_calls;
  });
  ASSERT_TRUE(watch.ok()) << watch.status();
  char buffer_1[16];
  char buffer_2[16];
  std::array<SelectCase, 2> cases = {
      SelectCase::Receive(c1.owner_end.get(), absl::MakeSpan(buffer_1)),
      SelectCase::Receive(c2.owner_end.get(), absl::MakeSpan(buffer_2))};
  absl::StatusOr<Selected> timed_out = Select(cases, absl::Now() + absl::Milliseconds(1));
  EXPECT_EQ(timed_out.status().code(), absl::StatusCode::kDeadlineExceeded) << timed_out.status();

  Notification took_c2;
  Notification sent;
  absl::Cleanup end_the_unit = [&] {
    if (sent.HasBeenNotified()) return;
    took_c2.Notify();
    c1.owner_end->Close();
    c2.owner_end->Close();
    sent.WaitForNotification();
  };
  const uint64_t blocked_before = ReceivesBlocked(*c2.owner_end);
  ChannelEnd& c2_owner = *c2.owner_end;
  ASSERT_TRUE(scheduler_->Schedule([&, blocked_before] {
    // Once the owner's select has tried c2 and is waiting.
    EXPECT_TRUE(WaitUntilAbove([&] { return ReceivesBlocked(c2_owner); }, blocked_before));
    EXPECT_TRUE(Send(*c2.task_end, Bytes(std::string("c2"))).ok());
    EXPECT_TRUE(took_c2.WaitForNotification());
    EXPECT_TRUE(Send(*c1.task_end, Bytes(std::string("c1"))).ok());
    sent.Notify();
  }).ok());
  absl::StatusOr<Selected> selected = Select(cases, HangGuardDeadline());
  ASSERT_TRUE(selected.ok()) << selected.status();
  ASSERT_TRUE(selected->status.ok()) << selected->status;
  EXPECT_EQ(selected->index, 1u);
  took_c2.Notify();
  ASSERT_TRUE(sent.WaitForNotification());
  EXPECT_TRUE(PumpUntil([&] { return ready_calls > 0; })) << "the loop's watch of c1 never fired";
  EXPECT_EQ(*ReceiveString(*c1.owner_end), "c1");
  EXPECT_TRUE(loop_->Unwatch(*watch).ok());
}

// test/chan/select7.go: a value passes whichever way each side takes it: a
// plain Send or Receive, a select of that one case, or a select with a
// second case that never proceeds (a send to a full channel, a receive from
// an empty one). The receiver is a unit, and it is waiting when the value
// is sent.
TEST_P(SelectConformance, GoEveryPairingOfPlainAndSelectPassesTheValue) {
  enum Style { kPlain, kOneCase, kWithIdleCase };
  const std::string idle = "idle";
  for (Style receive_style : {kPlain, kOneCase, kWithIdleCase}) {
    for (Style send_style : {kPlain, kOneCase, kWithIdleCase}) {
      SCOPED_TRACE(absl::StrCat("receive style ", receive_style, ", send style ", send_style));
      ChannelPair channel = MakePair();
      ChannelPair empty = MakePair();
      ChannelPair full = MakePair(size_t{1} << 20, /*buffer_bytes=*/256);
      const int taken = Fill(*full.owner_end, "f");
      ASSERT_GT(taken, 0);
      const std::string value = absl::StrCat("value ", receive_style, send_style);
      Notification received;
      std::string got;
      auto end_the_unit = EndTheUnitFirst(received, {channel.owner_end.get()});
      const uint64_t blocked_before = ReceivesBlocked(*channel.task_end);
      ASSERT_TRUE(scheduler_->Schedule([&] {
        char buffer[64];
        char idle_buffer[64];
        std::vector<SelectCase> cases = {
            SelectCase::Receive(channel.task_end.get(), absl::MakeSpan(buffer))};
        if (receive_style == kWithIdleCase) {
          cases.push_back(SelectCase::Receive(empty.task_end.get(), absl::MakeSpan(idle_buffer)));
        }
        if (receive_style == kPlain) {
          absl::StatusOr<std::string> plain = ReceiveString(*channel.task_end);
          EXPECT_TRUE(plain.ok()) << plain.status();
          if (plain.ok()) got = *plain;
        } else {
          absl::StatusOr<Selected> selected = Select(cases, HangGuardDeadline());
          EXPECT_TRUE(selected.ok() && selected->index == 0 && selected->status.ok())
              << selected.status() << (selected.ok() ? selected->status.ToString() : "");
          if (selected.ok() && selected->status.ok()) got = std::string(buffer, selected->length);
        }
        received.Notify();
      }).ok());
      ASSERT_TRUE(WaitUntilAbove([&] { return ReceivesBlocked(*channel.task_end); }, blocked_before))
          << "the receiver never tried";
      std::vector<SelectCase> cases = {SelectCase::Send(channel.owner_end.get(), Bytes(value))};
      if (send_style == kWithIdleCase) {
        cases.push_back(SelectCase::Send(full.owner_end.get(), Bytes(idle)));
      }
      if (send_style == kPlain) {
        ASSERT_TRUE(Send(*channel.owner_end, Bytes(value)).ok());
      } else {
        absl::StatusOr<Selected> selected = Select(cases, HangGuardDeadline());
        ASSERT_TRUE(selected.ok()) << selected.status();
        EXPECT_EQ(selected->index, 0u) << "the full channel took a message";
        EXPECT_TRUE(selected->status.ok()) << selected->status;
      }
      ASSERT_TRUE(received.WaitForNotification());
      EXPECT_EQ(got, value);
      EXPECT_EQ(full.owner_end->metrics().messages_sent, static_cast<uint64_t>(taken))
          << "the idle send case sent";
      EXPECT_EQ(empty.task_end->metrics().messages_received, 0u) << "the idle receive case took";
    }
  }
}

// test/chan/select3.go, "select should not get confused if it sees
// itself": a select that sends on an end and receives on the same end does
// not receive its own message, which goes to the peer; with nothing from
// the peer and no room to send, it waits (here until a deadline), and
// takes nothing. The full channel is a fresh one: its peer has read
// nothing, so no room is owed to it (a NATS end hands back credit for
// what its peer read only later).
TEST_P(SelectConformance, GoASelectDoesNotReceiveItsOwnSend) {
  ChannelPair channel = MakePair();
  char buffer[64];
  const std::string mine = "mine";
  std::array<SelectCase, 2> cases = {SelectCase::Send(channel.owner_end.get(), Bytes(mine)),
                                     SelectCase::Receive(channel.owner_end.get(), absl::MakeSpan(buffer))};
  absl::StatusOr<Selected> sent = Select(cases);
  ASSERT_TRUE(sent.ok()) << sent.status();
  EXPECT_EQ(sent->index, 0u);
  EXPECT_TRUE(sent->status.ok()) << sent->status;
  EXPECT_EQ(*ReceiveString(*channel.task_end), mine) << "the peer got it";

  ChannelPair full = MakePair(size_t{1} << 20, /*buffer_bytes=*/256);
  const std::string filler = "f";
  const int taken = Fill(*full.owner_end, filler);
  ASSERT_GT(taken, 0);
  std::array<SelectCase, 2> full_cases = {
      SelectCase::Send(full.owner_end.get(), Bytes(mine)),
      SelectCase::Receive(full.owner_end.get(), absl::MakeSpan(buffer))};
  absl::StatusOr<Selected> stuck = Select(full_cases, absl::Now() + absl::Milliseconds(5));
  EXPECT_EQ(stuck.status().code(), absl::StatusCode::kDeadlineExceeded)
      << stuck.status() << (stuck.ok() ? absl::StrCat(": performed case ", stuck->index) : "");

  // The peer reads everything: the fillers, then what is sent after, whole.
  Notification drained;
  auto end_the_unit = EndTheUnitFirst(drained, {full.owner_end.get()});
  ASSERT_TRUE(scheduler_->Schedule([&] {
    for (int i = 0; i < taken; ++i) {
      absl::StatusOr<std::string> got = ReceiveString(*full.task_end);
      if (!got.ok() || *got != filler) {
        ADD_FAILURE() << "filler " << i << ": " << got.status() << (got.ok() ? " " + *got : "");
        break;
      }
    }
    absl::StatusOr<std::string> last = ReceiveString(*full.task_end);
    EXPECT_TRUE(last.ok() && *last == "after") << last.status() << (last.ok() ? " " + *last : "");
    drained.Notify();
  }).ok());
  ASSERT_TRUE(Send(*full.owner_end, Bytes(std::string("after"))).ok());
  ASSERT_TRUE(drained.WaitForNotification());
}

// test/chan/select.go: a select with a default case (here a deadline that
// has passed) over two send cases sends while either has room, then gives
// up; each value goes out exactly once. The peers receive every value the
// selects reported sent, in order, and the ends sent nothing else. Once a
// receiver has made room, a select with one send case sends again.
TEST_P(SelectConformance, GoANonBlockingSelectSendsEachValueOnce) {
  ChannelPair a = MakePair(size_t{1} << 20, /*buffer_bytes=*/256);
  ChannelPair b = MakePair(size_t{1} << 20, /*buffer_bytes=*/256);
  std::array<char, sizeof(uint32_t)> value{};
  std::array<SelectCase, 2> cases = {SelectCase::Send(a.owner_end.get(), absl::MakeConstSpan(value)),
                                     SelectCase::Send(b.owner_end.get(), absl::MakeConstSpan(value))};
  std::array<std::vector<uint32_t>, 2> sent_to;
  constexpr uint32_t kLimit = 1 << 20;  // far past any buffer; reaching it fails the test
  uint32_t next = 0;
  for (; next < kLimit; ++next) {
    std::memcpy(value.data(), &next, sizeof next);
    absl::StatusOr<Selected> selected = Select(cases, absl::InfinitePast());
    if (!selected.ok()) {
      EXPECT_EQ(selected.status().code(), absl::StatusCode::kDeadlineExceeded) << selected.status();
      break;
    }
    ASSERT_TRUE(selected->status.ok()) << selected->status;
    sent_to[selected->index].push_back(next);
  }
  ASSERT_LT(next, kLimit) << "the selects never ran out of room";
  ChannelPair* pairs[2] = {&a, &b};
  auto receive_value = [](ChannelEnd& end) -> absl::StatusOr<uint32_t> {
    std::array<char, 16> buffer{};
    absl::StatusOr<size_t> length = Receive(end, absl::MakeSpan(buffer));
    if (!length.ok()) return length.status();
    if (*length != sizeof(uint32_t)) return absl::DataLossError(absl::StrCat(*length, " bytes"));
    uint32_t v = 0;
    std::memcpy(&v, buffer.data(), sizeof v);
    return v;
  };
  for (size_t i = 0; i < 2; ++i) {
    EXPECT_EQ(pairs[i]->owner_end->metrics().messages_sent, sent_to[i].size())
        << "channel " << i << " sent more than its selects reported";
    for (uint32_t expected : sent_to[i]) {
      absl::StatusOr<uint32_t> v = receive_value(*pairs[i]->task_end);
      ASSERT_TRUE(v.ok()) << v.status();
      ASSERT_EQ(*v, expected) << "channel " << i;
    }
  }
  std::memcpy(value.data(), &next, sizeof next);
  // (Not a polling select: room made on a NATS channel comes back through
  // the broker.)
  std::array<SelectCase, 1> one_case = {cases[0]};
  absl::StatusOr<Selected> again = Select(one_case, HangGuardDeadline());
  ASSERT_TRUE(again.ok()) << "room was made: " << again.status();
  EXPECT_TRUE(again->status.ok()) << again->status;
  absl::StatusOr<uint32_t> last = receive_value(*a.task_end);
  ASSERT_TRUE(last.ok()) << last.status();
  EXPECT_EQ(*last, next);
}

INSTANTIATE_TEST_SUITE_P(Conformance, SelectConformance, ::testing::ValuesIn(WorkerCounts()),
                         WorkerCountName);

}  // namespace
}  // namespace taskrt::conformance
