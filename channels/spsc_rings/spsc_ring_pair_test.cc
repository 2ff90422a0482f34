// What the conformance suite does not reach in the SPSC ring pair: the
// publisher/waiter hand-off (no lost wake-ups with parking at once, no
// spinning), fragments through a tiny ring, event-loop readiness, and the
// cost of a pair in kernel objects.

#include "channels/spsc_rings/spsc_ring_pair.h"

#include <poll.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <future>
#include <string>
#include <thread>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "core/channel.h"
#include "core/errors.h"
#include "core/execution_context.h"
#include "gtest/gtest.h"

// RingMemoryTheSystemRefusesIsResourceExhausted needs a refused allocation
// to come back as null, as it does without a sanitizer, rather than be
// reported as running out of memory.
#if defined(TASKRT_ASAN)
extern "C" const char* __asan_default_options() { return "allocator_may_return_null=1"; }
#endif
#if defined(TASKRT_TSAN)
extern "C" const char* __tsan_default_options() { return "allocator_may_return_null=1"; }
#endif

namespace taskrt {
namespace {

// An OS-thread context that parks at once instead of spinning first, so
// that every blocked call goes through the waiter flag and the Parker.
class NoSpinContext final : public ExecutionContext {
 public:
  absl::Status WaitFdUntil(int fd, short poll_events, absl::Time) override {
    pollfd entry{.fd = fd, .events = poll_events, .revents = 0};
    while (poll(&entry, 1, -1) < 0) {
    }
    return absl::OkStatus();
  }
  std::chrono::nanoseconds spin_before_wait() const override { return {}; }
  const char* name() const override { return "no_spin"; }
};

// Message i: its length varies (0 .. 299 bytes, beyond a 256-byte ring's
// 56-byte fragment size) and its bytes encode i.
std::string MessageFor(uint32_t i) {
  std::string message(i % 300, '\0');
  for (size_t k = 0; k < message.size(); ++k) message[k] = static_cast<char>(i * 31 + k);
  return message;
}

ChannelPair TinyPair() {
  ChannelOptions options;
  options.buffer_bytes = 256;
  options.max_message_size = 4096;
  absl::StatusOr<ChannelPair> pair = spsc_rings::CreatePair(options, "test channel");
  EXPECT_TRUE(pair.ok()) << pair.status();
  return *std::move(pair);
}

TEST(SpscRingPair, BlockedSendAndReceiveAlwaysWakeInATinyRing) {
  constexpr uint32_t kMessages = 100000;
  ChannelPair pair = TinyPair();
  std::thread producer([end = pair.task_end.get()] {
    NoSpinContext context;
    ScopedExecutionContext scoped(&context);
    for (uint32_t i = 0; i < kMessages; ++i) {
      if (!Send(*end, absl::MakeConstSpan(MessageFor(i))).ok()) return;
    }
  });
  NoSpinContext context;
  ScopedExecutionContext scoped(&context);
  std::string buffer(4096, '\0');
  uint32_t mismatches = 0;
  for (uint32_t i = 0; i < kMessages; ++i) {
    absl::StatusOr<size_t> got = Receive(*pair.owner_end, absl::MakeSpan(buffer));
    ASSERT_TRUE(got.ok()) << "message " << i << ": " << got.status();
    if (buffer.substr(0, *got) != MessageFor(i)) ++mismatches;
  }
  producer.join();
  EXPECT_EQ(mismatches, 0u);
}

TEST(SpscRingPair, EventLoopReadinessNeverMissesARecord) {
  constexpr uint32_t kMessages = 50000;
  ChannelPair pair = TinyPair();
  const Readiness readiness = pair.owner_end->receive_readiness();
  ASSERT_GE(readiness.fd, 0);
  std::thread producer([end = pair.task_end.get()] {
    NoSpinContext context;
    ScopedExecutionContext scoped(&context);
    for (uint32_t i = 0; i < kMessages; ++i) {
      if (!Send(*end, absl::MakeConstSpan(MessageFor(i))).ok()) return;
    }
  });
  // The event loop's pattern: drain with TryReceive until WouldBlock, then
  // poll the fd (no timeout: a lost readiness hangs and fails the test).
  std::string buffer(4096, '\0');
  uint32_t received = 0;
  uint32_t mismatches = 0;
  while (received < kMessages) {
    absl::StatusOr<size_t> got = pair.owner_end->TryReceive(absl::MakeSpan(buffer));
    if (got.ok()) {
      if (buffer.substr(0, *got) != MessageFor(received)) ++mismatches;
      ++received;
      continue;
    }
    ASSERT_TRUE(IsWouldBlock(got.status())) << got.status();
    pollfd entry{.fd = readiness.fd, .events = readiness.events, .revents = 0};
    ASSERT_GE(poll(&entry, 1, -1), 0);
  }
  producer.join();
  EXPECT_EQ(mismatches, 0u);
}

TEST(SpscRingPair, SendReadinessSignalsWhenTheReaderMakesRoom) {
  ChannelPair pair = TinyPair();
  const Readiness readiness = pair.task_end->send_readiness();
  ASSERT_GE(readiness.fd, 0);
  constexpr uint32_t kMessages = 50000;
  std::thread consumer([end = pair.owner_end.get()] {
    NoSpinContext context;
    ScopedExecutionContext scoped(&context);
    std::string buffer(4096, '\0');
    for (uint32_t i = 0; i < kMessages; ++i) {
      if (!Receive(*end, absl::MakeSpan(buffer)).ok()) return;
    }
  });
  uint32_t sent = 0;
  bool accepted = false;  // TrySend took message `sent`; TryFlush pushes the rest
  while (sent < kMessages) {
    absl::Status status;
    if (!accepted) {
      status = pair.task_end->TrySend(absl::MakeConstSpan(MessageFor(sent)));
      accepted = status.ok();
    }
    if (accepted) status = pair.task_end->TryFlush();
    if (status.ok()) {
      ++sent;
      accepted = false;
      continue;
    }
    ASSERT_TRUE(IsWouldBlock(status)) << status;
    pollfd entry{.fd = readiness.fd, .events = readiness.events, .revents = 0};
    ASSERT_GE(poll(&entry, 1, -1), 0);
  }
  consumer.join();
}

// The head is published lazily (a quarter ring at a time), but a producer
// parked for room gets it from the very receive that makes its message fit:
// Go's small-buffer pattern, where the receiver takes one message and then
// waits for the sender somewhere else.
TEST(SpscRingPair, AParkedSenderResumesAfterTheOneReceiveThatMakesRoom) {
  for (const size_t ring_bytes : {size_t{256}, size_t{4096}, size_t{65536}}) {
    SCOPED_TRACE(ring_bytes);
    ChannelOptions options;
    options.buffer_bytes = ring_bytes;
    absl::StatusOr<ChannelPair> made = spsc_rings::CreatePair(options, "test channel");
    ASSERT_TRUE(made.ok()) << made.status();
    ChannelPair pair = *std::move(made);
    const std::string message = "12345678";  // 16-byte records
    int filled = 0;
    while (pair.task_end->TrySend(absl::MakeConstSpan(message)).ok()) ++filled;
    std::atomic<bool> sent{false};
    std::promise<absl::Status> sent_status;
    std::thread producer([&] {
      NoSpinContext context;  // parks at once, through the waiter flag
      ScopedExecutionContext scoped(&context);
      absl::Status status = Send(*pair.task_end, absl::MakeConstSpan(std::string("last one")));
      sent.store(true);
      sent_status.set_value(status);
    });
    // The ring is full: nothing can let the producer through yet.
    EXPECT_FALSE(sent.load());
    char buffer[16];
    absl::StatusOr<size_t> got = pair.owner_end->TryReceive(absl::MakeSpan(buffer));
    ASSERT_TRUE(got.ok()) << got.status();
    std::future<absl::Status> outcome = sent_status.get_future();
    if (outcome.wait_for(std::chrono::seconds(120)) != std::future_status::ready) {  // hang guard
      ADD_FAILURE() << "the receive that made room did not wake the parked sender";
      pair.owner_end->Close();  // lets the sender fail, so the thread ends
      producer.join();
      return;
    }
    producer.join();
    EXPECT_TRUE(outcome.get().ok());
    for (int i = 1; i < filled; ++i) {
      got = pair.owner_end->TryReceive(absl::MakeSpan(buffer));
      ASSERT_TRUE(got.ok()) << i << ": " << got.status();
      ASSERT_EQ(std::string(buffer, *got), message);
    }
    got = pair.owner_end->TryReceive(absl::MakeSpan(buffer));
    ASSERT_TRUE(got.ok()) << got.status();
    EXPECT_EQ(std::string(buffer, *got), "last one");
  }
}

// Records carry their own publication (a non-zero header, with a zero header
// stored just past each record): mixed sizes, zero-length messages included,
// must wrap at every offset of a tiny ring, with the ring filled to the last
// byte the producer may use and then drained.
TEST(SpscRingPair, MixedSizesFillAndWrapATinyRing) {
  ChannelPair pair = TinyPair();
  std::string buffer(4096, '\0');
  uint32_t sent = 0;
  uint32_t received = 0;
  for (int round = 0; round < 2000; ++round) {
    // Sizes 0..60: one record each (a 256-byte ring's fragment is 56
    // bytes), except 57..60, which take two.
    const auto size_of = [](uint32_t i) { return (i * 7 + i / 13) % 61; };
    while (true) {
      std::string message(size_of(sent), static_cast<char>(sent));
      absl::Status status = pair.task_end->TrySend(absl::MakeConstSpan(message));
      if (IsWouldBlock(status)) break;
      ASSERT_TRUE(status.ok()) << status;
      ++sent;
      if (!pair.task_end->TryFlush().ok()) break;  // a fragment is still pending
    }
    while (true) {
      absl::StatusOr<size_t> got = pair.owner_end->TryReceive(absl::MakeSpan(buffer));
      if (!got.ok()) {
        ASSERT_TRUE(IsWouldBlock(got.status())) << got.status();
        break;
      }
      ASSERT_EQ(*got, size_of(received)) << "message " << received;
      ASSERT_EQ(buffer.substr(0, *got), std::string(*got, static_cast<char>(received)))
          << "message " << received;
      ++received;
    }
    // Whatever is still pending goes out once the reader made room.
    absl::Status flushed = pair.task_end->TryFlush();
    ASSERT_TRUE(flushed.ok() || IsWouldBlock(flushed)) << flushed;
  }
  EXPECT_GT(sent, 5000u);  // about 4.5 per round
  EXPECT_GE(received + 1, sent);
}

// A fresh ring and a ring read to empty both say "nothing yet", and a
// zero-length message (whose length field is 0) is still a message.
TEST(SpscRingPair, ZeroLengthMessagesAndEmptyRing) {
  ChannelPair pair = TinyPair();
  char byte = 'x';
  EXPECT_FALSE(pair.owner_end->ReceiveReady());
  absl::StatusOr<size_t> got = pair.owner_end->TryReceive(absl::MakeSpan(&byte, 1));
  EXPECT_TRUE(IsWouldBlock(got.status())) << got.status();
  for (int i = 0; i < 100; ++i) {  // several laps of the ring
    ASSERT_TRUE(pair.task_end->TrySend(absl::Span<const char>()).ok());
    EXPECT_TRUE(pair.owner_end->ReceiveReady());
    got = pair.owner_end->TryReceive(absl::MakeSpan(&byte, 1));
    ASSERT_TRUE(got.ok()) << got.status();
    EXPECT_EQ(*got, 0u);
    EXPECT_FALSE(pair.owner_end->ReceiveReady());
    got = pair.owner_end->TryReceive(absl::MakeSpan(&byte, 1));
    EXPECT_TRUE(IsWouldBlock(got.status())) << got.status();
  }
  pair.task_end->Close();
  got = pair.owner_end->TryReceive(absl::MakeSpan(&byte, 1));
  EXPECT_EQ(got.status().code(), absl::StatusCode::kOutOfRange) << got.status();
}

// Two threads on the fast path (the default context spins before it parks):
// every message's length and sequence number arrive intact, for small
// records, records that wrap, and messages split into fragments.
void StreamEveryMessage(size_t buffer_bytes, uint32_t messages) {
  ChannelOptions options;
  options.buffer_bytes = buffer_bytes;
  options.max_message_size = 4096;
  absl::StatusOr<ChannelPair> pair = spsc_rings::CreatePair(options, "test channel");
  ASSERT_TRUE(pair.ok()) << pair.status();
  // Mostly 8..24 bytes, sometimes up to 1,000 (fragments in small rings).
  const auto size_of = [](uint32_t i) -> size_t {
    return i % 97 == 0 ? 4 + i % 1000 : 8 + (i * 5) % 17;
  };
  std::thread producer([end = pair->task_end.get(), messages, size_of] {
    std::string message;
    for (uint32_t i = 0; i < messages; ++i) {
      message.assign(size_of(i), static_cast<char>(i * 13));
      std::memcpy(message.data(), &i, sizeof i);
      if (!Send(*end, absl::MakeConstSpan(message)).ok()) return;
    }
  });
  std::string buffer(4096, '\0');
  uint32_t broken = 0;
  for (uint32_t i = 0; i < messages; ++i) {
    absl::StatusOr<size_t> got = Receive(*pair->owner_end, absl::MakeSpan(buffer));
    ASSERT_TRUE(got.ok()) << "message " << i << ": " << got.status();
    uint32_t sequence;
    std::memcpy(&sequence, buffer.data(), sizeof sequence);
    if (*got != size_of(i) || sequence != i ||
        buffer.substr(4, *got - 4) != std::string(*got - 4, static_cast<char>(i * 13))) {
      if (broken++ < 5) ADD_FAILURE() << "message " << i << " arrived as " << sequence;
    }
  }
  producer.join();
  EXPECT_EQ(broken, 0u);
  absl::StatusOr<size_t> after = pair->owner_end->TryReceive(absl::MakeSpan(buffer));
  EXPECT_TRUE(IsWouldBlock(after.status())) << after.status();
}

TEST(SpscRingPair, TwoThreadStreamKeepsEverySequenceNumberInATinyRing) {
  StreamEveryMessage(256, 200000);
}

TEST(SpscRingPair, TwoThreadStreamKeepsEverySequenceNumberInTheDefaultRing) {
  StreamEveryMessage(0, 500000);
}

// Send() skips TryFlush() while may_hold_unflushed() is false, so the flag
// must be true for as long as a large message's pieces wait in the end.
TEST(SpscRingPair, MayHoldUnflushedIsTrueExactlyWhilePiecesWait) {
  ChannelPair pair = TinyPair();
  ChannelEnd& sender = *pair.task_end;
  ChannelEnd& receiver = *pair.owner_end;
  EXPECT_FALSE(sender.may_hold_unflushed());
  ASSERT_TRUE(sender.TrySend(MessageFor(7)).ok());  // small: written whole
  EXPECT_FALSE(sender.may_hold_unflushed());
  std::string buffer(4096, '\0');
  ASSERT_EQ(receiver.TryReceive(absl::MakeSpan(buffer)).value_or(0), MessageFor(7).size());

  const std::string large(3000, 'L');  // many 56-byte pieces through 256 bytes
  ASSERT_TRUE(sender.TrySend(large).ok());
  EXPECT_TRUE(sender.may_hold_unflushed());
  size_t received = 0;
  while (true) {
    absl::StatusOr<size_t> got = receiver.TryReceive(absl::MakeSpan(buffer));
    if (got.ok()) {
      received = *got;
      break;
    }
    ASSERT_TRUE(IsWouldBlock(got.status())) << got.status();
    EXPECT_TRUE(sender.may_hold_unflushed());
    absl::Status flushed = sender.TryFlush();
    ASSERT_TRUE(flushed.ok() || IsWouldBlock(flushed)) << flushed;
  }
  EXPECT_EQ(received, large.size());
  EXPECT_EQ(std::string(buffer.data(), received), large);
  EXPECT_TRUE(sender.TryFlush().ok());
  EXPECT_FALSE(sender.may_hold_unflushed());
}

TEST(SpscRingPair, CloseWakesAParkedReceiver) {
  ChannelPair pair = TinyPair();
  absl::Status result;
  std::thread receiver([&] {
    NoSpinContext context;
    ScopedExecutionContext scoped(&context);
    char byte;
    result = Receive(*pair.owner_end, absl::MakeSpan(&byte, 1)).status();
  });
  // Whether the receiver parked before or after this, it must end.
  pair.task_end->Close();
  receiver.join();
  EXPECT_EQ(result.code(), absl::StatusCode::kOutOfRange) << result;
}

// In a child process: limits the address space to a little above what the
// process already maps, asks for the largest rings (two of 1 GiB), writes
// the resulting status to `report_fd`, and returns its code (or 100 + a
// step that failed first).
int CreateLargestPairWithLittleAddressSpace(int report_fd) {
  std::FILE* statm = std::fopen("/proc/self/statm", "r");
  if (statm == nullptr) return 101;
  unsigned long pages = 0;
  const int scanned = std::fscanf(statm, "%lu", &pages);
  std::fclose(statm);
  if (scanned != 1) return 102;
  const rlim_t limit = static_cast<rlim_t>(pages) * sysconf(_SC_PAGESIZE) + (rlim_t{64} << 20);
  const rlimit address_space{.rlim_cur = limit, .rlim_max = limit};
  if (setrlimit(RLIMIT_AS, &address_space) != 0) return 103;
  ChannelOptions options;
  options.buffer_bytes = size_t{1} << 30;
  absl::StatusOr<ChannelPair> pair = spsc_rings::CreatePair(options, "test channel");
  const std::string report = pair.ok() ? "created" : pair.status().ToString();
  if (write(report_fd, report.data(), report.size()) < 0) return 104;
  return pair.ok() ? 105 : static_cast<int>(pair.status().code());
}

// Ring memory the system refuses is kResourceExhausted, not an exception.
// The refusal is real: the child asking for it has too little address
// space left, so the test takes no memory from the machine.
TEST(SpscRingPair, RingMemoryTheSystemRefusesIsResourceExhausted) {
  int report[2];
  ASSERT_EQ(pipe(report), 0) << std::strerror(errno);
  const pid_t child = fork();
  ASSERT_GE(child, 0) << std::strerror(errno);
  if (child == 0) {
    close(report[0]);
    _exit(CreateLargestPairWithLittleAddressSpace(report[1]));
  }
  close(report[1]);
  int wait_status = 0;
  ASSERT_EQ(waitpid(child, &wait_status, 0), child) << std::strerror(errno);
  // The report is one write shorter than PIPE_BUF: it is all in the pipe.
  char chunk[512];
  const ssize_t got = read(report[0], chunk, sizeof chunk);
  close(report[0]);
  const std::string text(chunk, got > 0 ? static_cast<size_t>(got) : 0);
  ASSERT_TRUE(WIFEXITED(wait_status)) << "the child did not exit: wait status " << wait_status;
  EXPECT_EQ(WEXITSTATUS(wait_status), static_cast<int>(absl::StatusCode::kResourceExhausted))
      << "child's report: " << text;
  EXPECT_NE(text.find("test channel: the system refused the memory for two rings of "
                      "1073741824 bytes"),
            std::string::npos)
      << text;
}

}  // namespace
}  // namespace taskrt
