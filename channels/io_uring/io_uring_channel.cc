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
#include "core/channel_counters.h"
#include "core/errors.h"
#include "platform/io_uring/ring.h"

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
// Unread bytes, with a whole message among them, at which an end stops
// draining its socket and parks; see DrainSocket().
constexpr size_t kDrainLimit = 1024 * 1024;
static_assert(kDrainLimit >= kParkAt, "an end that stops draining must be one that parks");

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

namespace platform = io_uring_platform;

constexpr absl::string_view kUser = "io_uring channel";
constexpr platform::RingOptions kRingOptions{
    .user = kUser,
    .sq_entries = kSqEntries,
    .cq_entries = kCqEntries,
    // See "Threads and the kernel's task work" in the header.
    .cooperative_task_running = true,
};
constexpr platform::Feature kNeededFeatures[] = {
    {IORING_FEAT_NODROP, "IORING_FEAT_NODROP", "Linux 5.5"},
    {IORING_FEAT_FAST_POLL, "IORING_FEAT_FAST_POLL", "Linux 5.7"},
};
constexpr platform::Opcode kNeededOpcodes[] = {
    {IORING_OP_SEND, "IORING_OP_SEND"},
    {IORING_OP_RECV, "IORING_OP_RECV"},
    {IORING_OP_ASYNC_CANCEL, "IORING_OP_ASYNC_CANCEL"},
    {IORING_OP_NOP, "IORING_OP_NOP"},
};

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
    if (ring_ready_) platform::ExitRing(&ring_);
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
      if (!pending_.empty()) {
        counts_.sends_blocked.Add();
        return WouldBlock();  // the in-flight send's completion wakes us
      }
    }
    framing::AppendFrame(pending_, message);
    last_accepted_bytes_ = size;
    counts_.Sent(message.size());
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
        if (ran_task_work) {
          counts_.sends_blocked.Add();
          return WouldBlock();  // the queue is empty: a completion wakes us
        }
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

  // The last accepted frame ends the pending batch, or else the batch in
  // flight, whose send is cancelled first so that the kernel says how much
  // of it left (a cancelled send reports the bytes it had sent).
  bool TryTakeBackUnsent() override {
    const size_t size = std::exchange(last_accepted_bytes_, 0);
    if (closed_ || size == 0 || !send_error_.ok()) return false;
    if (!pending_.empty()) {
      if (pending_.size() < size) return false;
      pending_.resize(pending_.size() - size);
      UncountSent(size);
      return true;
    }
    if (send_inflight_) {
      io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
      if (sqe == nullptr) return false;
      io_uring_prep_cancel64(sqe, kSendTag, 0);
      io_uring_sqe_set_data64(sqe, kCancelTag);
      if (!Submit().ok()) return false;
      while (send_inflight_) {
        io_uring_cqe* cqe = nullptr;
        if (platform::WaitRetrying(&ring_, &cqe) < 0) return false;
        const uint64_t tag = io_uring_cqe_get_data64(cqe);
        if (tag == kReceiveTag || tag == kWatchTag) receive_owed_ = true;
        HandleCompletion(cqe);
      }
    }
    const bool none_left = send_error_.ok() && inflight_.size() - inflight_sent_ >= size;
    if (none_left) {
      inflight_.resize(inflight_.size() - size);
      if (inflight_sent_ == inflight_.size()) {
        inflight_.clear();
        inflight_sent_ = 0;
      }
    }
    SubmitSend();  // what is left before it, or the rest of it, as TryFlush would
    SignalReceiveIfOwed();
    if (none_left) UncountSent(size);
    return none_left;
  }

  absl::StatusOr<size_t> TryReceive(absl::Span<char> out) override {
    absl::StatusOr<size_t> length = PullMessage();
    if (!length.ok()) {
      if (IsWouldBlock(length.status())) counts_.receives_blocked.Add();
      return length;
    }
    in_.Take(out, *length);
    counts_.Received(*length);
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
        platform::SubmitRetrying(&ring_);
      }
      while (InFlight()) {
        io_uring_cqe* cqe = nullptr;
        if (platform::WaitRetrying(&ring_, &cqe) < 0) break;
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

  // The kernel wakes a waiter through the ring: wakeups_sent stays 0.
  ChannelMetrics metrics() const override { return counts_.Snapshot(); }
  void LinkForTraceWith(IoUringEnd& peer) { LinkForTrace(counts_, peer.counts_); }

  EndStats stats() const {
    EndStats stats = stats_;
    stats.receive_armed = receive_armed_;
    stats.parked = parked_;
    stats.watch_armed = watch_armed_;
    stats.receive_cancelling = receive_cancelling_;
    stats.watch_removing = watch_removing_;
    return stats;
  }

 private:
  IoUringEnd(int fd, size_t max_message_size)
      : fd_(fd), max_message_size_(max_message_size), in_(max_message_size, kInitialInputSize) {}

  absl::Status Init() {
    absl::StatusOr<platform::RingSetup> setup = platform::SetUpRing(&ring_, kRingOptions);
    if (!setup.ok()) return setup.status();
    ring_ready_ = true;
    cooperative_ = setup->cooperative_task_running;
    const int rc = region_.Setup(&ring_);
    if (rc < 0) return platform::RefusedOrError(kUser, "provided buffer ring", -rc);
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
      if (receive_armed_ && !receive_cancelling_) {
        if (io_uring_sqe* sqe = io_uring_get_sqe(&ring_); sqe != nullptr) {
          io_uring_prep_cancel64(sqe, kReceiveTag, 0);
          io_uring_sqe_set_data64(sqe, kCancelTag);
          receive_cancelling_ = true;
        }
      }
      PrepareWatch();
      if (absl::Status submitted = Submit(); !submitted.ok()) receive_error_ = submitted;
      return false;
    }
    if (parked_ && (!has_message || Buffered() < kParkAt)) parked_ = false;
    if (parked_) {
      if (!watch_armed_) {
        PrepareWatch();
        if (absl::Status submitted = Submit(); !submitted.ok()) receive_error_ = submitted;
      }
      return false;
    }
    // Not parked: the receive runs. Until a receive that is not being
    // cancelled is in the kernel, the watch stays, so that something there
    // still posts on new data or the end of the stream: a watcher that does
    // not reap (an owner loop with nothing bound) would otherwise never hear
    // of them. The cancelled receive's last completion, when reaped, lets
    // the next call arm a new one.
    if (receive_cancelling_) return false;
    if (receive_armed_) {
      if (RemoveWatch()) Submit().IgnoreError();
      return false;
    }
    RemoveWatch();  // submitted with the receive
    ArmReceive();
    DrainSocket();
    return true;
  }

  // Queues the removal of the parked end's poll, if it is armed; returns
  // whether it queued one.
  bool RemoveWatch() {
    if (!watch_armed_ || watch_removing_) return false;
    io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
    if (sqe == nullptr) return false;
    io_uring_prep_poll_remove(sqe, kWatchTag);
    io_uring_sqe_set_data64(sqe, kCancelTag);
    watch_removing_ = true;
    return true;
  }

  // An armed receive copies at most the 64 KiB of provided buffers, then
  // runs out of them and ends. A sender blocked on a full socket waits for
  // the kernel to free whole socket buffers, which 64 KiB may not do; and
  // this end's thread may not call again until that sender has got
  // through. So the receive is reaped and re-armed while it keeps running
  // out of buffers: until the socket is empty (the receive stays armed,
  // waiting), or this end holds kDrainLimit unread bytes with a whole
  // message among them (it parks). Either way it returns with the receive
  // or the parked end's poll armed, so that the end of the stream still
  // makes the ring readable for a watcher.
  void DrainSocket() {
    while (true) {
      ReapAll();
      if (receive_armed_ || closed_ || ReceiveFinished()) return;
      if (Buffered() >= kDrainLimit && in_.HasMessage()) {
        KeepReceiving();  // parks: above kParkAt with a whole message
        return;
      }
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
    const int rc = platform::SubmitRetrying(&ring_);
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
    receive_cancelling_ = false;
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
  bool receive_cancelling_ = false;  // a cancel of the armed receive is in flight
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
  size_t last_accepted_bytes_ = 0;  // the frame TrySend accepted last
  absl::Status send_error_;

  // A frame of `frame_bytes` (header included) taken back: as if never sent.
  void UncountSent(size_t frame_bytes) { counts_.Unsent(frame_bytes - framing::kHeaderSize); }

  EndStats stats_;
  ChannelEndCounters counts_;  // metrics()
};

// Everything the ends rely on, tried once on a scratch ring and socketpair.
absl::Status Probe() {
  io_uring ring;
  absl::StatusOr<platform::RingSetup> setup = platform::SetUpRing(&ring, kRingOptions);
  if (!setup.ok()) return setup.status();
  absl::Cleanup exit_ring = [&ring] { platform::ExitRing(&ring); };
  if (absl::Status features = platform::CheckFeatures(setup->features, kNeededFeatures);
      !features.ok()) {
    return features;
  }
  if (absl::Status opcodes = platform::ProbeOpcodes(&ring, kNeededOpcodes); !opcodes.ok()) {
    return opcodes;
  }

  BufferRegion region;
  int rc = region.Setup(&ring);
  if (rc < 0) {
    if (platform::IsRefusal(-rc)) {
      return absl::UnavailableError(absl::StrCat(
          "io_uring: provided buffer rings refused (Linux 5.19): ", platform::ErrnoText(-rc)));
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
  rc = platform::SubmitRetrying(&ring);
  if (rc < 0) return platform::RefusedOrError(kUser, "io_uring_enter", -rc);
  const char byte = 'p';
  if (send(fds[1], &byte, 1, MSG_NOSIGNAL) != 1) {
    return ErrnoError("io_uring channel: probe: send", errno);
  }
  io_uring_cqe* cqe = nullptr;
  rc = platform::WaitRetrying(&ring, &cqe);
  if (rc < 0) return platform::RefusedOrError(kUser, "io_uring_enter(GETEVENTS)", -rc);
  const int result = cqe->res;
  const uint32_t flags = cqe->flags;
  io_uring_cqe_seen(&ring, cqe);
  bool receive_ended = !(flags & IORING_CQE_F_MORE);
  if (result != 1 || !(flags & IORING_CQE_F_BUFFER) || receive_ended) {
    if (!receive_ended) {
      shutdown(fds[0], SHUT_RDWR);
      while (!receive_ended && platform::WaitRetrying(&ring, &cqe) == 0) {
        receive_ended = !(cqe->flags & IORING_CQE_F_MORE);
        io_uring_cqe_seen(&ring, cqe);
      }
    }
    if (!receive_ended) region.Abandon();
    return absl::UnavailableError(absl::StrCat(
        "io_uring: multishot receive with provided buffers does not work here (Linux 6.0): ",
        result < 0 ? platform::ErrnoText(-result)
                   : absl::StrCat("result ", result, ", flags ", flags)));
  }
  // End the probe's receive before its buffers go away.
  shutdown(fds[0], SHUT_RDWR);
  while (!receive_ended) {
    if (platform::WaitRetrying(&ring, &cqe) < 0) {
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
    (*task_end)->LinkForTraceWith(**owner_end);
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

}  // namespace io_uring_channel_internal

absl::StatusOr<std::unique_ptr<ChannelFactory>> NewIoUringChannelFactory() {
  if (absl::Status probed = Probe(); !probed.ok()) return probed;
  return std::make_unique<IoUringFactory>();
}

}  // namespace taskrt
