#include "channels/spsc_rings/spsc_ring_pair.h"

#include <linux/membarrier.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <unistd.h>

#if defined(__x86_64__)
#include <cpuid.h>
#endif

#include <algorithm>
#include <atomic>
#include <bit>
#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "core/channel_counters.h"
#include "core/errors.h"
#include "core/execution_context.h"

namespace taskrt::spsc_rings {
namespace {

constexpr size_t kDefaultBufferBytes = 64 * 1024;
constexpr size_t kMinBufferBytes = 256;
constexpr size_t kMaxBufferBytes = size_t{1} << 30;
constexpr size_t kHeaderSize = 8;
// A record's header is one 64-bit word: the payload length in the low 32
// bits, flags in the high 32. It is also the record's publication: 0 means
// "nothing here yet", so every real header has kPublished set (a
// zero-length message has a non-zero header too).
constexpr uint64_t kPublished = uint64_t{1} << 32;
constexpr uint64_t kMoreFragments = uint64_t{2} << 32;  // the message goes on in the next record
constexpr uint64_t kWrapMarker = ~uint64_t{0};          // "continue at the ring's start"
// The largest message the inline fast paths copy (CopyBytes without memcpy).
constexpr size_t kSmallMessage = 16;
constexpr std::memory_order kSeqCst = std::memory_order_seq_cst;

size_t RoundUp8(size_t n) { return (n + 7) & ~size_t{7}; }

// The header word at `offset` (a multiple of 8) of a ring's data. Headers
// are only ever accessed atomically; payload bytes never are (they are
// ordered by the header's release store and acquire load).
inline std::atomic_ref<uint64_t> HeaderAt(char* data, size_t offset) {
  return std::atomic_ref<uint64_t>(*reinterpret_cast<uint64_t*>(data + offset));
}

// memcpy without the library call for the small messages that dominate
// streams (the call and its size dispatch cost more than the copy).
inline void CopyBytes(char* to, const char* from, size_t n) {
  if (n == 8) {  // the commonest size: one store, not two overlapping ones
    uint64_t word;
    std::memcpy(&word, from, 8);
    std::memcpy(to, &word, 8);
  } else if (n >= 8 && n <= 16) {
    uint64_t first, last;  // two overlapping words cover 8..16 bytes
    std::memcpy(&first, from, 8);
    std::memcpy(&last, from + n - 8, 8);
    std::memcpy(to, &first, 8);
    std::memcpy(to + n - 8, &last, 8);
  } else if (n >= 4 && n < 8) {
    uint32_t first, last;  // two overlapping 32-bit words cover 4..7 bytes
    std::memcpy(&first, from, 4);
    std::memcpy(&last, from + n - 4, 4);
    std::memcpy(to, &first, 4);
    std::memcpy(to + n - 4, &last, 4);
  } else if (n != 0) {
    std::memcpy(to, from, n);
  }
}

// CopyBytes for n <= 16 (kSmallMessage), with no call at all.
inline void CopySmall(char* to, const char* from, size_t n) {
  if (n >= 4) {
    CopyBytes(to, from, n);  // 4..16: word stores only
  } else if (n != 0) {
    // 1..3 bytes: first, middle and last cover every length.
    to[0] = from[0];
    to[n / 2] = from[n / 2];
    to[n - 1] = from[n - 1];
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

// How far ahead of its write position the producer claims ring lines for
// writing. The consumer read them a lap ago, so its cache may still hold
// them, and a store to such a line waits for the other core to drop its
// copy (a few hundred cycles between the cores of these virtual machines;
// stores commit in order, so one such wait stalls every later store). The
// claim must start that wait early enough to be over when the producer gets
// there: 512 bytes is about 32 small records ahead. (A read prefetch would
// not do: it fetches the line shared, and the store still has to wait.)
constexpr size_t kWritePrefetchDistance = 512;

// Whether the CPU claims lines for writing on a prefetch (x86-64's
// PREFETCHW, CPUID 0x80000001 ECX bit 8; AArch64's PRFM PSTL1KEEP always).
bool CpuHasWritePrefetch() {
#if defined(__x86_64__)
  static const bool supported = [] {
    unsigned eax, ebx, ecx, edx;
    return __get_cpuid(0x80000001, &eax, &ebx, &ecx, &edx) != 0 && (ecx & (1u << 8)) != 0;
  }();
  return supported;
#elif defined(__aarch64__)
  return true;
#else
  return false;
#endif
}

// Asks for the line at `address` in a writable state, without waiting.
inline void PrefetchForWrite(const char* address) {
#if defined(__x86_64__)
  // GCC emits PREFETCHW for __builtin_prefetch(p, 1) only with -mprfchw;
  // without it, a read prefetch.
  asm volatile("prefetchw %0" : : "m"(*address));
#else
  __builtin_prefetch(address, 1, 3);
#endif
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

// WaitPoint::watched counts who waits on the eventfd.
constexpr uint32_t kLoopWatcher = 1;
constexpr uint32_t kSelectWatcher = 2;

// Who waits for news on one side of a ring. A waiter raises `waiting`
// (then HeavyBarrier, then re-reads the word the other side publishes: the
// header at the consumer's read position, or the head); the other side
// publishes (then LightBarrier, then a plain load of `waiting`) and, seeing
// it raised, takes it down with an exchange. Whoever takes the flag down
// delivers the news, so the publisher pays no atomic read-modify-write per
// message, only when someone waits.
struct WaitPoint {
  std::atomic<bool> waiting{false};
  std::atomic<Parker*> parker{nullptr};  // a blocked Send or Receive
  // Who waits on the eventfd: kLoopWatcher once an event loop has it (for
  // good), plus kSelectWatcher for each Select() holding it for a while.
  std::atomic<uint32_t> watched{0};
  LazyEventFd event;

  // The publisher's check, after its publishing store and LightBarrier.
  // True when it delivered news to a waiter.
  bool NotifyIfWaiting() {
    return waiting.load(std::memory_order_relaxed) && TakeFlagAndNotify();
  }
  // Whoever takes the raised flag down delivers the news; true if this did.
  bool TakeFlagAndNotify() {
    if (!waiting.exchange(false, std::memory_order_acq_rel)) return false;
    Notify();
    return true;
  }

  [[gnu::noinline]] void Notify() {
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

struct FreeDeleter {
  void operator()(char* p) const { std::free(p); }
};

using RingMemory = std::unique_ptr<char, FreeDeleter>;

// Ring memory, aligned to cache-line pairs; null when the system refuses
// it. Only the first header needs to start as 0 ("nothing yet"): every
// later header the consumer reads was written by the producer first (the
// zero it stores ahead of each record, or the record at the ring's start
// that a wrap marker points to).
RingMemory AllocateRing(size_t bytes) {
  char* data = static_cast<char*>(std::aligned_alloc(128, bytes));  // bytes: a power of two >= 256
  if (data == nullptr) return nullptr;
  HeaderAt(data, 0).store(0, std::memory_order_relaxed);
  return RingMemory(data);
}

// One direction: a byte ring with one producer and one consumer.
//
// The records themselves are the producer's publication (FastForward-style):
// the producer writes a record's payload, stores a zero header just past
// the record (space it owns: it keeps kHeaderSize bytes of slack ahead of
// every record), then release-stores the record's header. The consumer
// acquire-loads the header at its read position: 0 means the ring is
// empty. So there is no shared tail: the consumer touches only the lines
// its records are in (several small records to a line), and the producer's
// position never leaves the producer's cache; the consumer looks at the
// producer's closed flag only when it finds nothing.
struct Ring {
  // `memory`: `bytes` from AllocateRing().
  Ring(RingMemory memory, size_t bytes, bool asymmetric, bool write_prefetch)
      : capacity(bytes),
        mask(bytes - 1),
        asymmetric_barrier(asymmetric),
        write_prefetch_distance(write_prefetch ? std::min(kWritePrefetchDistance, bytes / 4) : 0),
        data(std::move(memory)) {}

  // Read-only after construction: shared by both caches, never moves.
  const size_t capacity;
  const size_t mask;
  const bool asymmetric_barrier;  // see LightBarrier / HeavyBarrier
  const size_t write_prefetch_distance;  // 0: no write prefetch (see kWritePrefetchDistance)
  const RingMemory data;
  // Each word on its own cache line (128 bytes: the adjacent-line
  // prefetcher pairs lines): the head moves between the two threads' caches
  // once per quarter ring at most, the closing flags never.
  alignas(128) std::atomic<uint64_t> head{0};  // written by the consumer
  // The consumer's exact position, stored at every receive; read by a
  // producer only when it is about to wait for space.
  alignas(128) std::atomic<uint64_t> read_position{0};
  alignas(128) std::atomic<bool> producer_closed{false};
  std::atomic<bool> consumer_closed{false};
  alignas(128) WaitPoint consumer;  // waits for data
  alignas(128) WaitPoint producer;  // waits for space
};

// The news a consumer waits for: a record (or wrap marker) published at its
// read position `position`. seq_cst, as RingEnd::ArmWaiter's re-check needs.
auto RecordArrived(const Ring& ring, uint64_t position) {
  return [data = ring.data.get(), offset = position & ring.mask] {
    return HeaderAt(data, offset).load(kSeqCst) != 0;
  };
}
// The news a producer waits for: the consumer read past `seen` (its exact
// position, which is at least the head it publishes).
auto SpaceFreed(const Ring& ring, uint64_t seen) {
  return [&position = ring.read_position, seen] { return position.load(kSeqCst) != seen; };
}

struct PairState {
  PairState(RingMemory a_to_b_memory, RingMemory b_to_a_memory, size_t bytes, size_t max_message,
            bool asymmetric, bool write_prefetch)
      : a_to_b(std::move(a_to_b_memory), bytes, asymmetric, write_prefetch),
        b_to_a(std::move(b_to_a_memory), bytes, asymmetric, write_prefetch),
        max_message_size(max_message) {}
  Ring a_to_b;
  Ring b_to_a;
  const size_t max_message_size;
};

// Aligned so that the two ends, used by two threads, share no cache line.
class alignas(128) RingEnd final : public ChannelEnd {
 public:
  RingEnd(std::shared_ptr<PairState> state, Ring* out, Ring* in)
      : state_(std::move(state)),
        out_(out),
        in_(in),
        max_fragment_(out->capacity / 4 - kHeaderSize),
        max_message_size_(state_->max_message_size),
        max_record_message_(std::min(max_fragment_, max_message_size_)),
        max_fast_message_(std::min(kSmallMessage, max_record_message_)) {
    set_may_hold_unflushed(false);  // only while pending_ holds a large message's pieces
  }
  ~RingEnd() override { Close(); }

  // The fast paths handle a message of at most kSmallMessage bytes that
  // fits without wrapping, with nothing pending or reassembling and both
  // sides open. They build no Status beyond OK / WouldBlock and make no
  // call but tail calls, so they need no stack frame; everything else is in
  // the *Slow functions, out of line (an error message's StrCat needs a
  // large frame), which handle the fast paths' cases too.
  absl::Status TrySend(absl::Span<const char> message) override {
    Ring& ring = *out_;
    const size_t length = message.size();
    const size_t record = kHeaderSize + RoundUp8(length);
    const size_t offset = write_position_ & ring.mask;
    // The record and the zero header past it, before the ring's end and
    // inside the space known to be free.
    if (closed_ || length > max_fast_message_ || !pending_.empty() ||
        ring.capacity - offset < record + kHeaderSize ||
        ring.capacity - (write_position_ - known_head_) < record + kHeaderSize ||
        ring.consumer_closed.load(std::memory_order_acquire)) [[unlikely]] {
      return TrySendSlow(message);
    }
    const uint64_t next = write_position_ + record;
    CopySmall(ring.data.get() + offset + kHeaderSize, message.data(), length);
    StoreHeaders(ring, offset, next, length | kPublished);
    counts_.Sent(length);
    if (AdvanceAndCheckWaiter(ring, next)) [[unlikely]] return NotifyConsumerAfterSend();
    return absl::OkStatus();
  }

  absl::Status TryFlush() override {
    if (!closed_ && pending_.empty()) [[likely]] return absl::OkStatus();
    absl::Status flushed = TryFlushSlow();
    if (IsWouldBlock(flushed)) counts_.sends_blocked.Add();
    return flushed;
  }

  absl::StatusOr<size_t> TryReceive(absl::Span<char> out) override {
    if (!closed_ && !reassembling_) [[likely]] {
      Ring& ring = *in_;
      char* const data = ring.data.get();
      const size_t offset = read_position_ & ring.mask;
      const uint64_t header = HeaderAt(data, offset).load(std::memory_order_acquire);
      const size_t length = static_cast<uint32_t>(header);
      // Not empty, not a fragment, not a wrap marker (which has every bit
      // set), and small.
      if (header != 0 && (header & kMoreFragments) == 0 && length <= kSmallMessage) [[likely]] {
        CopySmall(out.data(), data + offset + kHeaderSize, std::min(out.size(), length));
        read_position_ += kHeaderSize + RoundUp8(length);
        counts_.Received(length);
        if (MustPublishHead(ring)) [[unlikely]] return PublishHeadAfterReceive(length);
        return length;
      }
      // Empty, open and unwatched: TryReceiveSlow's first answer, without
      // its call (a same-thread round trip asks this twice per trip).
      if (header == 0 && !ring.producer_closed.load(std::memory_order_acquire) &&
          !ring.consumer.watched.load(std::memory_order_relaxed)) {
        counts_.receives_blocked.Add();
        return WouldBlock();
      }
    }
    return TryReceiveSlow(out);
  }

 private:
  [[gnu::noinline]] absl::Status NotifyConsumerAfterSend() {
    if (out_->consumer.TakeFlagAndNotify()) counts_.wakeups_sent.Add();
    return absl::OkStatus();
  }

  [[gnu::noinline]] absl::StatusOr<size_t> PublishHeadAfterReceive(size_t length) {
    PublishHead();
    return length;
  }

  [[gnu::noinline]] absl::Status TrySendSlow(absl::Span<const char> message) {
    if (closed_) return ChannelEndClosedError("send");
    if (message.size() > max_message_size_) {
      return ChannelMessageTooLargeError(message.size(), max_message_size_);
    }
    // One message at a time: finish the last one first. (Tested inline: the
    // common case has nothing pending and should not build a Status.)
    if (pending_offset_ < pending_.size()) {
      if (absl::Status flushed = TryFlush(); !flushed.ok()) return flushed;
    }
    if (out_->consumer_closed.load(std::memory_order_acquire)) return ChannelPeerClosedError();
    if (message.size() <= max_fragment_) {
      if (!TryWriteRecord(message.data(), message.size(), 0)) {
        counts_.sends_blocked.Add();
        return WouldBlock();
      }
      counts_.Sent(message.size());
      return absl::OkStatus();
    }
    // Large: accepted whole, pushed in pieces.
    HoldPending(message);
    absl::Status flushed = TryFlushSlow();
    if (!flushed.ok() && !IsWouldBlock(flushed)) return flushed;
    counts_.Sent(message.size());
    return absl::OkStatus();
  }

  [[gnu::noinline]] absl::Status TryFlushSlow() {
    if (closed_) return ChannelEndClosedError("flush");
    while (pending_offset_ < pending_.size()) {
      if (out_->consumer_closed.load(std::memory_order_acquire)) {
        DropPending();
        return ChannelPeerClosedError();
      }
      const size_t left = pending_.size() - pending_offset_;
      const size_t piece = std::min(left, max_fragment_);
      if (!TryWriteRecord(pending_.data() + pending_offset_, piece,
                          piece < left ? kMoreFragments : 0)) {
        return WouldBlock();
      }
      pending_offset_ += piece;
    }
    if (!pending_.empty()) DropPending();
    return absl::OkStatus();
  }

  [[gnu::noinline]] absl::StatusOr<size_t> TryReceiveSlow(absl::Span<char> out) {
    if (closed_) return ChannelEndClosedError("receive");
    Ring& ring = *in_;
    char* const data = ring.data.get();
    while (true) {
      const size_t offset = read_position_ & ring.mask;
      // Acquire: the payload (and the zero header past it) was written
      // before the producer's release store of this word.
      const uint64_t header = HeaderAt(data, offset).load(std::memory_order_acquire);
      if (header == 0) {
        // Nothing yet. A close is published after the producer's last
        // record, so a close seen here, with the header re-read after it,
        // is final.
        if (ring.producer_closed.load(std::memory_order_acquire)) {
          if (HeaderAt(data, offset).load(std::memory_order_acquire) == 0) {
            return ClosedWhileReading();
          }
          continue;
        }
        // An event loop's watcher asks for a signal with the next record.
        if (!ArmWatcher(ring.consumer, RecordArrived(ring, read_position_), ring.producer_closed,
                        ring.asymmetric_barrier)) {
          continue;
        }
        counts_.receives_blocked.Add();
        return WouldBlock();
      }
      if (header == kWrapMarker) {
        read_position_ += ring.capacity - offset;
        continue;
      }
      const size_t length = static_cast<uint32_t>(header);
      const char* payload = data + offset + kHeaderSize;
      const bool more = (header & kMoreFragments) != 0;
      std::optional<size_t> delivered;
      if (more || reassembling_) [[unlikely]] {
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
      if (MustPublishHead(ring)) PublishHead();
      if (delivered.has_value()) {
        counts_.Received(*delivered);
        return *delivered;
      }
    }
  }

 public:
  Readiness send_readiness() const override {
    return WatchFor(ChannelDirection::kSend, /*for_select=*/false);
  }
  Readiness receive_readiness() const override {
    return WatchFor(ChannelDirection::kReceive, /*for_select=*/false);
  }

  // A Select() signals through the eventfd only while it holds it, so the
  // same-thread exchanges that follow pay no system call.
  Readiness AcquireReadiness(ChannelDirection direction) override {
    return WatchFor(direction, /*for_select=*/true);
  }
  void ReleaseReadiness(ChannelDirection direction) override {
    WaitPoint& point =
        direction == ChannelDirection::kSend ? out_->producer : in_->consumer;
    point.watched.fetch_sub(kSelectWatcher, kSeqCst);
  }

  // A large message is held whole until its first piece is in the ring.
  bool TryTakeBackUnsent() override {
    if (pending_.empty() || pending_offset_ != 0) return false;
    counts_.Unsent(pending_.size());
    DropPending();
    return true;
  }

  using ChannelEnd::WaitUntilReady;
  absl::Status WaitUntilReady(ChannelDirection direction, absl::Time deadline) override {
    if (closed_) return ChannelEndClosedError("wait");
    if (direction == ChannelDirection::kReceive) {
      Ring& ring = *in_;
      PublishHead();  // the producer may be waiting for this space
      return ParkUntilNews(ring.consumer, RecordArrived(ring, read_position_), ring.producer_closed,
                           ring.asymmetric_barrier, deadline);
    }
    Ring& ring = *out_;
    // The head may lag: the consumer's exact position, if it moved, is news.
    const uint64_t seen = known_head_;
    TakeHead(ring.read_position);
    if (known_head_ != seen) return absl::OkStatus();
    absl::Status waited = ParkUntilNews(ring.producer, SpaceFreed(ring, known_head_),
                                        ring.consumer_closed, ring.asymmetric_barrier, deadline);
    TakeHead(ring.read_position);
    return waited;
  }

  bool ReceiveReady() override {
    if (closed_) return false;
    Ring& ring = *in_;
    char* const data = ring.data.get();
    while (true) {
      const size_t offset = read_position_ & ring.mask;
      const uint64_t header = HeaderAt(data, offset).load(std::memory_order_acquire);
      if (header == kWrapMarker) {
        read_position_ += ring.capacity - offset;
        continue;
      }
      // A whole message, or a piece of one whose rest is being sent.
      if (header != 0) return true;
      // Nothing waiting: the reader is about to idle, so hand the producer
      // the space read so far, and arm the watcher as TryReceive does.
      PublishHead();
      if (ring.producer_closed.load(std::memory_order_acquire)) return false;
      if (!ArmWatcher(ring.consumer, RecordArrived(ring, read_position_), ring.producer_closed,
                      ring.asymmetric_barrier)) {
        continue;
      }
      return false;
    }
  }

  void Close() override {
    if (closed_) return;
    closed_ = true;
    DropPending();
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

  ChannelMetrics metrics() const override { return counts_.Snapshot(); }
  void LinkForTraceWith(RingEnd& peer) { LinkForTrace(counts_, peer.counts_); }

 private:
  absl::Status ClosedWhileReading() {
    if (reassembling_) {
      reassembling_ = false;
      reassembly_.clear();
      return absl::DataLossError("channel receive: the peer closed the channel mid-message");
    }
    return ChannelDrainedError();
  }

  // pending_ and ChannelEnd::may_hold_unflushed() change together: Send()
  // skips TryFlush() while nothing is pending.
  void HoldPending(absl::Span<const char> message) {
    pending_.assign(message.data(), message.size());
    pending_offset_ = 0;
    set_may_hold_unflushed(true);
  }
  void DropPending() {
    pending_.clear();
    pending_.shrink_to_fit();
    pending_offset_ = 0;
    set_may_hold_unflushed(false);
  }

  // Writes one record if the ring has room; publishes it and wakes the
  // consumer. False when full (after arming the send watcher, if any).
  // Inlined into TrySend: while the consumer holds the ring's line, every
  // store (a callee's register pushes too) waits in the store buffer.
  [[gnu::always_inline]] bool TryWriteRecord(const char* bytes, size_t length, uint64_t flags) {
    Ring& ring = *out_;
    char* const data = ring.data.get();
    const size_t record = kHeaderSize + RoundUp8(length);
    const size_t offset = write_position_ & ring.mask;
    const size_t to_end = ring.capacity - offset;
    const size_t skip = to_end < record ? to_end : 0;
    // The record, the unused end of the ring before it (if it wraps), and
    // the zero header just past it: all of it must be free.
    const size_t needed = skip + record + kHeaderSize;
    if (ring.capacity - (write_position_ - known_head_) < needed) [[unlikely]] {
      if (!MakeRoom(needed)) return false;
    }
    const uint64_t start = write_position_ + skip;
    const uint64_t next = start + record;
    const size_t start_offset = start & ring.mask;
    CopyBytes(data + start_offset + kHeaderSize, bytes, length);
    StoreHeaders(ring, start_offset, next, length | kPublished | flags);
    // Wrapping: the marker is published last, so a consumer that follows
    // it to the ring's start finds the record there (not a stale header
    // from the last lap).
    if (skip != 0) [[unlikely]] HeaderAt(data, offset).store(kWrapMarker, std::memory_order_release);
    if (AdvanceAndCheckWaiter(ring, next) && ring.consumer.TakeFlagAndNotify()) {
      counts_.wakeups_sent.Add();
    }
    return true;
  }

  // Publishes the record written at `start_offset` whose follower starts
  // at `next`: first the zero header past it (the consumer stops there
  // until the follower is published; the release store below orders this
  // zero before it), then the record's own header.
  [[gnu::always_inline]] static void StoreHeaders(Ring& ring, size_t start_offset, uint64_t next,
                                                  uint64_t header) {
    char* const data = ring.data.get();
    HeaderAt(data, next & ring.mask).store(0, std::memory_order_relaxed);
    HeaderAt(data, start_offset).store(header, std::memory_order_release);
  }

  // After the publishing stores: moves the write position to `next`, claims
  // a line ahead of it for writing (kWritePrefetchDistance; only inside the
  // space known to be free: a line the consumer has yet to read stays with
  // it), and says whether the consumer waits for news. The publishing store is
  // the header at the consumer's read position if it is caught up; a
  // consumer about to wait re-reads that header after raising its flag
  // (ArmWaiter), so one of the two sees the other.
  [[gnu::always_inline]] bool AdvanceAndCheckWaiter(Ring& ring, uint64_t next) {
    write_position_ = next;
    const size_t ahead = ring.write_prefetch_distance;
    if (ahead != 0 && next + ahead + 64 - known_head_ <= ring.capacity) {
      PrefetchForWrite(ring.data.get() + ((next + ahead) & ring.mask));
    }
    LightBarrier(ring.asymmetric_barrier);
    return ring.consumer.waiting.load(std::memory_order_relaxed);
  }

  // The ring looked too full for `needed` more bytes: re-reads the head.
  // False when it is full (after arming the send watcher, if any).
  [[gnu::noinline]] bool MakeRoom(size_t needed) {
    Ring& ring = *out_;
    while (true) {
      TakeHead(ring.head);
      if (ring.capacity - (write_position_ - known_head_) >= needed) return true;
      if (!ring.producer.watched.load(std::memory_order_relaxed)) return false;
      // About to arm the watcher: the exact position may have room.
      TakeHead(ring.read_position);
      if (ring.capacity - (write_position_ - known_head_) >= needed) return true;
      if (ArmWatcher(ring.producer, SpaceFreed(ring, known_head_), ring.consumer_closed,
                     ring.asymmetric_barrier)) {
        return false;
      }
      // A close is final: the caller's next send reports it.
      if (ring.consumer_closed.load(std::memory_order_acquire)) return false;
    }
  }

  // After a receive: records the exact read position for a producer about
  // to sleep, and says whether to publish the head. The head is published
  // lazily, once a quarter of the ring was read: a streaming producer needs
  // it only when it runs out of space, and with less than a quarter
  // unpublished a caught-up reader always leaves it room. A producer that
  // waits for space gets it at once: it raises its flag, then reads the
  // exact position (a Dekker pair with the store and load here).
  [[gnu::always_inline]] bool MustPublishHead(Ring& ring) {
    ring.read_position.store(read_position_, std::memory_order_release);
    LightBarrier(ring.asymmetric_barrier);
    return read_position_ - published_head_ >= ring.capacity / 4 ||
           ring.producer.waiting.load(std::memory_order_relaxed);
  }

  // Space up to `position` (the head, or the exact read position) is free.
  void TakeHead(const std::atomic<uint64_t>& position) {
    known_head_ = std::max(known_head_, position.load(std::memory_order_acquire));
  }

  void PublishHead() {
    if (published_head_ == read_position_) return;
    published_head_ = read_position_;
    in_->head.store(read_position_, std::memory_order_release);
    LightBarrier(in_->asymmetric_barrier);
    if (in_->producer.NotifyIfWaiting()) counts_.wakeups_sent.Add();
  }

  // Raises `point`'s waiter flag unless there is news (`has_news()`, or the
  // other side closed); false when there is news instead, and the caller
  // then retries rather than waits (if a publisher took the flag down
  // meanwhile, its notification still comes and is harmless: a spurious
  // readiness, or a Parker that ParkUntilNews consumes).
  //
  // No lost wake-up: the publisher makes its news visible (the consumer's
  // news: the record header at the consumer's read position, or the wrap
  // marker there; the producer's news: the head), then LightBarrier, then
  // loads `waiting`. The waiter stores `waiting`, then HeavyBarrier, then
  // re-reads the same word through `has_news`. Between the two barriers
  // (membarrier(2) against a compiler barrier, or two full fences), at
  // least one side sees the other's store: the waiter sees the news and
  // does not wait, or the publisher sees the flag and notifies.
  template <typename HasNews>
  static bool ArmWaiter(WaitPoint& point, HasNews has_news, const std::atomic<bool>& other_closed,
                        bool asymmetric) {
    // An exchange, not a store: it orders the caller's Parker before the
    // flag for whoever takes the flag down (it reads our write). Still
    // raised from an earlier arm: whoever takes it down has not done so
    // yet, and will notify after this, so this caller is armed already.
    if (point.waiting.exchange(true, kSeqCst)) return true;
    HeavyBarrier(asymmetric);
    if (!has_news() && !other_closed.load(kSeqCst)) return true;
    point.waiting.store(false, kSeqCst);
    return false;
  }

  // For an event loop's watcher, if any (true otherwise): clears a stale
  // signal and arms the flag for the next news. False when there is news
  // already, which the caller takes in its next step; if that news is the
  // other side's close, the eventfd is signalled again, since the Drain may
  // have taken the close's only signal and the watcher must still hear of
  // it (a task's end, say).
  template <typename HasNews>
  static bool ArmWatcher(WaitPoint& point, HasNews has_news, const std::atomic<bool>& other_closed,
                         bool asymmetric) {
    if (!point.watched.load(std::memory_order_relaxed)) return true;
    point.event.Drain();
    if (ArmWaiter(point, has_news, other_closed, asymmetric)) return true;
    if (other_closed.load(kSeqCst)) point.event.Signal();
    return false;
  }

  // Hands out the eventfd for an event loop, armed for the next news; if
  // there is news already (from before the watch), signals it at once.
  // The eventfd of `direction`'s wait point, armed (see Watch).
  Readiness WatchFor(ChannelDirection direction, bool for_select) const {
    if (direction == ChannelDirection::kSend) {
      Ring& ring = *out_;
      return Watch(ring.producer, SpaceFreed(ring, known_head_), ring.consumer_closed,
                   ring.asymmetric_barrier, for_select);
    }
    Ring& ring = *in_;
    return Watch(ring.consumer, RecordArrived(ring, read_position_), ring.producer_closed,
                 ring.asymmetric_barrier, for_select);
  }

  template <typename HasNews>
  static Readiness Watch(WaitPoint& point, HasNews has_news, const std::atomic<bool>& other_closed,
                         bool asymmetric, bool for_select) {
    const int fd = point.event.Get();
    if (fd < 0) return Readiness{-1, POLLIN};  // Watch() then reports a bad fd
    if (for_select) {
      point.watched.fetch_add(kSelectWatcher, kSeqCst);
    } else {
      point.watched.fetch_or(kLoopWatcher, kSeqCst);
    }
    if (!ArmWaiter(point, has_news, other_closed, asymmetric)) point.event.Signal();
    return Readiness{fd, POLLIN};
  }

  // Blocks until the other side has news (`has_news()`) or closes, or
  // until `deadline` (kDeadlineExceeded).
  template <typename HasNews>
  static absl::Status ParkUntilNews(WaitPoint& point, HasNews has_news,
                                    const std::atomic<bool>& other_closed, bool asymmetric,
                                    absl::Time deadline) {
    Parker parker;
    point.parker.store(&parker, std::memory_order_release);
    if (ArmWaiter(point, has_news, other_closed, asymmetric) ||
        point.parker.exchange(nullptr, std::memory_order_acq_rel) != &parker) {
      // Armed, or a notifier (woken by an event-loop watcher's bit) took
      // the Parker already: its Unpark must be consumed before `parker`
      // goes away.
      if (parker.ParkUntil(deadline)) return absl::OkStatus();
      // Timed out. Take the Parker back with the exchange a notifier takes
      // it with; if a notifier has it already, its Unpark is on the way and
      // must be consumed before `parker` goes away. The raised flag may
      // stay: a later notification finds no Parker (a spurious readiness
      // at most), and the next wait counts as armed by it.
      if (point.parker.exchange(nullptr, std::memory_order_acq_rel) != &parker) {
        parker.Park();
        return absl::OkStatus();
      }
      return absl::DeadlineExceededError("channel: deadline exceeded while waiting");
    }
    return absl::OkStatus();
  }

  const std::shared_ptr<PairState> state_;
  Ring* const out_;
  Ring* const in_;
  const size_t max_fragment_;
  const size_t max_message_size_;
  const size_t max_record_message_;  // the largest message sent as one record
  const size_t max_fast_message_;    // the largest TrySend's fast path takes (<= the maximum)
  bool closed_ = false;
  // Producer side of out_.
  uint64_t write_position_ = 0;
  uint64_t known_head_ = 0;  // last head read; space is at least this much
  std::string pending_;      // a large message's pieces not yet in the ring
  size_t pending_offset_ = 0;
  // Consumer side of in_.
  uint64_t read_position_ = 0;
  uint64_t published_head_ = 0;
  bool reassembling_ = false;
  std::string reassembly_;
  ChannelEndCounters counts_;  // metrics()
};

}  // namespace

absl::StatusOr<ChannelPair> CreatePair(const ChannelOptions& options, absl::string_view label) {
  const size_t requested = options.buffer_bytes == 0 ? kDefaultBufferBytes : options.buffer_bytes;
  if (requested < kMinBufferBytes || requested > kMaxBufferBytes) {
    return absl::InvalidArgumentError(absl::StrCat(label, ": buffer_bytes ", requested,
                                                   " is outside [", kMinBufferBytes, ", ",
                                                   kMaxBufferBytes, "]"));
  }
  if (options.max_message_size > std::numeric_limits<uint32_t>::max() - 8) {
    return absl::InvalidArgumentError(absl::StrCat(label, ": max_message_size ",
                                                   options.max_message_size,
                                                   " does not fit the 32-bit record length"));
  }
  const size_t bytes = std::bit_ceil(requested);
  RingMemory a_to_b = AllocateRing(bytes);
  RingMemory b_to_a = AllocateRing(bytes);
  if (a_to_b == nullptr || b_to_a == nullptr) {
    return absl::ResourceExhaustedError(
        absl::StrCat(label, ": the system refused the memory for two rings of ", bytes,
                     " bytes (buffer_bytes ", requested, ")"));
  }
  auto state = std::make_shared<PairState>(std::move(a_to_b), std::move(b_to_a), bytes,
                                           options.max_message_size, RegisterAsymmetricBarrier(),
                                           CpuHasWritePrefetch());
  auto task_end = std::make_unique<RingEnd>(state, &state->a_to_b, &state->b_to_a);
  auto owner_end = std::make_unique<RingEnd>(state, &state->b_to_a, &state->a_to_b);
  task_end->LinkForTraceWith(*owner_end);
  return ChannelPair{.task_end = std::move(task_end), .owner_end = std::move(owner_end)};
}

namespace {

class RingPairFactory final : public ChannelFactory {
 public:
  explicit RingPairFactory(std::string name)
      : name_(std::move(name)), label_(absl::StrCat(name_, " channel")) {}

  absl::StatusOr<ChannelPair> CreatePair(const ChannelOptions& options) override {
    return spsc_rings::CreatePair(options, label_);
  }

  std::string name() const override { return name_; }

 private:
  const std::string name_;
  const std::string label_;
};

}  // namespace

std::unique_ptr<ChannelFactory> NewFactory(std::string name) {
  return std::make_unique<RingPairFactory>(std::move(name));
}

}  // namespace taskrt::spsc_rings
