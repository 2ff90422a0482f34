// Fuzz target: a channel's framing and reading, on every channel backend.
//
// The input picks a backend, a maximum message size and a buffer size, then
// runs up to 200 operations on one pair from one thread: sends of arbitrary
// length (over the maximum too), non-blocking receives into buffers of
// arbitrary size (zero too), a close of the sending end, and, on socketpair,
// raw bytes written into the stream, as a peer that breaks the wire format
// would. Then a second thread drains the pair with blocking receives.
//
// Invariants (FUZZ_CHECK aborts when one breaks):
//   - a message over the maximum is refused with kResourceExhausted;
//   - every accepted message arrives once, in order, with its full length
//     reported and the bytes that fit the buffer intact;
//   - after the sender closes, the receiver gets every flushed message, then
//     kOutOfRange;
//   - on a stream broken by raw bytes, receives return errors or messages
//     no larger than the maximum, and the stream ends once the sender closes.

#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <deque>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "backends/registry.h"
#include "core/channel.h"
#include "core/errors.h"
#include "tests/fuzz/fuzz_input.h"

namespace taskrt::fuzz {
namespace {

// The input's first byte picks ChannelNames()[byte % count] from
// backends/registry.h, in registration order (the corpus was made in that
// order). A backend the kernel refuses runs its inputs on the first one.
ChannelFactory& Factory(size_t backend) {
  static const auto* const factories = [] {
    auto* made = new std::vector<std::unique_ptr<ChannelFactory>>();
    for (const std::string& name : ChannelNames()) {
      absl::StatusOr<std::unique_ptr<ChannelFactory>> factory = NewChannelFactoryNamed(name);
      if (!factory.ok()) {
        std::fprintf(stderr, "channel_framing: %s inputs run on %s: %s\n", name.c_str(),
                     ChannelNames()[0].c_str(), factory.status().ToString().c_str());
      }
      made->push_back(factory.ok() ? *std::move(factory) : nullptr);
    }
    return made;
  }();
  ChannelFactory* chosen = (*factories)[backend].get();
  return chosen != nullptr ? *chosen : *(*factories)[0];
}

char PatternByte(uint64_t seq, size_t offset) {
  return static_cast<char>(seq * 131 + offset * 7 + 1);
}

std::string Pattern(uint64_t seq, size_t length) {
  std::string out(length, '\0');
  for (size_t i = 0; i < length; ++i) out[i] = PatternByte(seq, i);
  return out;
}

struct Sent {
  uint64_t seq;
  size_t length;
};

class FramingRun {
 public:
  FramingRun(ChannelPair pair, bool raw_bytes_allowed)
      : task_(std::move(pair.task_end)),
        owner_(std::move(pair.owner_end)),
        max_(task_->max_message_size()),
        raw_bytes_allowed_(raw_bytes_allowed) {}

  void Run(FuzzInput& in) {
    for (int op = 0; op < 200 && !in.empty(); ++op) {
      switch (in.Byte() % 6) {
        case 0:
        case 1:
          SendOne(in.Below(max_ + max_ / 4 + 2));
          break;
        case 2:
        case 3:
          ReceiveOne(in.Below(max_ + 2));
          break;
        case 4:
          CloseSender();
          break;
        case 5:
          WriteRawBytes(in.Bytes(64));
          break;
      }
    }
    if (broken_) {
      DrainBroken();
    } else {
      DrainWellFormed();
    }
  }

 private:
  void Flush() {
    if (!unflushed_) return;
    absl::Status flushed = task_->TryFlush();
    FUZZ_CHECK(flushed.ok() || IsWouldBlock(flushed) || broken_, "flush failed: %s",
               flushed.ToString().c_str());
    unflushed_ = !flushed.ok();
  }

  void SendOne(size_t length) {
    Flush();
    const std::string message = Pattern(next_seq_, length);
    absl::Status sent = task_->TrySend(message);
    if (length > max_) {
      FUZZ_CHECK(sent.code() == absl::StatusCode::kResourceExhausted || (closed_ && !sent.ok()),
                 "%zu bytes over a maximum of %zu: %s", length, max_, sent.ToString().c_str());
      return;
    }
    if (sent.ok()) {
      FUZZ_CHECK(!closed_, "a closed end accepted a message");
      sent_.push_back({next_seq_++, length});
      unflushed_ = true;
      Flush();
      return;
    }
    FUZZ_CHECK(IsWouldBlock(sent) || closed_ || broken_, "send of %zu bytes failed: %s", length,
               sent.ToString().c_str());
  }

  // Checks a message the owner received against the next one sent.
  void CheckReceived(const std::string& buffer, size_t length) {
    FUZZ_CHECK(!sent_.empty(), "a %zu-byte message arrived that was never sent", length);
    const Sent expected = sent_.front();
    sent_.pop_front();
    FUZZ_CHECK(length == expected.length, "message %llu: length %zu, sent %zu",
               static_cast<unsigned long long>(expected.seq), length, expected.length);
    const size_t kept = std::min(buffer.size(), length);
    FUZZ_CHECK(buffer.compare(0, kept, Pattern(expected.seq, kept)) == 0,
               "message %llu arrived corrupted", static_cast<unsigned long long>(expected.seq));
  }

  void ReceiveOne(size_t capacity) {
    Flush();
    std::string buffer(capacity, '\0');
    absl::StatusOr<size_t> received = owner_->TryReceive(absl::MakeSpan(buffer));
    if (received.ok()) {
      if (broken_) {
        FUZZ_CHECK(*received <= max_, "a %zu-byte message passed a maximum of %zu", *received,
                   max_);
      } else {
        CheckReceived(buffer, *received);
      }
      return;
    }
    if (IsWouldBlock(received.status())) return;
    if (received.status().code() == absl::StatusCode::kOutOfRange && !broken_) {
      FUZZ_CHECK(closed_ && sent_.empty(), "end of stream with %zu messages missing",
                 sent_.size());
      return;
    }
    FUZZ_CHECK(broken_, "receive failed on a well-formed stream: %s",
               received.status().ToString().c_str());
  }

  void CloseSender() {
    if (closed_ || unflushed_) return;  // Close() may discard unflushed bytes
    task_->Close();
    closed_ = true;
  }

  // Where the readiness fd is the wire (ChannelCapabilities), bytes written
  // there reach the owner as if the peer sent them.
  void WriteRawBytes(const std::string& raw) {
    if (!raw_bytes_allowed_ || closed_ || unflushed_ || raw.empty()) return;
    if (write(task_->send_readiness().fd, raw.data(), raw.size()) > 0) broken_ = true;
  }

  // Every accepted message arrives, then the end of the stream.
  void DrainWellFormed() {
    const size_t expected = sent_.size();
    std::thread receiver([&] {
      std::string buffer(max_, '\0');
      for (size_t i = 0; i < expected; ++i) {
        absl::StatusOr<size_t> received = Receive(*owner_, absl::MakeSpan(buffer));
        FUZZ_CHECK(received.ok(), "message %zu of %zu lost: %s", i, expected,
                   received.status().ToString().c_str());
        CheckReceived(buffer, *received);
      }
    });
    while (unflushed_) {
      absl::Status flushed = task_->TryFlush();
      if (IsWouldBlock(flushed)) {
        FUZZ_CHECK(task_->WaitUntilReady(ChannelDirection::kSend).ok(), "wait failed");
        continue;
      }
      FUZZ_CHECK(flushed.ok(), "flush failed: %s", flushed.ToString().c_str());
      unflushed_ = false;
    }
    receiver.join();
    if (!closed_) task_->Close();
    char byte;
    absl::StatusOr<size_t> end = Receive(*owner_, absl::MakeSpan(&byte, 1));
    FUZZ_CHECK(end.status().code() == absl::StatusCode::kOutOfRange,
               "after the last message: %s, not the end of the stream",
               end.ok() ? "another message" : end.status().ToString().c_str());
  }

  // A broken stream still ends: once the sender closes, receives run out.
  void DrainBroken() {
    task_->Close();
    std::string buffer(max_, '\0');
    for (int i = 0;; ++i) {
      FUZZ_CHECK(i < 100000, "a broken stream never ended");
      absl::StatusOr<size_t> received = Receive(*owner_, absl::MakeSpan(buffer));
      if (!received.ok()) return;
      FUZZ_CHECK(*received <= max_, "a %zu-byte message passed a maximum of %zu", *received, max_);
    }
  }

  std::unique_ptr<ChannelEnd> task_;
  std::unique_ptr<ChannelEnd> owner_;
  const size_t max_;
  const bool raw_bytes_allowed_;
  std::deque<Sent> sent_;
  uint64_t next_seq_ = 0;
  bool unflushed_ = false;
  bool closed_ = false;
  bool broken_ = false;
};

}  // namespace
}  // namespace taskrt::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace taskrt;
  fuzz::FuzzInput in(data, size);
  const size_t backend = in.Byte() % ChannelNames().size();
  ChannelOptions options;
  options.max_message_size = 1 + in.Below(16384);
  if (in.Byte() % 2 == 1) options.buffer_bytes = 1 + in.Below(8192);
  absl::StatusOr<ChannelPair> pair = fuzz::Factory(backend).CreatePair(options);
  if (!pair.ok()) {
    FUZZ_CHECK(pair.status().code() == absl::StatusCode::kInvalidArgument,
               "CreatePair failed: %s", pair.status().ToString().c_str());
    return 0;
  }
  const bool raw_bytes_allowed = Channels()[backend]->capabilities.readiness_fd_is_the_wire;
  fuzz::FramingRun(*std::move(pair), raw_bytes_allowed).Run(in);
  return 0;
}
