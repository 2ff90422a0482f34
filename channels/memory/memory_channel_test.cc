// Memory-channel specifics the conformance suite does not reach: the
// publisher/waiter hand-off (no lost wake-ups with parking at once, no
// spinning), fragments through a tiny ring, and event-loop readiness.

#include "channels/memory/memory_channel.h"

#include <poll.h>

#include <cstdint>
#include <cstring>
#include <string>
#include <thread>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "core/channel.h"
#include "core/errors.h"
#include "core/execution_context.h"
#include "gtest/gtest.h"

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
  absl::StatusOr<ChannelPair> pair = NewMemoryChannelFactory()->CreatePair(options);
  EXPECT_TRUE(pair.ok()) << pair.status();
  return *std::move(pair);
}

TEST(MemoryChannel, BlockedSendAndReceiveAlwaysWakeInATinyRing) {
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

TEST(MemoryChannel, EventLoopReadinessNeverMissesARecord) {
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

TEST(MemoryChannel, SendReadinessSignalsWhenTheReaderMakesRoom) {
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

TEST(MemoryChannel, CloseWakesAParkedReceiver) {
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

}  // namespace
}  // namespace taskrt
