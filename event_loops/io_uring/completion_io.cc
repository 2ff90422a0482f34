#include "event_loops/io_uring/completion_io.h"

#include <liburing.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/types/span.h"
#include "core/errors.h"
#include "event_loops/loop_base/socket_io.h"
#include "platform/io_uring/ring.h"

namespace taskrt::io_uring_loop_internal {
namespace {

// user_data of this class's requests: the tag bit and the operation id
// (ids stay far below it). Bit 63 is the loop's own tags'.
constexpr uint64_t kIoTag = uint64_t{1} << 62;
constexpr uint64_t kIdMask = kIoTag - 1;
constexpr uint64_t kTagMask = uint64_t{3} << 62;

constexpr uint16_t kBufferGroup = 0;
constexpr unsigned kBufferCount = 128;  // a power of two, as the ring needs
constexpr unsigned kBufferBytes = 16 * 1024;
// One send request writes at most this much; the rest goes in the next.
constexpr size_t kMaxSendBytes = size_t{1} << 30;

// A multishot receive's last completion that ends nothing for its user:
// out of buffers (the callbacks give them back), interrupted, or cancelled
// for a pause (a live receive is cancelled for nothing else).
bool IsRearmable(int32_t result) {
  return result == -ENOBUFS || result == -EINTR || result == -EAGAIN || result == -ECANCELED;
}

}  // namespace

absl::StatusOr<std::unique_ptr<CompletionIo>> CompletionIo::Create(io_uring* ring, Hooks hooks) {
  std::unique_ptr<CompletionIo> io(new CompletionIo(ring, std::move(hooks)));
  if (absl::Status registered = io->RegisterBuffers(); !registered.ok()) return registered;
  return io;
}

CompletionIo::~CompletionIo() {
  if (buffer_ring_ != nullptr) munmap(buffer_ring_, buffer_ring_bytes_);
}

absl::Status CompletionIo::RegisterBuffers() {
  buffer_ring_bytes_ = kBufferCount * sizeof(io_uring_buf);
  void* memory = mmap(nullptr, buffer_ring_bytes_, PROT_READ | PROT_WRITE,
                      MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
  if (memory == MAP_FAILED) return ErrnoError("io_uring loop: mmap(provided buffer ring)", errno);
  io_uring_buf_reg registration{};
  registration.ring_addr = reinterpret_cast<uintptr_t>(memory);
  registration.ring_entries = kBufferCount;
  registration.bgid = kBufferGroup;
  if (const int rc = io_uring_register_buf_ring(ring_, &registration, 0); rc < 0) {
    munmap(memory, buffer_ring_bytes_);
    return absl::UnavailableError(
        absl::StrCat("io_uring: a provided-buffer ring is refused (Linux 5.19): ",
                     io_uring_platform::ErrnoText(-rc)));
  }
  buffer_ring_ = static_cast<io_uring_buf_ring*>(memory);
  io_uring_buf_ring_init(buffer_ring_);
  return absl::OkStatus();
}

bool CompletionIo::HasOperationsOn(int fd) const {
  if (readers_.contains(fd)) return true;
  auto queue = sends_.find(fd);
  if (queue == sends_.end()) return false;
  // Not a cancelled send the kernel still holds: its fd may be closed and
  // the number given to another file.
  for (IoId id : queue->second) {
    auto op = ops_.find(id);
    if (op != ops_.end() && op->second->live) return true;
  }
  return false;
}

bool CompletionIo::IsIoCompletion(uint64_t user_data) { return (user_data & kTagMask) == kIoTag; }

absl::StatusOr<CompletionIo::Op*> CompletionIo::AddReader(const char* operation, IoId id, int fd,
                                                          Kind kind) {
  if (readers_.contains(fd)) {
    return absl::FailedPreconditionError(absl::StrCat(
        "io_uring loop: ", operation, " on fd ", fd, ", which has an AcceptEach or ReceiveEach"));
  }
  readers_[fd] = id;
  return &Add(id, fd, kind);
}

CompletionIo::Op& CompletionIo::Add(IoId id, int fd, Kind kind) {
  auto op = std::make_unique<Op>();
  op->kind = kind;
  op->fd = fd;
  return *(ops_[id] = std::move(op));
}

absl::Status CompletionIo::AcceptEach(IoId id, int fd, AcceptCallback on_accept) {
  absl::StatusOr<Op*> op = AddReader("AcceptEach", id, fd, Kind::kAccept);
  if (!op.ok()) return op.status();
  (*op)->on_accept = std::make_shared<AcceptCallback>(std::move(on_accept));
  Queue(id, **op);
  return absl::OkStatus();
}

absl::Status CompletionIo::ReceiveEach(IoId id, int fd, ReceiveCallback on_data) {
  absl::StatusOr<Op*> op = AddReader("ReceiveEach", id, fd, Kind::kReceive);
  if (!op.ok()) return op.status();
  (*op)->on_data = std::make_shared<ReceiveCallback>(std::move(on_data));
  Queue(id, **op);
  return absl::OkStatus();
}

absl::Status CompletionIo::SendAll(IoId id, int fd, std::string bytes, SendCallback on_sent) {
  Op& added = Add(id, fd, Kind::kSend);
  added.bytes = std::move(bytes);
  added.on_sent = std::make_shared<SendCallback>(std::move(on_sent));
  std::deque<IoId>& queue = sends_[fd];
  queue.push_back(id);
  // One send per fd in the kernel: the others wait their turn.
  if (queue.size() == 1) Queue(id, added);
  return absl::OkStatus();
}

absl::Status CompletionIo::CancelIo(IoId id, bool ring_started) {
  Op* op = Find(id);
  if (op == nullptr || !op->live) {
    return absl::NotFoundError(
        absl::StrCat("io_uring loop: CancelIo of operation ", id, ", which is unknown or has ended"));
  }
  const bool in_kernel = op->in_kernel;
  End(id, *op);  // may erase it
  if (!in_kernel || !ring_started) return absl::OkStatus();
  io_uring_sqe* sqe = hooks_.get_sqe();
  // The operation is cancelled for its user either way: no callback runs.
  // Only where the queue stays full does the kernel keep it until its
  // next completion, which the loop then drops.
  if (sqe == nullptr) return absl::OkStatus();
  io_uring_prep_cancel64(sqe, kIoTag | id, 0);
  io_uring_sqe_set_data64(sqe, hooks_.ignored_tag);
  // Now: when CancelIo returns the kernel has let go of the operation.
  return hooks_.enter_now("CancelIo");
}

absl::StatusOr<CompletionIo::Op*> CompletionIo::ReceiveOp(const char* operation, IoId id) {
  Op* op = Find(id);
  if (op == nullptr || !op->live) {
    return absl::NotFoundError(absl::StrCat("io_uring loop: ", operation, " of operation ", id,
                                            ", which is unknown or has ended"));
  }
  if (op->kind != Kind::kReceive) {
    return absl::InvalidArgumentError(absl::StrCat("io_uring loop: ", operation, " of operation ",
                                                   id, ", which is not a ReceiveEach"));
  }
  return op;
}

absl::Status CompletionIo::HoldReceive(IoId id, bool hold) {
  absl::StatusOr<Op*> found = ReceiveOp(hold ? "PauseReceive" : "ResumeReceive", id);
  if (!found.ok()) return found.status();
  Op& op = **found;
  const bool resumed = op.paused && !hold;
  // A pause asks nothing of the kernel yet: only a completion that comes
  // while paused cancels the multishot (Hold).
  op.paused = hold;
  if (!resumed) return absl::OkStatus();
  if (!op.held.empty() || op.holds_end) QueueDelivery(id, op);
  // The kernel let go of it while paused (the pause's cancellation, or out
  // of buffers): armed again, behind what was held.
  if (!op.in_kernel && !op.holds_end) Queue(id, op);
  return absl::OkStatus();
}

void CompletionIo::QueueDelivery(IoId id, Op& op) {
  if (op.delivery_queued) return;
  op.delivery_queued = true;
  hooks_.defer([this, id] { DeliverHeld(id); });
}

void CompletionIo::DeliverHeld(IoId id) {
  Op* op = Find(id);
  if (op == nullptr || !op->live) return;
  op->delivery_queued = false;
  if (op->paused) return;  // paused again: its resume queues the delivery
  std::shared_ptr<ReceiveCallback> on_data = op->on_data;
  if (!op->held.empty()) {
    std::string bytes = std::move(op->held);
    op->held.clear();
    // Completions that a loop run inside the callback handles are held
    // behind these bytes.
    op->delivery_queued = true;
    (*on_data)(absl::Span<const char>(bytes.data(), bytes.size()));
    op = Find(id);
    if (op == nullptr || !op->live) return;
    op->delivery_queued = false;
    if (op->paused) return;
    if (!op->held.empty()) {
      QueueDelivery(id, *op);
      return;
    }
  }
  if (!op->holds_end) return;
  absl::Status error = std::move(op->held_error);
  End(id, *op);
  if (error.ok()) {
    (*on_data)(absl::Span<const char>());  // the end of the stream
  } else {
    (*on_data)(std::move(error));
  }
}

CompletionIo::Op* CompletionIo::Find(IoId id) {
  auto it = ops_.find(id);
  return it == ops_.end() ? nullptr : it->second.get();
}

void CompletionIo::Queue(IoId id, Op& op) {
  if (op.pending) return;
  op.pending = true;
  pending_.push_back(id);
}

void CompletionIo::Rearm(IoId id, Op& op) {
  rearms_.fetch_add(1, std::memory_order_relaxed);
  Queue(id, op);
}

void CompletionIo::SubmitPending() {
  while (!pending_.empty()) {
    const IoId id = pending_.front();
    Op* op = Find(id);
    if (op != nullptr && op->pending && op->kind == Kind::kReceive && op->paused) {
      op->pending = false;  // paused before it went: its resume queues it
    } else if (op != nullptr && op->pending) {
      if (!Prepare(id, *op)) return;  // the queue is full: next iteration
      op->pending = false;
    }
    pending_.pop_front();
  }
}

bool CompletionIo::Prepare(IoId id, Op& op) {
  io_uring_sqe* sqe = hooks_.get_sqe();
  if (sqe == nullptr) return false;
  switch (op.kind) {
    case Kind::kAccept:
      io_uring_prep_multishot_accept(sqe, op.fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
      break;
    case Kind::kReceive:
      if (buffers_ == nullptr) {
        // The buffers go to the ring with the loop's first receive.
        buffers_.reset(new char[size_t{kBufferCount} * kBufferBytes]);
        const int mask = io_uring_buf_ring_mask(kBufferCount);
        for (unsigned i = 0; i < kBufferCount; ++i) {
          io_uring_buf_ring_add(buffer_ring_, buffers_.get() + size_t{i} * kBufferBytes,
                                kBufferBytes, static_cast<unsigned short>(i), mask,
                                static_cast<int>(i));
        }
        io_uring_buf_ring_advance(buffer_ring_, kBufferCount);
      }
      io_uring_prep_recv_multishot(sqe, op.fd, nullptr, 0, 0);
      sqe->flags |= IOSQE_BUFFER_SELECT;
      sqe->buf_group = kBufferGroup;
      break;
    case Kind::kSend: {
      const size_t left = std::min(op.bytes.size() - op.sent, kMaxSendBytes);
      io_uring_prep_send(sqe, op.fd, op.bytes.data() + op.sent, left,
                         MSG_NOSIGNAL | MSG_WAITALL);
      break;
    }
  }
  io_uring_sqe_set_data64(sqe, kIoTag | id);
  op.in_kernel = true;
  return true;
}

void CompletionIo::End(IoId id, Op& op) {
  op.live = false;
  op.on_accept.reset();
  op.on_data.reset();
  op.on_sent.reset();
  std::string().swap(op.held);
  const int fd = op.fd;
  if (op.kind != Kind::kSend) {
    if (auto reader = readers_.find(fd); reader != readers_.end() && reader->second == id) {
      readers_.erase(reader);
    }
  } else if (auto queue = sends_.find(fd); queue != sends_.end()) {
    std::deque<IoId>& sends = queue->second;
    const bool front = !sends.empty() && sends.front() == id;
    // A send in the kernel keeps its place until the kernel lets go of it,
    // so that the next one cannot interleave with what it writes.
    if (front && op.in_kernel) return;
    sends.erase(std::remove(sends.begin(), sends.end(), id), sends.end());
    if (front) StartNextSend(fd);
  }
  if (!op.in_kernel) ops_.erase(id);
}

void CompletionIo::CancelInKernel(IoId id) {
  // The kernel ends a multishot request on an error, so this serves only a
  // kernel that keeps one armed; its later completions run nothing.
  if (io_uring_sqe* sqe = hooks_.get_sqe(); sqe != nullptr) {
    io_uring_prep_cancel64(sqe, kIoTag | id, 0);
    io_uring_sqe_set_data64(sqe, hooks_.ignored_tag);
  }
}

void CompletionIo::StartNextSend(int fd) {
  auto queue = sends_.find(fd);
  // An fd's queue stays when empty: a connection sends again soon, and a
  // deque allocates when made.
  if (queue == sends_.end() || queue->second.empty()) return;
  if (Op* next = Find(queue->second.front()); next != nullptr) Queue(queue->second.front(), *next);
}

void CompletionIo::RecycleBuffer(uint32_t flags) {
  if (!(flags & IORING_CQE_F_BUFFER)) return;
  const unsigned short id = static_cast<unsigned short>(flags >> IORING_CQE_BUFFER_SHIFT);
  io_uring_buf_ring_add(buffer_ring_, buffers_.get() + size_t{id} * kBufferBytes, kBufferBytes,
                        id, io_uring_buf_ring_mask(kBufferCount), 0);
  io_uring_buf_ring_advance(buffer_ring_, 1);
}

int CompletionIo::Complete(uint64_t user_data, int32_t result, uint32_t flags) {
  const IoId id = user_data & kIdMask;
  const bool more = (flags & IORING_CQE_F_MORE) != 0;
  Op* op = Find(id);
  if (op == nullptr) {
    // Not expected: an operation goes only after its last completion.
    RecycleBuffer(flags);
    return 0;
  }
  if (!more) op->in_kernel = false;
  switch (op->kind) {
    case Kind::kAccept:
      return CompleteAccept(id, *op, result, more);
    case Kind::kReceive:
      return CompleteReceive(id, *op, result, flags, more);
    case Kind::kSend:
      return CompleteSend(id, *op, result);
  }
  return 0;
}

bool CompletionIo::IsAccept(uint64_t user_data) const {
  auto it = ops_.find(user_data & kIdMask);
  return it != ops_.end() && it->second->kind == Kind::kAccept;
}

void CompletionIo::DropCompletion(int32_t result, bool is_accept) {
  if (is_accept && result >= 0) close(result);
}

int CompletionIo::CompleteAccept(IoId id, Op& op, int32_t result, bool more) {
  if (!op.live) {
    // Cancelled: a connection it took goes, as the contract says.
    if (result >= 0) close(result);
    if (!more) ops_.erase(id);
    return 0;
  }
  if (result >= 0) {
    std::shared_ptr<AcceptCallback> on_accept = op.on_accept;
    if (!more) Rearm(id, op);  // ended by the kernel: armed again
    (*on_accept)(result);
    return 1;
  }
  if (result == -EAGAIN || loop_internal::IsTransientAcceptError(-result)) {
    if (!more) Rearm(id, op);
    return 0;
  }
  std::shared_ptr<AcceptCallback> on_accept = op.on_accept;
  const int fd = op.fd;
  if (more) CancelInKernel(id);
  End(id, op);
  (*on_accept)(ErrnoError(absl::StrCat("io_uring loop: accept on fd ", fd), -result));
  return 1;
}

int CompletionIo::CompleteReceive(IoId id, Op& op, int32_t result, uint32_t flags, bool more) {
  if (!op.live) {
    RecycleBuffer(flags);
    if (!more) ops_.erase(id);
    return 0;
  }
  if (!more) op.cancel_queued = false;
  if (op.holding()) {
    Hold(id, op, result, flags, more);
    return 0;
  }
  if (result > 0 && (flags & IORING_CQE_F_BUFFER)) {
    const size_t buffer = flags >> IORING_CQE_BUFFER_SHIFT;
    std::shared_ptr<ReceiveCallback> on_data = op.on_data;
    if (!more) Rearm(id, op);
    (*on_data)(absl::Span<const char>(buffers_.get() + buffer * kBufferBytes,
                                      static_cast<size_t>(result)));
    // Only now: the span was the callback's until it returned.
    RecycleBuffer(flags);
    return 1;
  }
  RecycleBuffer(flags);
  // Out of buffers (the callbacks give them back), interrupted, or
  // cancelled for a pause that has ended since: armed again.
  if (IsRearmable(result)) {
    if (!more) Rearm(id, op);
    return 0;
  }
  std::shared_ptr<ReceiveCallback> on_data = op.on_data;
  const int fd = op.fd;
  if (more) CancelInKernel(id);
  End(id, op);
  if (result >= 0) {
    (*on_data)(absl::Span<const char>());  // the end of the stream
  } else {
    (*on_data)(ErrnoError(absl::StrCat("io_uring loop: recv on fd ", fd), -result));
  }
  return 1;
}

void CompletionIo::Hold(IoId id, Op& op, int32_t result, uint32_t flags, bool more) {
  if (op.holds_end) {
    // After the end or an error, only the kernel's last words: nothing to
    // keep.
    RecycleBuffer(flags);
    return;
  }
  if (result > 0 && (flags & IORING_CQE_F_BUFFER)) {
    const size_t buffer = flags >> IORING_CQE_BUFFER_SHIFT;
    op.held.append(buffers_.get() + buffer * kBufferBytes, static_cast<size_t>(result));
    RecycleBuffer(flags);
    if (op.paused && more && !op.cancel_queued) {
      // Stops the kernel taking more while paused; the socket keeps the
      // rest, and the peer meets TCP's flow control.
      CancelInKernel(id);
      op.cancel_queued = true;
    }
    if (!more && !op.paused) Rearm(id, op);
    return;
  }
  RecycleBuffer(flags);
  if (IsRearmable(result)) {
    if (!more && !op.paused) Rearm(id, op);
    return;
  }
  // The end of the stream or an error: held behind the bytes.
  op.holds_end = true;
  if (result < 0) {
    op.held_error = ErrnoError(absl::StrCat("io_uring loop: recv on fd ", op.fd), -result);
  }
  if (more) CancelInKernel(id);
}

int CompletionIo::CompleteSend(IoId id, Op& op, int32_t result) {
  const int fd = op.fd;
  if (!op.live) {
    // Cancelled while in the kernel, at the front of its fd's queue: the
    // next send may go now.
    ops_.erase(id);
    if (auto queue = sends_.find(fd); queue != sends_.end() && !queue->second.empty() &&
                                      queue->second.front() == id) {
      queue->second.pop_front();
    }
    StartNextSend(fd);
    return 0;
  }
  absl::Status status;
  if (result > 0) {
    op.sent += static_cast<size_t>(result);
    if (op.sent < op.bytes.size()) {
      Queue(id, op);  // a short write: the rest
      return 0;
    }
  } else if (result == -EINTR || result == -EAGAIN) {
    Queue(id, op);
    return 0;
  } else if (result < 0) {
    status = ErrnoError(absl::StrCat("io_uring loop: send on fd ", fd), -result);
  } else if (op.sent < op.bytes.size()) {
    status = absl::InternalError(absl::StrCat("io_uring loop: send on fd ", fd, " wrote nothing"));
  }
  std::shared_ptr<SendCallback> on_sent = op.on_sent;
  End(id, op);  // not in the kernel: erased, and the next send queued
  (*on_sent)(std::move(status));
  return 1;
}

}  // namespace taskrt::io_uring_loop_internal
