#include "channels/memory/memory_channel.h"

#include <linux/membarrier.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
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

// memcpy without the library call for the small messages that dominate
// streams (the call and its size dispatch cost more than the copy).
inline void CopyBytes(char* to, const char* from, size_t n) {
  if (n >= 8 && n <= 16) {
    uint64_t first, last;  // two overlapping words cover 8..16 bytes
    std::memcpy(&first, from, 8);
    std::memcpy(&last, from + n - 8, 8);
    std::memcpy(to, &first, 8);
    std::memcpy(to + n - 8, &last, 8);
  } else if (n != 0) {
    std::memcpy(to, from, n);
  }
}

// Copies the prefix of a message that fits `out` (which may be empty).
void CopyPrefix(absl::Span<char> out, const char* bytes, size_t length) {
  CopyBytes(out.data(), bytes, std::min(out.size(), length));
}

// Publisher and waiter meet Dekker-style: the publisher stores its position,
// then loads the waiter flag; the waiter stores the flag, then loads the
// position. Each needs a store-load barrier, but the publisher runs once per
// message and the waiter only before it sleeps, so the barrier is made
// asymmetric (as folly's asymmetricLightBarrier / liburcu): the publisher's
// half is a compiler barrier, the waiter's half is membarrier(2), which runs
// a full barrier on every CPU running a thread of this process. Where the
// kernel refuses membarrier, both halves are plain seq_cst fences.
bool RegisterAsymmetricBarrier() {
  static const bool registered =
      syscall(SYS_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED, 0, 0) == 0;
  return registered;
}

// A full store-load barrier. ThreadSanitizer does not support
// atomic_thread_fence (GCC refuses it under -Werror=tsan); there a seq_cst
// read-modify-write on a thread-local word stands in, which is a full
// barrier on the hardware TSan runs on (x86-64, AArch64 with LSE).
inline void FullFence() {
#if defined(__SANITIZE_THREAD__)
  thread_local std::atomic<int> fence_word{0};
  fence_word.fetch_add(0, std::memory_order_seq_cst);
#else
  std::atomic_thread_fence(std::memory_order_seq_cst);
#endif
}

// The publisher's half: after its position store, before its flag load.
inline void LightBarrier(bool asymmetric) {
  if (asymmetric) {
    std::atomic_signal_fence(std::memory_order_seq_cst);
  } else {
    FullFence();
  }
}

// The waiter's half: after its flag store, before its position load.
void HeavyBarrier(bool asymmetric) {
  if (asymmetric && syscall(SYS_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0) == 0) return;
  // Only reachable when registration failed, in which case the publisher
  // fences too; membarrier cannot fail after a successful registration.
  FullFence();
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

// Who waits for news on one side of a ring. A waiter raises `waiting`
// (then HeavyBarrier, then re-reads the other side's position); the other
// side publishes its position (then LightBarrier, then a plain load of
// `waiting`) and, seeing it raised, takes it down with an exchange. Whoever
// takes the flag down delivers the news, so the publisher pays no atomic
// read-modify-write per message, only when someone waits.
struct WaitPoint {
  std::atomic<bool> waiting{false};
  std::atomic<Parker*> parker{nullptr};  // a blocked Send or Receive
  std::atomic<bool> watched{false};      // an event loop has the eventfd
  LazyEventFd event;

  // The publisher's check, after its position store and LightBarrier.
  void NotifyIfWaiting() {
    if (waiting.load(std::memory_order_relaxed) &&
        waiting.exchange(false, std::memory_order_acq_rel)) {
      Notify();
    }
  }

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

// One direction: a byte ring with one producer and one consumer.
struct Ring {
  Ring(size_t bytes, bool asymmetric)
      : capacity(bytes), mask(bytes - 1), asymmetric_barrier(asymmetric), data(new char[bytes]) {}

  // Read-only after construction: shared by both caches, never moves.
  const size_t capacity;
  const size_t mask;
  const bool asymmetric_barrier;  // see LightBarrier / HeavyBarrier
  const std::unique_ptr<char[]> data;
  // Each word on its own cache line (128 bytes: the adjacent-line
  // prefetcher pairs lines): the hot ones move between the two threads'
  // caches once per message at most, the closing flags never.
  alignas(128) std::atomic<uint64_t> tail{0};  // written by the producer
  alignas(128) std::atomic<uint64_t> head{0};  // written by the consumer
  alignas(128) std::atomic<bool> producer_closed{false};
  std::atomic<bool> consumer_closed{false};
  alignas(128) WaitPoint consumer;  // waits for data
  alignas(128) WaitPoint producer;  // waits for space
};

struct PairState {
  PairState(size_t bytes, size_t max_message, bool asymmetric)
      : a_to_b(bytes, asymmetric), b_to_a(bytes, asymmetric), max_message_size(max_message) {}
  Ring a_to_b;
  Ring b_to_a;
  const size_t max_message_size;
};

// Aligned so that the two ends, used by two threads, share no cache line.
class alignas(128) MemoryEnd final : public ChannelEnd {
 public:
  MemoryEnd(std::shared_ptr<PairState> state, Ring* out, Ring* in)
      : state_(std::move(state)),
        out_(out),
        in_(in),
        max_fragment_(out->capacity / 4 - kHeaderSize),
        max_message_size_(state_->max_message_size) {}
  ~MemoryEnd() override { Close(); }

  absl::Status TrySend(absl::Span<const char> message) override {
    if (closed_) return ClosedError("send");
    if (message.size() > max_message_size_) {
      return absl::ResourceExhaustedError(
          absl::StrCat("channel send: a message of ", message.size(),
                       " bytes exceeds the channel's maximum of ", max_message_size_,
                       " bytes; nothing was sent"));
    }
    // One message at a time: finish the last one first. (Tested inline: the
    // common case has nothing pending and should not build a Status.)
    if (pending_offset_ < pending_.size()) {
      if (absl::Status flushed = TryFlush(); !flushed.ok()) return flushed;
    }
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
        known_tail_ = ring.tail.load(std::memory_order_acquire);
        if (read_position_ == known_tail_) {
          // A close is published after the producer's last record, so a
          // close seen here, with the tail re-read after it, is final.
          if (ring.producer_closed.load(std::memory_order_acquire)) {
            known_tail_ = ring.tail.load(std::memory_order_acquire);
            if (read_position_ == known_tail_) return ClosedWhileReading();
            continue;
          }
          // An event loop's watcher asks for a signal with the next record.
          if (ring.consumer.watched.load(std::memory_order_relaxed)) {
            ring.consumer.event.Drain();
            if (!ArmWaiter(ring.consumer, ring.tail, read_position_, ring.producer_closed,
                           ring.asymmetric_barrier)) {
              continue;
            }
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
    return Watch(ring.producer, ring.head, known_head_, ring.consumer_closed,
                 ring.asymmetric_barrier);
  }
  Readiness receive_readiness() const override {
    Ring& ring = *in_;
    return Watch(ring.consumer, ring.tail, read_position_, ring.producer_closed,
                 ring.asymmetric_barrier);
  }

  absl::Status WaitUntilReady(ChannelDirection direction) override {
    if (closed_) return ClosedError("wait");
    if (direction == ChannelDirection::kReceive) {
      Ring& ring = *in_;
      PublishHead();  // the producer may be waiting for this space
      return ParkUntilNews(ring.consumer, ring.tail, read_position_, ring.producer_closed,
                           ring.asymmetric_barrier);
    }
    Ring& ring = *out_;
    return ParkUntilNews(ring.producer, ring.head, known_head_, ring.consumer_closed,
                         ring.asymmetric_barrier);
  }

  bool HasBufferedMessage() const override {
    return in_->tail.load(std::memory_order_acquire) != read_position_;
  }

  void Close() override {
    if (closed_) return;
    closed_ = true;
    pending_.clear();
    // Each flag first, then take the waiter flag down: a waiter that raised
    // it before is notified here; one that raises it after sees the closed
    // flag (both sides are seq_cst). Stop reading before announcing the end
    // of writing: a peer that sees our end of stream then also sees that its
    // own sends are refused.
    in_->consumer_closed.store(true, kSeqCst);
    if (in_->producer.waiting.exchange(false, kSeqCst)) in_->producer.Notify();
    in_->producer.event.Signal();
    out_->producer_closed.store(true, kSeqCst);
    if (out_->consumer.waiting.exchange(false, kSeqCst)) out_->consumer.Notify();
    out_->consumer.event.Signal();  // a watcher learns of the close in any case
  }

  size_t max_message_size() const override { return max_message_size_; }

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
        known_head_ = ring.head.load(std::memory_order_acquire);
        if (ring.capacity - (write_position_ - known_head_) < skip + record) {
          if (ring.producer.watched.load(std::memory_order_relaxed)) {
            ring.producer.event.Drain();
            if (!ArmWaiter(ring.producer, ring.head, known_head_, ring.consumer_closed,
                           ring.asymmetric_barrier)) {
              continue;
            }
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
      CopyBytes(at + kHeaderSize, bytes, length);
      write_position_ += record;
      // A plain store, not an exchange: an atomic read-modify-write here
      // would stall until the consumer's cache gave the line back.
      ring.tail.store(write_position_, std::memory_order_release);
      LightBarrier(ring.asymmetric_barrier);
      ring.consumer.NotifyIfWaiting();
      return true;
    }
  }

  void PublishHead() {
    if (published_head_ == read_position_) return;
    published_head_ = read_position_;
    in_->head.store(read_position_, std::memory_order_release);
    LightBarrier(in_->asymmetric_barrier);
    in_->producer.NotifyIfWaiting();
  }

  // Raises `point`'s waiter flag for news past `seen` on `word` (the other
  // side's position). False when there is news instead: the word moved, or
  // the other side closed; the caller then retries rather than waits (if a
  // publisher took the flag down meanwhile, its notification still comes and
  // is harmless: a spurious readiness, or a Parker that ParkUntilNews
  // consumes).
  static bool ArmWaiter(WaitPoint& point, const std::atomic<uint64_t>& word, uint64_t seen,
                        const std::atomic<bool>& other_closed, bool asymmetric) {
    // An exchange, not a store: it orders the caller's Parker before the
    // flag for whoever takes the flag down (it reads our write). Still
    // raised from an earlier arm: whoever takes it down has not done so
    // yet, and will notify after this, so this caller is armed already.
    if (point.waiting.exchange(true, kSeqCst)) return true;
    HeavyBarrier(asymmetric);
    if (word.load(kSeqCst) == seen && !other_closed.load(kSeqCst)) return true;
    point.waiting.store(false, kSeqCst);
    return false;
  }

  // Hands out the eventfd for an event loop, armed for the next news; if
  // there is news already (from before the watch), signals it at once.
  static Readiness Watch(WaitPoint& point, const std::atomic<uint64_t>& word, uint64_t seen,
                         const std::atomic<bool>& other_closed, bool asymmetric) {
    const int fd = point.event.Get();
    if (fd < 0) return Readiness{-1, POLLIN};  // Watch() then reports a bad fd
    point.watched.store(true, kSeqCst);
    if (!ArmWaiter(point, word, seen, other_closed, asymmetric)) point.event.Signal();
    return Readiness{fd, POLLIN};
  }

  // Blocks until the other side publishes past `seen` or closes.
  static absl::Status ParkUntilNews(WaitPoint& point, const std::atomic<uint64_t>& word,
                                    uint64_t seen, const std::atomic<bool>& other_closed,
                                    bool asymmetric) {
    Parker parker;
    point.parker.store(&parker, std::memory_order_release);
    if (ArmWaiter(point, word, seen, other_closed, asymmetric) ||
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
  const size_t max_message_size_;
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
    auto state =
        std::make_shared<PairState>(bytes, options.max_message_size, RegisterAsymmetricBarrier());
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
