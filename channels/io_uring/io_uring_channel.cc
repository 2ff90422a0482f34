#include "channels/io_uring/io_uring_channel.h"

#include <liburing.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <limits>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "channels/framing/framing.h"
#include "channels/io_uring/io_uring_channel_internal.h"
#include "core/errors.h"

namespace taskrt {
namespace {

using io_uring_channel_internal::EndStats;

// Sizes; see the header for the reasoning.
constexpr unsigned kSqEntries = 8;    // at most 3 SQEs are ever queued at once
// >= 16 data + 1 final receive + send + 2 no-ops; a parked end's poll may
// post more, and an overflow is survivable (IORING_FEAT_NODROP; a multishot
// request that cannot post ends, and is re-armed).
constexpr unsigned kCqEntries = 64;
constexpr unsigned kBufferCount = 16;  // a power of two: the buffer ring's size
constexpr size_t kBufferSize = 4096;
constexpr uint16_t kBufferGroup = 0;
constexpr size_t kBufferRingBytes = 4096;  // the ring of buffer descriptors: one page
constexpr size_t kRegionBytes = kBufferRingBytes + kBufferCount * kBufferSize;
constexpr size_t kBatchBytes = 64 * 1024;
constexpr size_t kMaxSendBytes = size_t{1} << 30;  // per SQE; the length field is 32-bit
constexpr size_t kInitialInputSize = 16 * 1024;
constexpr size_t kShrinkAbove = 256 * 1024;
// Unread bytes held by an end (with whole messages among them) at which its
// receive is parked, and below which it resumes; see KeepReceiving().
constexpr size_t kParkAt = 256 * 1024;
// Unread bytes at which an end stops draining its socket; see DrainSocket().
constexpr size_t kDrainLimit = 1024 * 1024;

static_assert(kBufferCount * sizeof(io_uring_buf) <= kBufferRingBytes,
              "buffer descriptors must fit the first page");
static_assert((kBufferCount & (kBufferCount - 1)) == 0, "buffer ring size must be a power of two");

// user_data of every request an end submits.
enum Tag : uint64_t {
  kReceiveTag = 1,
  kSendTag = 2,
  kCancelTag = 3,
  kNopTag = 4,
  kWatchTag = 5,
};

std::string ErrnoText(int error_number) {
  char buffer[128];
  return strerror_r(error_number, buffer, sizeof buffer);
}

// Errors that mean "this kernel or its sandbox will not do io_uring".
bool IsRefusal(int error_number) {
  return error_number == ENOSYS || error_number == EPERM || error_number == EACCES ||
         error_number == EINVAL || error_number == EOPNOTSUPP;
}

absl::Status RefusedOrError(absl::string_view operation, int error_number) {
  if (IsRefusal(error_number)) {
    return absl::UnavailableError(
        absl::StrCat("io_uring: ", operation, " refused: ", ErrnoText(error_number)));
  }
  return ErrnoError(absl::StrCat("io_uring channel: ", operation), error_number);
}

#if defined(TASKRT_TSAN)
extern "C" void __tsan_acquire(void* addr);
extern "C" void __tsan_release(void* addr);
#endif

// liburing maps and unmaps a ring with raw system calls, which
// ThreadSanitizer does not see: when a closed ring's addresses come back for
// a new ring, it pairs the new ring's accesses with the old ring's, from
// other threads, and reports races that cannot happen. A release before
// the unmapping and an acquire after the mapping, keyed by the mapped
// addresses, give it the order the kernel guarantees. Nothing without TSAN.
void TsanRingMapped([[maybe_unused]] io_uring* ring) {
#if defined(TASKRT_TSAN)
  __tsan_acquire(ring->sq.ring_ptr);
  __tsan_acquire(ring->cq.ring_ptr);
  __tsan_acquire(ring->sq.sqes);
#endif
}
void ExitRing(io_uring* ring) {
#if defined(TASKRT_TSAN)
  __tsan_release(ring->sq.ring_ptr);
  __tsan_release(ring->cq.ring_ptr);
  __tsan_release(ring->sq.sqes);
#endif
  io_uring_queue_exit(ring);
}

// Sets up `ring` with the channel's sizes. Returns 0 or -errno.
//
// Cooperative task running where the kernel has it (Linux 5.19): completion
// work queued for a thread that is running in user space does not
// interrupt it (an inter-processor interrupt costs tens of microseconds on
// virtual machines); the kernel flags it in the shared ring instead
// (IORING_SQ_TASKRUN), and io_uring_peek_cqe() enters the kernel to run it
// when it sees the flag. A sleeping thread is still woken. `*cooperative`
// says which mode the ring got.
int InitRing(io_uring* ring, unsigned* features, bool* cooperative) {
  io_uring_params params{};
  params.flags = IORING_SETUP_CQSIZE | IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG;
  params.cq_entries = kCqEntries;
  int rc = io_uring_queue_init_params(kSqEntries, ring, &params);
  *cooperative = rc == 0;
  if (rc == -EINVAL) {
    params = io_uring_params{};
    params.flags = IORING_SETUP_CQSIZE;
    params.cq_entries = kCqEntries;
    rc = io_uring_queue_init_params(kSqEntries, ring, &params);
  }
  if (rc == 0 && features != nullptr) *features = params.features;
  if (rc == 0) TsanRingMapped(ring);
  return rc;
}

// The 68 KiB mapping of one end: the buffer ring's descriptors (first page,
// registered with the kernel), then the buffers.
class BufferRegion {
 public:
  BufferRegion() = default;
  BufferRegion(const BufferRegion&) = delete;
  BufferRegion& operator=(const BufferRegion&) = delete;
  ~BufferRegion() { Release(); }

  // Maps the region and registers it as buffer group kBufferGroup of `ring`,
  // every buffer handed to the kernel. Returns 0 or -errno.
  int Setup(io_uring* ring) {
    void* memory = mmap(nullptr, kRegionBytes, PROT_READ | PROT_WRITE,
                        MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (memory == MAP_FAILED) return -errno;
    base_ = static_cast<char*>(memory);
    io_uring_buf_reg registration{};
    registration.ring_addr = reinterpret_cast<uintptr_t>(base_);
    registration.ring_entries = kBufferCount;
    registration.bgid = kBufferGroup;
    const int rc = io_uring_register_buf_ring(ring, &registration, 0);
    if (rc < 0) return rc;
    io_uring_buf_ring_init(ring_descriptors());
    for (unsigned id = 0; id < kBufferCount; ++id) {
      io_uring_buf_ring_add(ring_descriptors(), buffer(id), kBufferSize,
                            static_cast<unsigned short>(id), io_uring_buf_ring_mask(kBufferCount),
                            static_cast<int>(id));
    }
    io_uring_buf_ring_advance(ring_descriptors(), kBufferCount);
    return 0;
  }

  // Hands buffer `id` back to the kernel, as the `offset`-th of a batch that
  // Publish() makes visible.
  void Recycle(unsigned id, int offset) {
    io_uring_buf_ring_add(ring_descriptors(), buffer(id), kBufferSize,
                          static_cast<unsigned short>(id), io_uring_buf_ring_mask(kBufferCount),
                          offset);
  }
  void Publish(int count) { io_uring_buf_ring_advance(ring_descriptors(), count); }

  char* buffer(unsigned id) const { return base_ + kBufferRingBytes + id * kBufferSize; }

  void Release() {
    if (base_ != nullptr) munmap(base_, kRegionBytes);
    base_ = nullptr;
  }
  // For when the kernel may still write into the buffers: never unmapped.
  void Abandon() { base_ = nullptr; }

 private:
  io_uring_buf_ring* ring_descriptors() const {
    return reinterpret_cast<io_uring_buf_ring*>(base_);
  }

  char* base_ = nullptr;
};

void PrepareMultishotReceive(io_uring_sqe* sqe, int fd) {
  io_uring_prep_recv_multishot(sqe, fd, nullptr, 0, 0);
  sqe->flags |= IOSQE_BUFFER_SELECT;
  sqe->buf_group = kBufferGroup;
  io_uring_sqe_set_data64(sqe, kReceiveTag);
}

int SubmitRetrying(io_uring* ring) {
  int rc;
  do {
    rc = io_uring_submit(ring);
  } while (rc == -EINTR);
  return rc;
}

int WaitRetrying(io_uring* ring, io_uring_cqe** cqe) {
  int rc;
  do {
    rc = io_uring_wait_cqe(ring, cqe);
  } while (rc == -EINTR);
  return rc;
}

class IoUringEnd final : public ChannelEnd {
 public:
  // Takes `fd`, a connected stream socket; closes it on failure too.
  static absl::StatusOr<std::unique_ptr<IoUringEnd>> Create(int fd, size_t max_message_size) {
    std::unique_ptr<IoUringEnd> end(new IoUringEnd(fd, max_message_size));
    if (absl::Status status = end->Init(); !status.ok()) return status;
    return end;
  }

  ~IoUringEnd() override {
    Close();
    if (ring_ready_) ExitRing(&ring_);
  }

  absl::Status TrySend(absl::Span<const char> message) override {
    if (closed_) return ChannelEndClosedError("send");
    if (message.size() > max_message_size_) {
      return ChannelMessageTooLargeError(message.size(), max_message_size_);
    }
    if (!send_error_.ok()) return send_error_;
    if (peer_closed_) return ChannelPeerClosedError();
    const size_t size = framing::kHeaderSize + message.size();
    if (!pending_.empty() && pending_.size() + size > kBatchBytes) {
      // The batch is full: it has to leave before this message joins one.
      ReapForSend();
      if (!send_error_.ok()) return send_error_;
      if (!send_inflight_) SubmitSend();
      if (!send_error_.ok()) return send_error_;
      if (!pending_.empty()) return WouldBlock();  // the in-flight send's completion wakes us
    }
    framing::AppendFrame(pending_, message);
    if (pending_.size() >= kBatchBytes && !send_inflight_) SubmitSend();
    SignalReceiveIfOwed();
    return absl::OkStatus();
  }

  absl::Status TryFlush() override {
    if (closed_) return ChannelEndClosedError("flush");
    if (peer_closed_ && send_error_.ok()) return ChannelPeerClosedError();
    bool ran_task_work = false;
    while (true) {
      ReapForSend();
      if (!send_error_.ok()) break;
      if (send_inflight_) {
        if (ran_task_work) return WouldBlock();  // the queue is empty: a completion wakes us
        ran_task_work = true;  // as in TryReceive
        RunTaskWork();
        continue;
      }
      if (AllSent()) break;
      SubmitSend();
    }
    SignalReceiveIfOwed();
    return send_error_;
  }

  absl::StatusOr<size_t> TryReceive(absl::Span<char> out) override {
    absl::StatusOr<size_t> length = PullMessage();
    if (!length.ok()) return length;
    in_.Take(out, *length);
    // The receive that takes a parked end below kParkAt resumes it now, not
    // at the next call: a sender blocked on the full socket may be waiting
    // for exactly this one.
    if (parked_ && Buffered() < kParkAt) KeepReceiving();
    return length;
  }

  bool ReceiveReady() override { return PullMessage().ok(); }

  Readiness send_readiness() const override { return {ring_.ring_fd, POLLIN}; }
  Readiness receive_readiness() const override { return {ring_.ring_fd, POLLIN}; }

  void Close() override {
    if (closed_) return;
    closed_ = true;
    // The peer reads what was flushed, then end of stream; its sends fail.
    // Our own multishot receive ends (end of stream) and an in-flight send
    // fails, so the cancellation below rarely has anything left to do.
    shutdown(fd_, SHUT_RDWR);
    if (ring_ready_ && InFlight()) {
      // The kernel writes into the buffers and reads the in-flight batch
      // until those requests complete, and holds the socket open: wait.
      if (io_uring_sqe* sqe = io_uring_get_sqe(&ring_); sqe != nullptr) {
        io_uring_prep_cancel64(sqe, 0, IORING_ASYNC_CANCEL_ANY | IORING_ASYNC_CANCEL_ALL);
        io_uring_sqe_set_data64(sqe, kCancelTag);
        SubmitRetrying(&ring_);
      }
      while (InFlight()) {
        io_uring_cqe* cqe = nullptr;
        if (WaitRetrying(&ring_, &cqe) < 0) break;
        HandleCompletion(cqe);
      }
    }
    close(fd_);
    if (InFlight()) {
      // Could not wait for the kernel: leave it memory it may still use.
      region_.Abandon();
      new std::vector<char>(std::move(inflight_));  // moving keeps the heap block
    } else {
      if (ring_ready_) io_uring_unregister_buf_ring(&ring_, kBufferGroup);
      region_.Release();
    }
    pending_ = std::vector<char>();
    inflight_ = std::vector<char>();
    in_.Clear();
  }

  size_t max_message_size() const override { return max_message_size_; }

  const EndStats& stats() const { return stats_; }

 private:
  IoUringEnd(int fd, size_t max_message_size)
      : fd_(fd), max_message_size_(max_message_size), in_(max_message_size, kInitialInputSize) {}

  absl::Status Init() {
    int rc = InitRing(&ring_, nullptr, &cooperative_);
    if (rc < 0) return RefusedOrError("io_uring_queue_init", -rc);
    ring_ready_ = true;
    rc = region_.Setup(&ring_);
    if (rc < 0) return RefusedOrError("provided buffer ring", -rc);
    ArmReceive();
    return receive_error_;
  }

  bool ReceiveFinished() const { return peer_closed_ || !receive_error_.ok(); }

  // Requests the kernel may still be working on (and using memory for).
  bool InFlight() const { return receive_armed_ || send_inflight_ || watch_armed_; }

  size_t Buffered() const { return in_.buffered(); }

  // Reaps until in_ holds a whole message at its front, and returns its
  // length; WouldBlock() when nothing more has arrived.
  absl::StatusOr<size_t> PullMessage() {
    if (closed_) return ChannelEndClosedError("receive");
    receive_owed_ = false;  // the receiving side is here: it sees what the send side reaped
    bool ran_task_work = false;
    while (true) {
      // Reap on every call, so that buffers go back to the kernel at once
      // and the multishot receive keeps running. Once the receive has
      // finished (end of stream, or an error) nothing more can arrive:
      // leave the queue alone, so the ring stays readable as a socket at end
      // of stream does (see EnsureFinishIsVisible).
      bool progress = false;
      if (!ReceiveFinished()) {
        progress = ReapAll();
        progress |= KeepReceiving();
      }
      absl::StatusOr<size_t> length = in_.Front();
      if (length.ok() || !IsWouldBlock(length.status())) return length;
      if (progress) continue;
      if (peer_closed_) return in_.EndOfStream();
      if (!receive_error_.ok()) return receive_error_;
      if (!ran_task_work) {
        // Data may have arrived with its copy still queued as task work for
        // this thread (the one that armed the receive): run it, once,
        // before reporting WouldBlock.
        ran_task_work = true;
        RunTaskWork();
        continue;
      }
      return WouldBlock();
    }
  }

  // Keeps the receive going, or parks it while the reader is far behind:
  // with whole messages and at least kParkAt bytes unread here, the
  // multishot receive is cancelled, so that the socket fills and the sender
  // feels back-pressure as with a plain socket, and a multishot poll of the
  // socket (POLLIN | POLLRDHUP) stands in for it, so that new data and the
  // end of the stream still make the ring readable. The first receive that
  // takes the reader below kParkAt arms the receive again, which drains the
  // socket and so frees a sender blocked on it: no lower resume mark, as a
  // sender waiting for room must not wait for receives beyond the ones that
  // make room (an arm drains up to 64 KiB, so re-arming costs little).
  // Returns whether it armed the receive (its first completions may already
  // be queued).
  bool KeepReceiving() {
    if (closed_ || ReceiveFinished()) return false;
    const bool has_message = in_.HasMessage();
    if (!parked_ && has_message && Buffered() >= kParkAt) {
      parked_ = true;
      ++stats_.recv_parks;
      if (receive_armed_) {
        io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
        if (sqe != nullptr) {
          io_uring_prep_cancel64(sqe, kReceiveTag, 0);
          io_uring_sqe_set_data64(sqe, kCancelTag);
        }
      }
      PrepareWatch();
      if (absl::Status submitted = Submit(); !submitted.ok()) receive_error_ = submitted;
      return false;
    }
    if (parked_ && (!has_message || Buffered() < kParkAt)) {
      parked_ = false;
      if (watch_armed_ && !watch_removing_) {
        if (io_uring_sqe* sqe = io_uring_get_sqe(&ring_); sqe != nullptr) {
          io_uring_prep_poll_remove(sqe, kWatchTag);
          io_uring_sqe_set_data64(sqe, kCancelTag);
          watch_removing_ = true;
        }
      }
    }
    if (parked_) {
      if (!watch_armed_) {
        PrepareWatch();
        if (absl::Status submitted = Submit(); !submitted.ok()) receive_error_ = submitted;
      }
      return false;
    }
    if (receive_armed_) {
      if (watch_removing_ && io_uring_sq_ready(&ring_) > 0) Submit().IgnoreError();
      return false;
    }
    ArmReceive();  // submits the watch's removal too, if queued
    DrainSocket();
    return true;
  }

  // An armed receive copies at most the 64 KiB of provided buffers, then
  // runs out of them and ends. A sender blocked on a full socket waits for
  // the kernel to free whole socket buffers, which 64 KiB may not do; and
  // this end's thread may not call again until that sender has got
  // through. So the receive is reaped and re-armed while it keeps running
  // out of buffers: until the socket is empty (the receive stays armed,
  // waiting) or this end holds kDrainLimit unread bytes.
  void DrainSocket() {
    while (true) {
      ReapAll();
      if (receive_armed_ || closed_ || ReceiveFinished() || Buffered() >= kDrainLimit) return;
      ++stats_.recv_drain_arms;
      ArmReceive();
      if (!receive_armed_) return;  // could not arm: receive_error_ says why
    }
  }

  void PrepareWatch() {
    if (watch_armed_) return;
    io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
    if (sqe == nullptr) return;
    io_uring_prep_poll_multishot(sqe, fd_, POLLIN | POLLRDHUP);
    io_uring_sqe_set_data64(sqe, kWatchTag);
    watch_armed_ = true;
    watch_removing_ = false;
  }

  bool AllSent() const { return inflight_sent_ == inflight_.size() && pending_.empty(); }

  // Without cooperative task running (an older kernel): enters the kernel
  // without submitting, so that it runs this thread's pending task work
  // (completions of requests this thread submitted); it would otherwise run
  // only when an interrupt gets round to it. With it, io_uring_peek_cqe()
  // has already done so if the kernel flagged any.
  void RunTaskWork() {
    if (cooperative_) return;
    ++stats_.task_work_calls;
    io_uring_get_events(&ring_);
  }

  // Submits what is queued in the SQ; a failure is sticky for both
  // directions (the ring is unusable).
  absl::Status Submit() {
    ++stats_.submit_calls;
    const int rc = SubmitRetrying(&ring_);
    if (rc < 0) return ErrnoError("io_uring channel: io_uring_submit", -rc);
    return absl::OkStatus();
  }

  void ArmReceive() {
    if (closed_ || receive_armed_ || peer_closed_ || !receive_error_.ok()) return;
    io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
    if (sqe == nullptr) {  // only after a failed submit left entries behind
      receive_error_ = absl::InternalError("io_uring channel: the submission queue is full");
      return;
    }
    PrepareMultishotReceive(sqe, fd_);
    receive_armed_ = true;
    ++stats_.recv_arms;
    if (absl::Status submitted = Submit(); !submitted.ok()) {
      receive_armed_ = false;
      receive_error_ = submitted;
    }
  }

  // Puts the rest of the last batch, or else the pending batch, in flight.
  void SubmitSend() {
    if (closed_ || send_inflight_ || !send_error_.ok()) return;
    if (inflight_sent_ == inflight_.size()) {
      if (pending_.empty()) return;
      inflight_.swap(pending_);
      pending_.clear();
      inflight_sent_ = 0;
      if (pending_.capacity() > kShrinkAbove) pending_.shrink_to_fit();
    }
    const size_t length = std::min(inflight_.size() - inflight_sent_, kMaxSendBytes);
    io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
    if (sqe == nullptr) {  // only after a failed submit left entries behind
      send_error_ = absl::InternalError("io_uring channel: the submission queue is full");
      return;
    }
    io_uring_prep_send(sqe, fd_, inflight_.data() + inflight_sent_, length,
                       MSG_NOSIGNAL | MSG_WAITALL);
    io_uring_sqe_set_data64(sqe, kSendTag);
    // Receive completions queued ahead of this send's will be reaped by the
    // send side (ReapForSend); a no-op queued behind it keeps the ring
    // readable for whoever watches receive_readiness(), for free.
    if (receive_owed_ || io_uring_cq_ready(&ring_) > 0) {
      if (io_uring_sqe* nop = io_uring_get_sqe(&ring_); nop != nullptr) {
        io_uring_prep_nop(nop);
        io_uring_sqe_set_data64(nop, kNopTag);
      }
    }
    send_inflight_ = true;
    ++stats_.send_submissions;
    if (absl::Status submitted = Submit(); !submitted.ok()) {
      send_inflight_ = false;
      send_error_ = submitted;
    }
  }

  // The send side reaped receive completions and is about to return with
  // the ring possibly unreadable: a watcher of receive_readiness() (an
  // edge-triggered event loop) would never hear of them. Queue a no-op so
  // the ring becomes readable again.
  void SignalReceiveIfOwed() {
    if (!receive_owed_ || closed_ || io_uring_cq_ready(&ring_) > 0) return;
    io_uring_sqe* nop = io_uring_get_sqe(&ring_);
    if (nop == nullptr) return;
    io_uring_prep_nop(nop);
    io_uring_sqe_set_data64(nop, kNopTag);
    if (absl::Status submitted = Submit(); !submitted.ok() && send_error_.ok()) {
      send_error_ = submitted;
    }
  }

  // Handles completions in order until the in-flight send's (which may
  // resubmit the rest of a short send), leaving later ones for the
  // receiving side.
  void ReapForSend() {
    io_uring_cqe* cqe;
    while (send_inflight_ && io_uring_peek_cqe(&ring_, &cqe) == 0) {
      const uint64_t tag = io_uring_cqe_get_data64(cqe);
      if (tag == kReceiveTag || tag == kWatchTag) receive_owed_ = true;
      HandleCompletion(cqe);
      if (!send_inflight_ && !AllSent() && inflight_sent_ < inflight_.size()) SubmitSend();
    }
    EnsureFinishIsVisible();
  }

  // Handles every completion in the queue. Returns whether receive data or
  // a change of the receive's state arrived.
  bool ReapAll() {
    bool progress = false;
    io_uring_cqe* cqe;
    while (io_uring_peek_cqe(&ring_, &cqe) == 0) {
      progress |= HandleCompletion(cqe);
    }
    EnsureFinishIsVisible();
    return progress;
  }

  // A socket at end of stream stays readable for good; make the ring do the
  // same once the receive has finished. Otherwise whoever reaped the final
  // completion (a direct Receive, or the send side) would leave an
  // edge-triggered watcher of receive_readiness() never hearing of the end.
  // TryReceive stops reaping from then on, so the no-op stays queued.
  void EnsureFinishIsVisible() {
    if (!ReceiveFinished() || closed_ || io_uring_cq_ready(&ring_) > 0) return;
    io_uring_sqe* nop = io_uring_get_sqe(&ring_);
    if (nop == nullptr) return;
    io_uring_prep_nop(nop);
    io_uring_sqe_set_data64(nop, kNopTag);
    Submit().IgnoreError();  // a failure here leaves nothing worse than before
  }

  // Consumes one completion. Returns whether it was the receive's.
  bool HandleCompletion(io_uring_cqe* cqe) {
    const uint64_t tag = io_uring_cqe_get_data64(cqe);
    const int result = cqe->res;
    const uint32_t flags = cqe->flags;
    io_uring_cqe_seen(&ring_, cqe);
    switch (tag) {
      case kReceiveTag:
        OnReceive(result, flags);
        return true;
      case kSendTag:
        OnSend(result);
        return false;
      case kWatchTag:
        if (!(flags & IORING_CQE_F_MORE)) {
          watch_armed_ = false;
          watch_removing_ = false;
        }
        return false;  // only an edge for watchers of the ring
      default:  // kCancelTag, kNopTag
        return false;
    }
  }

  void OnReceive(int result, uint32_t flags) {
    if (flags & IORING_CQE_F_BUFFER) {
      const unsigned id = flags >> IORING_CQE_BUFFER_SHIFT;
      if (id < kBufferCount) {
        if (result > 0 && !closed_) in_.Append(region_.buffer(id), static_cast<size_t>(result));
        if (!closed_) {
          region_.Recycle(id, 0);
          region_.Publish(1);
        }
      }
    }
    if (flags & IORING_CQE_F_MORE) return;
    receive_armed_ = false;  // re-armed by the next TryReceive if it should be
    if (result == 0 || result == -ECONNRESET || result == -EPIPE) {
      peer_closed_ = true;
    } else if (result == -ENOBUFS) {
      ++stats_.recv_buffer_exhaustions;
    } else if (result == -ECANCELED) {
      if (!parked_) ++stats_.recv_cancellations;
    } else if (result < 0 && !closed_) {
      receive_error_ = ErrnoError("channel receive: io_uring recv", -result);
    }
    // result > 0 without F_MORE: the request ended after delivering.
  }

  void OnSend(int result) {
    send_inflight_ = false;
    if (closed_) return;
    if (result == -ECANCELED || result == -EINTR) return;  // nothing sent: SubmitSend retries
    if (result < 0) {
      send_error_ = framing::SendErrnoError("channel send: io_uring send", -result);
      return;
    }
    if (result == 0 && inflight_sent_ < inflight_.size()) {
      send_error_ = absl::InternalError("channel send: io_uring send made no progress");
      return;
    }
    inflight_sent_ += static_cast<size_t>(result);
    if (inflight_sent_ >= inflight_.size()) {
      inflight_.clear();
      inflight_sent_ = 0;
      if (inflight_.capacity() > kShrinkAbove) inflight_.shrink_to_fit();
    }
  }

  const int fd_;
  const size_t max_message_size_;
  bool closed_ = false;

  io_uring ring_{};
  bool ring_ready_ = false;
  bool cooperative_ = false;  // IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG
  BufferRegion region_;

  // Receiving.
  bool receive_armed_ = false;
  bool parked_ = false;          // see KeepReceiving
  bool watch_armed_ = false;     // the parked state's multishot poll
  bool watch_removing_ = false;
  bool peer_closed_ = false;
  absl::Status receive_error_;
  // The send side consumed receive completions since the last TryReceive.
  bool receive_owed_ = false;
  // Received bytes not yet handed out.
  framing::FrameReader in_;

  // Sending. inflight_ is read by the kernel while send_inflight_.
  std::vector<char> pending_;
  std::vector<char> inflight_;
  size_t inflight_sent_ = 0;
  bool send_inflight_ = false;
  absl::Status send_error_;

  EndStats stats_;
};

// Everything the ends rely on, tried once on a scratch ring and socketpair.
absl::Status Probe() {
  io_uring ring;
  unsigned features = 0;
  bool cooperative = false;
  int rc = InitRing(&ring, &features, &cooperative);
  if (rc < 0) return RefusedOrError("io_uring_setup", -rc);
  absl::Cleanup exit_ring = [&ring] { ExitRing(&ring); };

  if (!(features & IORING_FEAT_NODROP)) {
    return absl::UnavailableError("io_uring: the kernel lacks IORING_FEAT_NODROP (Linux 5.5)");
  }
  if (!(features & IORING_FEAT_FAST_POLL)) {
    return absl::UnavailableError("io_uring: the kernel lacks IORING_FEAT_FAST_POLL (Linux 5.7)");
  }
  io_uring_probe* probe = io_uring_get_probe_ring(&ring);
  if (probe == nullptr) {
    return absl::UnavailableError("io_uring: the kernel refused IORING_REGISTER_PROBE (Linux 5.6)");
  }
  absl::Status opcodes = io_uring_channel_internal::CheckOpcodes(*probe);
  io_uring_free_probe(probe);
  if (!opcodes.ok()) return opcodes;

  BufferRegion region;
  rc = region.Setup(&ring);
  if (rc < 0) {
    if (IsRefusal(-rc)) {
      return absl::UnavailableError(absl::StrCat(
          "io_uring: provided buffer rings refused (Linux 5.19): ", ErrnoText(-rc)));
    }
    return ErrnoError("io_uring channel: probe: io_uring_register_buf_ring", -rc);
  }

  int fds[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds) != 0) {
    return ErrnoError("io_uring channel: probe: socketpair", errno);
  }
  absl::Cleanup close_fds = [&fds] {
    close(fds[0]);
    close(fds[1]);
  };
  PrepareMultishotReceive(io_uring_get_sqe(&ring), fds[0]);
  rc = SubmitRetrying(&ring);
  if (rc < 0) return RefusedOrError("io_uring_enter", -rc);
  const char byte = 'p';
  if (send(fds[1], &byte, 1, MSG_NOSIGNAL) != 1) {
    return ErrnoError("io_uring channel: probe: send", errno);
  }
  io_uring_cqe* cqe = nullptr;
  rc = WaitRetrying(&ring, &cqe);
  if (rc < 0) return RefusedOrError("io_uring_enter(GETEVENTS)", -rc);
  const int result = cqe->res;
  const uint32_t flags = cqe->flags;
  io_uring_cqe_seen(&ring, cqe);
  bool receive_ended = !(flags & IORING_CQE_F_MORE);
  if (result != 1 || !(flags & IORING_CQE_F_BUFFER) || receive_ended) {
    if (!receive_ended) {
      shutdown(fds[0], SHUT_RDWR);
      while (!receive_ended && WaitRetrying(&ring, &cqe) == 0) {
        receive_ended = !(cqe->flags & IORING_CQE_F_MORE);
        io_uring_cqe_seen(&ring, cqe);
      }
    }
    if (!receive_ended) region.Abandon();
    return absl::UnavailableError(absl::StrCat(
        "io_uring: multishot receive with provided buffers does not work here (Linux 6.0): ",
        result < 0 ? ErrnoText(-result) : absl::StrCat("result ", result, ", flags ", flags)));
  }
  // End the probe's receive before its buffers go away.
  shutdown(fds[0], SHUT_RDWR);
  while (!receive_ended) {
    if (WaitRetrying(&ring, &cqe) < 0) {
      region.Abandon();
      break;
    }
    receive_ended = !(cqe->flags & IORING_CQE_F_MORE);
    io_uring_cqe_seen(&ring, cqe);
  }
  return absl::OkStatus();
}

class IoUringFactory final : public ChannelFactory {
 public:
  absl::StatusOr<ChannelPair> CreatePair(const ChannelOptions& options) override {
    absl::StatusOr<std::array<int, 2>> fds =
        framing::NewStreamSocketPair("io_uring channel", options);
    if (!fds.ok()) return fds.status();
    absl::StatusOr<std::unique_ptr<IoUringEnd>> task_end =
        IoUringEnd::Create((*fds)[0], options.max_message_size);
    if (!task_end.ok()) {
      close((*fds)[1]);
      return task_end.status();
    }
    absl::StatusOr<std::unique_ptr<IoUringEnd>> owner_end =
        IoUringEnd::Create((*fds)[1], options.max_message_size);
    if (!owner_end.ok()) return owner_end.status();
    ChannelPair pair;
    pair.task_end = *std::move(task_end);
    pair.owner_end = *std::move(owner_end);
    return pair;
  }

  std::string name() const override { return "io_uring"; }
};

}  // namespace

namespace io_uring_channel_internal {

std::optional<EndStats> GetEndStats(const ChannelEnd& end) {
  const auto* io_uring_end = dynamic_cast<const IoUringEnd*>(&end);
  if (io_uring_end == nullptr) return std::nullopt;
  return io_uring_end->stats();
}

absl::Status CheckOpcodes(const io_uring_probe& probe) {
  constexpr struct {
    int opcode;
    const char* name;
  } kNeeded[] = {
      {IORING_OP_SEND, "IORING_OP_SEND"},
      {IORING_OP_RECV, "IORING_OP_RECV"},
      {IORING_OP_ASYNC_CANCEL, "IORING_OP_ASYNC_CANCEL"},
      {IORING_OP_NOP, "IORING_OP_NOP"},
  };
  for (const auto& needed : kNeeded) {
    if (!io_uring_opcode_supported(&probe, needed.opcode)) {
      return absl::UnavailableError(
          absl::StrCat("io_uring: the kernel does not support ", needed.name));
    }
  }
  return absl::OkStatus();
}

}  // namespace io_uring_channel_internal

absl::StatusOr<std::unique_ptr<ChannelFactory>> NewIoUringChannelFactory() {
  if (absl::Status probed = Probe(); !probed.ok()) return probed;
  return std::make_unique<IoUringFactory>();
}

}  // namespace taskrt
