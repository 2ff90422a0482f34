#include "channels/memory/memory_channel.h"

#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <bit>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "core/errors.h"
#include "core/execution_context.h"

namespace taskrt {
namespace {

constexpr size_t kDefaultBufferBytes = 64 * 1024;
constexpr size_t kMinBufferBytes = 256;
constexpr size_t kMaxBufferBytes = size_t{1} << 30;
constexpr size_t kHeaderSize = 8;
constexpr uint32_t kWrapMarker = 0xFFFFFFFFu;  // "continue at the ring's start"
constexpr uint32_t kMoreFragments = 1;         // flag: the message goes on in the next record
constexpr std::memory_order kSeqCst = std::memory_order_seq_cst;

size_t RoundUp8(size_t n) { return (n + 7) & ~size_t{7}; }

// Copies the prefix of a message that fits `out` (which may be empty).
void CopyPrefix(absl::Span<char> out, const char* bytes, size_t length) {
  const size_t n = std::min(out.size(), length);
  if (n != 0) std::memcpy(out.data(), bytes, n);
}

// An eventfd created on first use; written only when its watcher is armed.
class LazyEventFd {
 public:
  ~LazyEventFd() {
    const int fd = fd_.load(std::memory_order_acquire);
    if (fd >= 0) close(fd);
  }
  // The fd, created now if needed; -1 if the kernel refused.
  int Get() {
    int fd = fd_.load(std::memory_order_acquire);
    if (fd >= 0) return fd;
    const int created = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (created < 0) return -1;
    if (fd_.compare_exchange_strong(fd, created, std::memory_order_acq_rel)) return created;
    close(created);  // lost a race: the other one stays
    return fd;
  }
  void Signal() {
    const int fd = fd_.load(std::memory_order_acquire);
    if (fd < 0) return;
    signaled_.store(true, std::memory_order_relaxed);
    const uint64_t one = 1;
    // EAGAIN means the counter is already non-zero: readable either way.
    while (write(fd, &one, sizeof one) < 0 && errno == EINTR) {
    }
  }
  // Clears a pending signal so the fd is not readable for stale news.
  void Drain() {
    if (!signaled_.exchange(false, std::memory_order_relaxed)) return;
    uint64_t value;
    const int fd = fd_.load(std::memory_order_acquire);
    while (read(fd, &value, sizeof value) < 0 && errno == EINTR) {
    }
  }

 private:
  std::atomic<int> fd_{-1};
  std::atomic<bool> signaled_{false};
};

// Who waits for news on one side of a ring. Whether anyone does is bit 0 of
// the position word the other side publishes (positions are multiples of
// 8): a waiter sets it with a compare-and-swap against the position it last
// saw, and the publisher's exchange both publishes and learns of the waiter
// in one atomic step. Whoever clears the bit delivers the news.
struct WaitPoint {
  std::atomic<Parker*> parker{nullptr};  // a blocked Send or Receive
  std::atomic<bool> watched{false};      // an event loop has the eventfd
  LazyEventFd event;

  void Notify() {
    // Taken, not just read: a waiter that finds news by itself takes its
    // Parker back, and exactly one of the two may use it.
    if (parker.load(std::memory_order_acquire) != nullptr) {
      if (Parker* waiting = parker.exchange(nullptr, std::memory_order_acq_rel)) {
        waiting->Unpark();
      }
    }
    if (watched.load(std::memory_order_acquire)) event.Signal();
  }
};

constexpr uint64_t kWaiterBit = 1;

// One direction: a byte ring with one producer and one consumer.
struct Ring {
  explicit Ring(size_t bytes) : capacity(bytes), mask(bytes - 1), data(new char[bytes]) {}

  const size_t capacity;
  const size_t mask;
  const std::unique_ptr<char[]> data;
  // Each word on its own cache line: the hot ones move between the two
  // threads' caches once per message at most, the closing flags never.
  alignas(64) std::atomic<uint64_t> tail{0};  // written by the producer
  alignas(64) std::atomic<uint64_t> head{0};  // written by the consumer
  alignas(64) std::atomic<bool> producer_closed{false};
  std::atomic<bool> consumer_closed{false};
  alignas(64) WaitPoint consumer;  // waits for data
  alignas(64) WaitPoint producer;  // waits for space
};

struct PairState {
  PairState(size_t bytes, size_t max_message)
      : a_to_b(bytes), b_to_a(bytes), max_message_size(max_message) {}
  Ring a_to_b;
  Ring b_to_a;
  const size_t max_message_size;
};

class MemoryEnd final : public ChannelEnd {
 public:
  MemoryEnd(std::shared_ptr<PairState> state, Ring* out, Ring* in)
      : state_(std::move(state)),
        out_(out),
        in_(in),
        max_fragment_(out->capacity / 4 - kHeaderSize) {}
  ~MemoryEnd() override { Close(); }

  absl::Status TrySend(absl::Span<const char> message) override {
    if (closed_) return ClosedError("send");
    if (message.size() > state_->max_message_size) {
      return absl::ResourceExhaustedError(
          absl::StrCat("channel send: a message of ", message.size(),
                       " bytes exceeds the channel's maximum of ", state_->max_message_size,
                       " bytes; nothing was sent"));
    }
    // One message at a time: finish the last one first.
    if (absl::Status flushed = TryFlush(); !flushed.ok()) return flushed;
    if (out_->consumer_closed.load(std::memory_order_acquire)) return PeerClosedSendError();
    if (message.size() <= max_fragment_) {
      if (!TryWriteRecord(message.data(), message.size(), 0)) return WouldBlock();
      return absl::OkStatus();
    }
    // Large: accepted whole, pushed in pieces.
    pending_.assign(message.data(), message.size());
    pending_offset_ = 0;
    absl::Status flushed = TryFlush();
    return IsWouldBlock(flushed) ? absl::OkStatus() : flushed;
  }

  absl::Status TryFlush() override {
    if (closed_) return ClosedError("flush");
    while (pending_offset_ < pending_.size()) {
      if (out_->consumer_closed.load(std::memory_order_acquire)) {
        pending_.clear();
        pending_offset_ = 0;
        return PeerClosedSendError();
      }
      const size_t left = pending_.size() - pending_offset_;
      const size_t piece = std::min(left, max_fragment_);
      if (!TryWriteRecord(pending_.data() + pending_offset_, piece,
                          piece < left ? kMoreFragments : 0)) {
        return WouldBlock();
      }
      pending_offset_ += piece;
    }
    if (!pending_.empty()) {
      pending_.clear();
      pending_.shrink_to_fit();
      pending_offset_ = 0;
    }
    return absl::OkStatus();
  }

  absl::StatusOr<size_t> TryReceive(absl::Span<char> out) override {
    if (closed_) return ClosedError("receive");
    Ring& ring = *in_;
    while (true) {
      if (read_position_ == known_tail_) {
        known_tail_ = ring.tail.load(std::memory_order_acquire) & ~kWaiterBit;
        if (read_position_ == known_tail_) {
          // A close is published after the producer's last record, so a
          // close seen here, with the tail re-read after it, is final.
          if (ring.producer_closed.load(std::memory_order_acquire)) {
            known_tail_ = ring.tail.load(std::memory_order_acquire) & ~kWaiterBit;
            if (read_position_ == known_tail_) return ClosedWhileReading();
            continue;
          }
          // An event loop's watcher asks for a signal with the next record.
          if (ring.consumer.watched.load(std::memory_order_relaxed)) {
            ring.consumer.event.Drain();
            if (!ArmWaiterBit(ring.tail, read_position_, ring.producer_closed)) continue;
          }
          return WouldBlock();
        }
      }
      const size_t offset = read_position_ & ring.mask;
      uint32_t header[2];
      std::memcpy(header, ring.data.get() + offset, sizeof header);
      const uint32_t length = header[0];
      if (length == kWrapMarker) {
        read_position_ += ring.capacity - offset;
        continue;
      }
      const char* payload = ring.data.get() + offset + kHeaderSize;
      const bool more = (header[1] & kMoreFragments) != 0;
      std::optional<size_t> delivered;
      if (more || reassembling_) {
        reassembly_.append(payload, length);
        reassembling_ = more;
        if (!more) {
          CopyPrefix(out, reassembly_.data(), reassembly_.size());
          delivered = reassembly_.size();
          reassembly_.clear();
          if (reassembly_.capacity() > 4 * max_fragment_) reassembly_.shrink_to_fit();
        }
      } else {
        CopyPrefix(out, payload, length);
        delivered = length;
      }
      read_position_ += kHeaderSize + RoundUp8(length);
      // Publish lazily, once a quarter of the ring was read: the producer
      // needs the head only when it runs out of space, and with less than a
      // quarter unpublished a caught-up reader always leaves it room.
      if (read_position_ - published_head_ >= ring.capacity / 4) PublishHead();
      if (delivered.has_value()) return *delivered;
    }
  }

  Readiness send_readiness() const override {
    Ring& ring = *out_;
    return Watch(ring.producer, ring.head, known_head_, ring.consumer_closed);
  }
  Readiness receive_readiness() const override {
    Ring& ring = *in_;
    return Watch(ring.consumer, ring.tail, read_position_, ring.producer_closed);
  }

  absl::Status WaitUntilReady(ChannelDirection direction) override {
    if (closed_) return ClosedError("wait");
    if (direction == ChannelDirection::kReceive) {
      Ring& ring = *in_;
      PublishHead();  // the producer may be waiting for this space
      return ParkUntilNews(ring.consumer, ring.tail, read_position_, ring.producer_closed);
    }
    Ring& ring = *out_;
    return ParkUntilNews(ring.producer, ring.head, known_head_, ring.consumer_closed);
  }

  bool HasBufferedMessage() const override {
    return (in_->tail.load(std::memory_order_acquire) & ~kWaiterBit) != read_position_;
  }

  void Close() override {
    if (closed_) return;
    closed_ = true;
    pending_.clear();
    // Each flag first, then clear the waiter bit: a waiter that set the bit
    // before is notified here; one that sets it after sees the flag. Stop
    // reading before announcing the end of writing: a peer that sees our
    // end of stream then also sees that its own sends are refused.
    in_->consumer_closed.store(true, kSeqCst);
    if (in_->head.fetch_and(~kWaiterBit, kSeqCst) & kWaiterBit) in_->producer.Notify();
    in_->producer.event.Signal();
    out_->producer_closed.store(true, kSeqCst);
    if (out_->tail.fetch_and(~kWaiterBit, kSeqCst) & kWaiterBit) out_->consumer.Notify();
    out_->consumer.event.Signal();  // a watcher learns of the close in any case
  }

  size_t max_message_size() const override { return state_->max_message_size; }

 private:
  static absl::Status ClosedError(const char* operation) {
    return absl::FailedPreconditionError(
        absl::StrCat("channel ", operation, ": this end of the channel is closed"));
  }
  static absl::Status PeerClosedSendError() {
    return absl::FailedPreconditionError("channel send: the peer closed the channel");
  }
  absl::Status ClosedWhileReading() {
    if (reassembling_) {
      reassembling_ = false;
      reassembly_.clear();
      return absl::DataLossError("channel receive: the peer closed the channel mid-message");
    }
    return absl::OutOfRangeError("channel receive: the peer closed the channel and it is drained");
  }

  // Writes one record if the ring has room; publishes it and wakes the
  // consumer. False when full (after arming the send watcher, if any).
  bool TryWriteRecord(const char* bytes, size_t length, uint32_t flags) {
    Ring& ring = *out_;
    const size_t record = kHeaderSize + RoundUp8(length);
    while (true) {
      const size_t offset = write_position_ & ring.mask;
      const size_t to_end = ring.capacity - offset;
      const size_t skip = to_end < record ? to_end : 0;
      if (ring.capacity - (write_position_ - known_head_) < skip + record) {
        known_head_ = ring.head.load(std::memory_order_acquire) & ~kWaiterBit;
        if (ring.capacity - (write_position_ - known_head_) < skip + record) {
          if (ring.producer.watched.load(std::memory_order_relaxed)) {
            ring.producer.event.Drain();
            if (!ArmWaiterBit(ring.head, known_head_, ring.consumer_closed)) continue;
          }
          return false;
        }
      }
      if (skip != 0) {
        std::memcpy(ring.data.get() + offset, &kWrapMarker, sizeof kWrapMarker);
        write_position_ += skip;
      }
      char* at = ring.data.get() + (write_position_ & ring.mask);
      const uint32_t header[2] = {static_cast<uint32_t>(length), flags};
      std::memcpy(at, header, sizeof header);
      if (length != 0) std::memcpy(at + kHeaderSize, bytes, length);
      write_position_ += record;
      if (ring.tail.exchange(write_position_, std::memory_order_acq_rel) & kWaiterBit) {
        ring.consumer.Notify();
      }
      return true;
    }
  }

  void PublishHead() {
    if (published_head_ == read_position_) return;
    published_head_ = read_position_;
    if (in_->head.exchange(read_position_, std::memory_order_acq_rel) & kWaiterBit) {
      in_->producer.Notify();
    }
  }

  // Sets the waiter bit on `word` (the other side's position), expecting
  // it at `seen`. False when there is news instead: the word moved, or the
  // other side closed; the caller then retries rather than waits.
  static bool ArmWaiterBit(std::atomic<uint64_t>& word, uint64_t seen,
                           const std::atomic<bool>& other_closed) {
    uint64_t expected = seen;
    if (!word.compare_exchange_strong(expected, seen | kWaiterBit, kSeqCst)) {
      return (expected & ~kWaiterBit) == seen && !other_closed.load(kSeqCst);
    }
    if (!other_closed.load(kSeqCst)) return true;
    // Closed meanwhile: take the bit back unless the closer already did.
    expected = seen | kWaiterBit;
    word.compare_exchange_strong(expected, seen, kSeqCst);
    return false;
  }

  // Hands out the eventfd for an event loop, armed for the next news; if
  // there is news already (from before the watch), signals it at once.
  static Readiness Watch(WaitPoint& point, std::atomic<uint64_t>& word, uint64_t seen,
                         const std::atomic<bool>& other_closed) {
    const int fd = point.event.Get();
    if (fd < 0) return Readiness{-1, POLLIN};  // Watch() then reports a bad fd
    point.watched.store(true, kSeqCst);
    if (!ArmWaiterBit(word, seen, other_closed)) point.event.Signal();
    return Readiness{fd, POLLIN};
  }

  // Blocks until the other side publishes past `seen` or closes.
  static absl::Status ParkUntilNews(WaitPoint& point, std::atomic<uint64_t>& word, uint64_t seen,
                                    const std::atomic<bool>& other_closed) {
    Parker parker;
    point.parker.store(&parker, std::memory_order_release);
    if (ArmWaiterBit(word, seen, other_closed) ||
        point.parker.exchange(nullptr, std::memory_order_acq_rel) != &parker) {
      // Armed, or a notifier (woken by an event-loop watcher's bit) took
      // the Parker already: its Unpark must be consumed before `parker`
      // goes away.
      parker.Park();
    }
    return absl::OkStatus();
  }

  const std::shared_ptr<PairState> state_;
  Ring* const out_;
  Ring* const in_;
  const size_t max_fragment_;
  bool closed_ = false;
  // Producer side of out_.
  uint64_t write_position_ = 0;
  uint64_t known_head_ = 0;  // last head read; space is at least this much
  std::string pending_;      // a large message's pieces not yet in the ring
  size_t pending_offset_ = 0;
  // Consumer side of in_.
  uint64_t read_position_ = 0;
  uint64_t known_tail_ = 0;
  uint64_t published_head_ = 0;
  bool reassembling_ = false;
  std::string reassembly_;
};

class MemoryChannelFactory final : public ChannelFactory {
 public:
  absl::StatusOr<ChannelPair> CreatePair(const ChannelOptions& options) override {
    const size_t requested = options.buffer_bytes == 0 ? kDefaultBufferBytes : options.buffer_bytes;
    if (requested < kMinBufferBytes || requested > kMaxBufferBytes) {
      return absl::InvalidArgumentError(
          absl::StrCat("memory channel: buffer_bytes ", requested, " is outside [",
                       kMinBufferBytes, ", ", kMaxBufferBytes, "]"));
    }
    if (options.max_message_size > std::numeric_limits<uint32_t>::max() - 8) {
      return absl::InvalidArgumentError(absl::StrCat(
          "memory channel: max_message_size ", options.max_message_size,
          " does not fit the 32-bit record length"));
    }
    const size_t bytes = std::bit_ceil(requested);
    auto state = std::make_shared<PairState>(bytes, options.max_message_size);
    ChannelPair pair;
    pair.task_end = std::make_unique<MemoryEnd>(state, &state->a_to_b, &state->b_to_a);
    pair.owner_end = std::make_unique<MemoryEnd>(state, &state->b_to_a, &state->a_to_b);
    return pair;
  }

  std::string name() const override { return "memory"; }
};

}  // namespace

std::unique_ptr<ChannelFactory> NewMemoryChannelFactory() {
  return std::make_unique<MemoryChannelFactory>();
}

}  // namespace taskrt
