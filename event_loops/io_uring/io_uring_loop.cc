#include "event_loops/io_uring/io_uring_loop.h"

#include <fcntl.h>
#include <liburing.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <ctime>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/cleanup/cleanup.h"
#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "core/errors.h"
#include "core/execution_context.h"
#include "core/mutex.h"
#include "event_loops/io_uring/completion_io.h"
#include "event_loops/io_uring/io_uring_loop_internal.h"
#include "event_loops/loop_base/loop_base.h"
#include "platform/io_uring/ring.h"

namespace taskrt {
namespace {

constexpr unsigned kSqEntries = 256;
constexpr unsigned kCqEntries = 4096;
// user_data of the loop's own requests; watch ids lie between.
constexpr uint64_t kWakeTag = 0;
constexpr WatchId kFirstWatchId = 1;
constexpr uint64_t kProbeTag = ~uint64_t{0} - 1;
constexpr uint64_t kRemoveTag = ~uint64_t{0};
// Completions taken per reaping pass (on the stack: RunOnce may nest).
constexpr int kCompletionsPerPass = 128;
// The ring as the loop wants it: only the loop thread submits, and the
// kernel runs completion work when that thread asks for completions.
// R_DISABLED: the ring gets its issuer when the loop thread enables it.
constexpr unsigned kSingleIssuerFlags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN |
                                        IORING_SETUP_TASKRUN_FLAG | IORING_SETUP_R_DISABLED;
// liburing's INT_FLAG_REG_RING (src/int_flags.h): io_uring_queue_exit()
// unregisters the ring fd while it is set.
constexpr uint8_t kLiburingRegisteredRingFlag = 1;

namespace platform = io_uring_platform;

constexpr absl::string_view kUser = "io_uring loop";
constexpr platform::Feature kNeededFeatures[] = {
    {IORING_FEAT_NODROP, "IORING_FEAT_NODROP", "Linux 5.5"},
    {IORING_FEAT_EXT_ARG, "IORING_FEAT_EXT_ARG", "Linux 5.11"},
};
constexpr platform::Opcode kNeededOpcodes[] = {
    {IORING_OP_POLL_ADD, "IORING_OP_POLL_ADD"},
    {IORING_OP_POLL_REMOVE, "IORING_OP_POLL_REMOVE"},
    {IORING_OP_ASYNC_CANCEL, "IORING_OP_ASYNC_CANCEL"},
};

// Socket I/O as completions (completion_io.h): the opcodes, and a kernel of
// Linux 6.3 or later, recognised by IORING_FEAT_REG_REG_RING; multishot
// receive (6.0) and accept (5.19) have no feature bit of their own.
#ifndef IORING_FEAT_REG_REG_RING
#define IORING_FEAT_REG_REG_RING (1U << 13)
#endif
constexpr platform::Opcode kIoOpcodes[] = {
    {IORING_OP_ACCEPT, "IORING_OP_ACCEPT"},
    {IORING_OP_RECV, "IORING_OP_RECV"},
    {IORING_OP_SEND, "IORING_OP_SEND"},
};
constexpr platform::Feature kIoFeatures[] = {
    {IORING_FEAT_REG_REG_RING, "IORING_FEAT_REG_REG_RING", "Linux 6.3"},
};

unsigned ToPollMask(short events) {
  unsigned mask = POLLRDHUP;  // errors and hang-ups are always reported
  if (events & POLLIN) mask |= POLLIN;
  if (events & POLLOUT) mask |= POLLOUT;
  return mask;
}

// Arms one multishot poll on a ready eventfd in `ring`, checks that it
// reports and stays armed, and removes it again.
absl::Status ProbeMultishotPoll(io_uring* ring) {
  const int event_fd = eventfd(1, EFD_NONBLOCK | EFD_CLOEXEC);
  if (event_fd < 0) return ErrnoError("io_uring loop: probe: eventfd", errno);
  absl::Cleanup close_event_fd = [event_fd] { close(event_fd); };
  io_uring_sqe* sqe = io_uring_get_sqe(ring);
  io_uring_prep_poll_multishot(sqe, event_fd, POLLIN);
  io_uring_sqe_set_data64(sqe, kProbeTag);
  int rc = platform::SubmitRetrying(ring);
  if (rc < 0) return platform::RefusedOrError(kUser, "io_uring_enter", -rc);
  io_uring_cqe* cqe = nullptr;
  rc = platform::WaitRetrying(ring, &cqe);
  if (rc < 0) return platform::RefusedOrError(kUser, "io_uring_enter(GETEVENTS)", -rc);
  const int result = cqe->res;
  bool ended = !(cqe->flags & IORING_CQE_F_MORE);
  io_uring_cqe_seen(ring, cqe);
  absl::Status status;
  if (result < 0 || !(result & POLLIN) || ended) {
    status = absl::UnavailableError(absl::StrCat(
        "io_uring: multishot poll does not work here (Linux 5.13): ",
        result < 0 ? platform::ErrnoText(-result) : absl::StrCat("result ", result)));
  }
  bool removed = ended;
  if (!ended) {
    sqe = io_uring_get_sqe(ring);
    io_uring_prep_poll_remove(sqe, kProbeTag);
    io_uring_sqe_set_data64(sqe, kRemoveTag);
    rc = platform::SubmitRetrying(ring);
    if (rc < 0) return platform::RefusedOrError(kUser, "io_uring_enter", -rc);
  }
  // Wait for the poll's end and the removal's own completion.
  while (!ended || !removed) {
    rc = platform::WaitRetrying(ring, &cqe);
    if (rc < 0) return platform::RefusedOrError(kUser, "io_uring_enter(GETEVENTS)", -rc);
    if (io_uring_cqe_get_data64(cqe) == kProbeTag && !(cqe->flags & IORING_CQE_F_MORE)) {
      ended = true;
    }
    if (io_uring_cqe_get_data64(cqe) == kRemoveTag) removed = true;
    io_uring_cqe_seen(ring, cqe);
  }
  return status;
}

// Arms a multishot poll once on a scratch ring: the loop's ring cannot
// serve, as it takes no submission before the loop thread enables it. A
// success holds for the process and is kept.
absl::Status ProbeMultishotPollOnce() {
  static std::atomic<bool> probed{false};
  if (probed.load(std::memory_order_acquire)) return absl::OkStatus();
  io_uring ring{};
  absl::StatusOr<platform::RingSetup> setup =
      platform::SetUpRing(&ring, {.user = kUser, .sq_entries = 4});
  if (!setup.ok()) return setup.status();
  absl::Status status = ProbeMultishotPoll(&ring);
  platform::ExitRing(&ring);
  if (status.ok()) probed.store(true, std::memory_order_release);
  return status;
}

// Reads an eventfd down to zero.
void DrainEventFd(int fd) {
  uint64_t count;
  while (read(fd, &count, sizeof count) > 0) {
  }
}

struct Completion {
  uint64_t user_data;
  int32_t result;
  uint32_t flags;
};

class IoUringLoop final : public LoopBase {
 public:
  // `readiness_io`: socket I/O on readiness even where completions work.
  static absl::StatusOr<std::unique_ptr<EventLoop>> Create(unsigned extra_setup_flags,
                                                           bool readiness_io) {
    std::unique_ptr<IoUringLoop> loop(new IoUringLoop());
    if (absl::Status status = loop->Init(extra_setup_flags, readiness_io); !status.ok()) {
      return status;
    }
    return std::unique_ptr<EventLoop>(std::move(loop));
  }

  ~IoUringLoop() override {
    if (ring_ready_) {
      // The registration lives in the loop thread's table, where only that
      // thread can remove it; liburing would remove this thread's entry of
      // the same index instead.
      if (ring_fd_registered_.load(std::memory_order_acquire) && !IsLoopThread()) {
        ring_.int_flags &= static_cast<uint8_t>(~kLiburingRegisteredRingFlag);
        ring_.enter_ring_fd = ring_.ring_fd;
      }
      if (completion_io_ != nullptr) DrainIoForExit();
      // The kernel cancels the remaining polls as the ring goes away; they
      // reference no memory of ours.
      platform::ExitRing(&ring_);
    }
    // After the ring: the kernel has let go of the buffers and the bytes.
    completion_io_.reset();
    if (wake_fd_ >= 0) close(wake_fd_);
    if (notify_fd_ >= 0) close(notify_fd_);
  }

  absl::StatusOr<WatchId> Watch(Readiness readiness, std::function<void()> callback) override {
    if (!callback) return absl::InvalidArgumentError("io_uring loop: Watch got an empty callback");
    if (readiness.fd < 0 || fcntl(readiness.fd, F_GETFD) < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("io_uring loop: Watch got a bad file descriptor ", readiness.fd));
    }
    auto shared_callback = std::make_shared<std::function<void()>>(std::move(callback));
    const bool on_loop = OnStartedLoopThread();
    WatchId id;
    {
      MutexLock lock(&mu_);
      id = next_id_++;
      WatchEntry& entry = watches_[id];
      entry.fd = readiness.fd;
      entry.mask = ToPollMask(readiness.events);
      entry.callback = std::move(shared_callback);
      if (on_loop) {
        // Queued in the ring; the loop's next submission takes it.
        PrepareArmLocked(id, entry);
        if (!entry.armed) {
          watches_.erase(id);
          return SubmitQueueFull("Watch");
        }
      } else {
        requests_.push_back({Request::kArm, id});
      }
    }
    if (on_loop) {
      // Another task of this thread, while the loop task waits: the wait
      // must end for the poll to be submitted.
      if (sleeping_.load(std::memory_order_seq_cst)) Wake().IgnoreError();
      return id;
    }
    stats_.handed_over.fetch_add(1, std::memory_order_relaxed);
    // The watch is registered whatever the wake-up does: the loop arms it
    // at its next iteration.
    Wake().IgnoreError();
    return id;
  }

  absl::Status Unwatch(WatchId id) override {
    const bool on_loop = OnStartedLoopThread();
    Parker parker;
    bool wait = false;
    {
      MutexLock lock(&mu_);
      auto it = watches_.find(id);
      if (it == watches_.end()) {
        return absl::NotFoundError(absl::StrCat("io_uring loop: Unwatch of unknown watch ", id));
      }
      const bool armed = it->second.armed;
      if (!armed) {
        // No poll in the kernel (not yet armed, or ended): nothing holds
        // the file. A queued arm request finds no watch and is dropped.
        watches_.erase(it);
        return absl::OkStatus();
      }
      if (on_loop) {
        io_uring_sqe* sqe = GetSqe();
        if (sqe == nullptr) return SubmitQueueFull("Unwatch");
        watches_.erase(it);
        PrepareRemove(sqe, id);
      } else {
        watches_.erase(it);
        // While the loop thread is out of the loop nobody can say when it
        // comes back: the removal waits for its next iteration, Unwatch
        // does not.
        wait = in_loop_;
        removing_[id] = wait ? &parker : nullptr;
        requests_.push_back({Request::kRemove, id});
      }
    }
    if (on_loop) {
      // Now, so that the kernel lets go of the file before the caller closes
      // it (a poll left armed would keep a socket open): submitting the
      // removal and running the completion work it queues ends the poll.
      return EnterNow("Unwatch");
    }
    stats_.handed_over.fetch_add(1, std::memory_order_relaxed);
    absl::Status woken = Wake();
    if (!wait) return woken;
    if (!woken.ok()) {
      MutexLock lock(&mu_);
      // The loop may not come: withdraw the Parker (an Unpark under mu_ is
      // complete already) and report the failed wake.
      if (auto it = removing_.find(id); it != removing_.end()) it->second = nullptr;
      return woken;
    }
    // Until the loop thread has seen the poll's last completion (the kernel
    // let go of the file before it posted it), or has left the loop.
    parker.Park();
    return absl::OkStatus();
  }

  std::string name() const override { return "io_uring"; }

  // Socket I/O: completions on the ring where it has them (completion_io.h),
  // else LoopBase's readiness path.
  absl::StatusOr<IoId> AcceptEach(int listen_fd, AcceptCallback on_accept) override {
    if (completion_io_ == nullptr) return LoopBase::AcceptEach(listen_fd, std::move(on_accept));
    return StartIo("AcceptEach", listen_fd, static_cast<bool>(on_accept),
                   loop_internal::SocketUse::kListening, [&](IoId id) {
                     return IoStarted(completion_io_->AcceptEach(id, listen_fd, std::move(on_accept)));
                   });
  }

  absl::StatusOr<IoId> ReceiveEach(int fd, ReceiveCallback on_data) override {
    if (completion_io_ == nullptr) return LoopBase::ReceiveEach(fd, std::move(on_data));
    return StartIo("ReceiveEach", fd, static_cast<bool>(on_data),
                   loop_internal::SocketUse::kConnected, [&](IoId id) {
                     return IoStarted(completion_io_->ReceiveEach(id, fd, std::move(on_data)));
                   });
  }

  absl::StatusOr<IoId> SendAll(int fd, std::string bytes, SendCallback on_sent) override {
    if (completion_io_ == nullptr) return LoopBase::SendAll(fd, std::move(bytes), std::move(on_sent));
    return StartIo("SendAll", fd, static_cast<bool>(on_sent), loop_internal::SocketUse::kConnected,
                   [&](IoId id) {
                     return IoStarted(
                         completion_io_->SendAll(id, fd, std::move(bytes), std::move(on_sent)));
                   });
  }

  absl::Status CancelIo(IoId id) override {
    // LoopBase's checks the thread (and claims it, as RunOnce does).
    if (completion_io_ == nullptr || !IsLoopThread()) return LoopBase::CancelIo(id);
    absl::Status cancelled = completion_io_->CancelIo(id, started_);
    if (!absl::IsNotFound(cancelled)) return cancelled;
    return LoopBase::CancelIo(id);
  }

  bool HasIoOn(int fd) const override {
    if (completion_io_ == nullptr) return LoopBase::HasIoOn(fd);
    return completion_io_->HasOperationsOn(fd);
  }

  absl::Status PauseReceive(IoId id) override {
    if (completion_io_ == nullptr || !IsLoopThread()) return LoopBase::PauseReceive(id);
    absl::Status paused = completion_io_->HoldReceive(id, true);
    if (!absl::IsNotFound(paused)) return paused;
    return LoopBase::PauseReceive(id);
  }

  absl::Status ResumeReceive(IoId id) override {
    if (completion_io_ == nullptr || !IsLoopThread()) return LoopBase::ResumeReceive(id);
    absl::Status resumed = IoStarted(completion_io_->HoldReceive(id, false));
    if (!absl::IsNotFound(resumed)) return resumed;
    return LoopBase::ResumeReceive(id);
  }

  io_uring_loop_internal::LoopStats stats() const {
    return {
        .enter_calls = stats_.enter_calls.load(std::memory_order_relaxed),
        .polls_armed = stats_.polls_armed.load(std::memory_order_relaxed),
        .polls_ended = stats_.polls_ended.load(std::memory_order_relaxed),
        .handed_over = stats_.handed_over.load(std::memory_order_relaxed),
        .wake_ups = stats_.wake_ups.load(std::memory_order_relaxed),
        .io_rearmed = completion_io_ != nullptr ? completion_io_->rearms() : 0,
    };
  }

  io_uring_loop_internal::LoopSetup setup() const {
    return {
        .single_issuer = single_issuer_,
        .fallback = fallback_,
        .ring_fd_registered = ring_fd_registered_.load(std::memory_order_acquire),
        .completion_io = completion_io_ != nullptr,
        .io_fallback = io_fallback_,
    };
  }

 private:
  struct WatchEntry {
    int fd = -1;
    unsigned mask = 0;
    // A poll of this watch is in the ring (queued or in the kernel) and its
    // last completion is not reaped yet.
    bool armed = false;
    std::shared_ptr<std::function<void()>> callback;
  };

  // A Watch or Unwatch from a thread other than the loop's, for the loop
  // thread to carry out.
  struct Request {
    enum Kind { kArm, kRemove } kind;
    WatchId id;
  };

  struct Counters {
    std::atomic<uint64_t> enter_calls{0};
    std::atomic<uint64_t> polls_armed{0};
    std::atomic<uint64_t> polls_ended{0};
    std::atomic<uint64_t> handed_over{0};
    std::atomic<uint64_t> wake_ups{0};
  };

  IoUringLoop() : LoopBase("io_uring loop") {}

  absl::Status Init(unsigned extra_setup_flags, bool readiness_io) {
    const platform::RingOptions options = {
        .user = kUser, .sq_entries = kSqEntries, .cq_entries = kCqEntries};
    platform::RingOptions single_issuer = options;
    single_issuer.flags = kSingleIssuerFlags | extra_setup_flags;
    absl::StatusOr<platform::RingSetup> setup = platform::SetUpRing(&ring_, single_issuer);
    single_issuer_ = setup.ok();
    if (absl::IsUnavailable(setup.status())) {
      // A kernel before 6.1 refuses DEFER_TASKRUN with EINVAL. A sandbox
      // that refuses io_uring refuses the plain ring too.
      fallback_ = std::string(setup.status().message());
      setup = platform::SetUpRing(&ring_, options);
    }
    if (!setup.ok()) return setup.status();
    ring_ready_ = true;
    if (absl::Status features = platform::CheckFeatures(setup->features, kNeededFeatures);
        !features.ok()) {
      return features;
    }
    // The opcode probe is a registration, which a disabled ring accepts.
    if (absl::Status opcodes = platform::ProbeOpcodes(&ring_, kNeededOpcodes); !opcodes.ok()) {
      return opcodes;
    }
    if (absl::Status probed = ProbeMultishotPollOnce(); !probed.ok()) return probed;
    wake_fd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (wake_fd_ < 0) return ErrnoError("io_uring loop: eventfd", errno);
    SetUpCompletionIo(setup->features, readiness_io);
    return absl::OkStatus();
  }

  // Socket I/O as completions where the ring has what it needs; otherwise
  // on readiness (LoopBase), with the reason kept for setup().
  void SetUpCompletionIo(unsigned features, bool readiness_io) {
    if (readiness_io) {
      io_fallback_ = "io_uring loop: socket I/O on readiness, as asked";
      return;
    }
    absl::Status usable = platform::CheckFeatures(features, kIoFeatures);
    if (usable.ok()) usable = platform::ProbeOpcodes(&ring_, kIoOpcodes);
    if (usable.ok()) {
      // Registered before the ring is enabled, while any thread may.
      absl::StatusOr<std::unique_ptr<io_uring_loop_internal::CompletionIo>> io =
          io_uring_loop_internal::CompletionIo::Create(
              &ring_, {.get_sqe = [this] { return GetSqe(); },
                       .enter_now = [this](absl::string_view op) { return EnterNow(op); },
                       .defer = [this](Work work) { Defer(std::move(work)); },
                       .ignored_tag = kRemoveTag});
      if (io.ok()) {
        completion_io_ = std::move(*io);
        return;
      }
      usable = io.status();
    }
    io_fallback_ = std::string(usable.message());
  }

  // After a socket operation's start: when queued, the loop's next
  // iteration submits it. Another task of this thread may have queued it
  // while the loop task waits. Returns `started`.
  absl::Status IoStarted(absl::Status started) {
    if (started.ok() && sleeping_.load(std::memory_order_seq_cst)) Wake().IgnoreError();
    return started;
  }

  // The loop is going: on its thread, cancels every request and runs what
  // that completes; then closes the connections accepted in completions
  // nobody will handle.
  void DrainIoForExit() {
    if (started_ && IsLoopThread()) {
      if (io_uring_sqe* sqe = GetSqe(); sqe != nullptr) {
        io_uring_prep_cancel64(sqe, 0, IORING_ASYNC_CANCEL_ANY);
        io_uring_sqe_set_data64(sqe, kRemoveTag);
        EnterNow("cancel at exit").IgnoreError();
      }
    }
    io_uring_cqe* cqe;
    unsigned head;
    unsigned count = 0;
    io_uring_for_each_cqe(&ring_, head, cqe) {
      const uint64_t user_data = io_uring_cqe_get_data64(cqe);
      if (io_uring_loop_internal::CompletionIo::IsIoCompletion(user_data)) {
        io_uring_loop_internal::CompletionIo::DropCompletion(cqe->res,
                                                             completion_io_->IsAccept(user_data));
      }
      ++count;
    }
    io_uring_cq_advance(&ring_, count);
  }

  // Whether the caller is the loop thread and the loop has started: then
  // it may use the ring.
  bool OnStartedLoopThread() const {
    return IsLoopThread() && started_;  // started_ is read on the loop thread only
  }

  // The loop thread's first iteration: it becomes the ring's only issuer.
  absl::Status StartOnLoopThread() {
    if (single_issuer_) {
      if (const int rc = io_uring_enable_rings(&ring_); rc < 0) {
        return ErrnoError("io_uring loop: io_uring_enable_rings", -rc);
      }
    }
    // Saves the kernel a file lookup per io_uring_enter. Where it fails (an
    // older kernel; a thread that holds many registrations) the ring is
    // entered by its fd.
    ring_fd_registered_.store(io_uring_register_ring_fd(&ring_) == 1, std::memory_order_release);
    started_ = true;
    if (!PrepareWakePoll()) return SubmitQueueFull("wake-up poll");
    return absl::OkStatus();
  }

  // Whether the loop thread is in RunOnce/Run/RunUntil: then a waiting
  // cross-thread Unwatch is sure to be served.
  void LoopEntered() override {
    if (loop_depth_++ > 0) return;
    MutexLock lock(&mu_);
    in_loop_ = true;
  }

  void LoopLeft() override {
    if (--loop_depth_ > 0) return;
    MutexLock lock(&mu_);
    in_loop_ = false;
    // Their removals wait for the next iteration; they need not.
    for (auto& [id, parker] : removing_) {
      if (parker != nullptr) parker->Unpark();
      parker = nullptr;
    }
  }

  // --- Submission side: the loop thread only. ---

  io_uring_sqe* GetSqe() {
    io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
    if (sqe == nullptr) {
      stats_.enter_calls.fetch_add(1, std::memory_order_relaxed);
      if (platform::SubmitRetrying(&ring_) >= 0) sqe = io_uring_get_sqe(&ring_);
    }
    return sqe;
  }

  // Cancels the poll of watch `id`. IORING_OP_POLL_REMOVE would fail
  // (EALREADY) while a wake-up of the poll waits to run, which with
  // DEFER_TASKRUN lasts until the loop thread next enters the kernel; a
  // cancellation marks the poll, and that wake-up ends it. If the poll
  // already ended, the cancellation fails with ENOENT: fine.
  static void PrepareRemove(io_uring_sqe* sqe, WatchId id) {
    io_uring_prep_cancel64(sqe, id, 0);
    io_uring_sqe_set_data64(sqe, kRemoveTag);
  }

  static absl::Status SubmitQueueFull(absl::string_view operation) {
    return absl::ResourceExhaustedError(
        absl::StrCat("io_uring loop: ", operation, ": the submission queue is full"));
  }

  // Queues the multishot poll of `entry`; the loop's next submission takes
  // it.
  void PrepareArmLocked(WatchId id, WatchEntry& entry) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    io_uring_sqe* sqe = GetSqe();
    if (sqe == nullptr) return;
    io_uring_prep_poll_multishot(sqe, entry.fd, entry.mask);
    io_uring_sqe_set_data64(sqe, id);
    entry.armed = true;
    stats_.polls_armed.fetch_add(1, std::memory_order_relaxed);
  }

  // Queues the multishot poll of the wake-up eventfd. Its counter is never
  // read down: every write wakes the poll all the same, and 2^64 writes
  // take longer than any loop lives.
  bool PrepareWakePoll() {
    io_uring_sqe* sqe = GetSqe();
    if (sqe == nullptr) return false;
    io_uring_prep_poll_multishot(sqe, wake_fd_, POLLIN);
    io_uring_sqe_set_data64(sqe, kWakeTag);
    return true;
  }

  // Submits what is queued and runs the completion work that is due, at
  // once, without waiting.
  absl::Status EnterNow(absl::string_view operation) {
    int rc;
    do {
      stats_.enter_calls.fetch_add(1, std::memory_order_relaxed);
      rc = io_uring_submit_and_get_events(&ring_);
    } while (rc == -EINTR);
    if (rc < 0) {
      return ErrnoError(absl::StrCat("io_uring loop: ", operation, ": io_uring_enter"), -rc);
    }
    return absl::OkStatus();
  }

  // Whether the kernel holds completion work or completions for this ring
  // that only an io_uring_enter brings out.
  bool KernelHasWork() const {
    const unsigned flags = IO_URING_READ_ONCE(*ring_.sq.kflags);
    return (flags & (IORING_SQ_TASKRUN | IORING_SQ_CQ_OVERFLOW)) != 0;
  }

  // Carries out the Watch/Unwatch requests of other threads.
  void TakeRequests() {
    MutexLock lock(&mu_);
    size_t done = 0;
    for (; done < requests_.size(); ++done) {
      const Request& request = requests_[done];
      if (request.kind == Request::kArm) {
        auto it = watches_.find(request.id);
        if (it == watches_.end() || it->second.armed) continue;  // unwatched since
        PrepareArmLocked(request.id, it->second);
        if (!it->second.armed) break;  // the ring is full: next iteration
      } else {
        // Gone from removing_: the poll ended meanwhile, the waiter is free.
        if (!removing_.contains(request.id)) continue;
        io_uring_sqe* sqe = GetSqe();
        if (sqe == nullptr) break;
        PrepareRemove(sqe, request.id);
      }
    }
    requests_.erase(requests_.begin(), requests_.begin() + static_cast<ptrdiff_t>(done));
  }

  // From any thread. Pairs with the loop's sleeping_ store and
  // wake_requested_ exchange (all seq_cst): either the loop sees the request
  // before it sleeps, or this sees it asleep and writes the eventfd.
  absl::Status Wake() override {
    wake_requested_.store(true, std::memory_order_seq_cst);
    if (!sleeping_.load(std::memory_order_seq_cst)) return absl::OkStatus();
    if (wake_sent_.exchange(true, std::memory_order_acq_rel)) return absl::OkStatus();
    stats_.wake_ups.fetch_add(1, std::memory_order_relaxed);
    const uint64_t one = 1;
    while (write(wake_fd_, &one, sizeof one) < 0) {
      if (errno == EINTR) continue;
      const int error = errno;
      wake_sent_.store(false, std::memory_order_release);
      return ErrnoError("io_uring loop: wake-up: write(eventfd)", error);
    }
    return absl::OkStatus();
  }

  // --- Completion side: the loop thread only. ---

  // Submits what is queued and waits until a completion is queued or
  // `timeout` passes: one io_uring_enter.
  absl::Status SubmitAndWait(absl::Duration timeout) {
    io_uring_cqe* cqe = nullptr;
    if (timeout == absl::InfiniteDuration()) {
      int rc;
      do {
        stats_.enter_calls.fetch_add(1, std::memory_order_relaxed);
        rc = io_uring_submit_and_wait(&ring_, 1);
      } while (rc == -EINTR);
      if (rc < 0) return ErrnoError("io_uring loop: io_uring_submit_and_wait", -rc);
      return absl::OkStatus();
    }
    // Capped so that the clock arithmetic cannot overflow; a wait that long
    // may return early, as a wait for events may.
    const absl::Duration capped = std::min(timeout, absl::Hours(24 * 365));
    const auto deadline = std::chrono::steady_clock::now() +
                          absl::ToChronoNanoseconds(absl::Ceil(capped, absl::Nanoseconds(1)));
    while (true) {
      const auto left = deadline - std::chrono::steady_clock::now();
      if (left <= std::chrono::nanoseconds::zero()) return EnterIfNeeded("io_uring_submit");
      const int64_t left_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(left).count();
      __kernel_timespec ts{};
      ts.tv_sec = left_ns / 1'000'000'000;
      ts.tv_nsec = left_ns % 1'000'000'000;
      stats_.enter_calls.fetch_add(1, std::memory_order_relaxed);
      const int rc = io_uring_submit_and_wait_timeout(&ring_, &cqe, 1, &ts, nullptr);
      if (rc >= 0 || rc == -ETIME) return absl::OkStatus();
      if (rc != -EINTR) {
        return ErrnoError("io_uring loop: io_uring_submit_and_wait_timeout", -rc);
      }
    }
  }

  // Without waiting: submits what is queued and brings out completion work
  // the kernel holds; no system call when there is neither.
  absl::Status EnterIfNeeded(absl::string_view operation) {
    if (io_uring_sq_ready(&ring_) == 0 && !KernelHasWork()) return absl::OkStatus();
    return EnterNow(operation);
  }

  // In a stackful task: waits the task's way, so the other tasks keep the
  // thread. The ring's registered eventfd is signalled when completion
  // work is queued for the loop thread and when completions are posted;
  // the ring fd itself is not woken by queued completion work.
  absl::Status WaitInTask(ExecutionContext& context, absl::Duration timeout) {
    if (notify_fd_ < 0) {
      const int fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
      if (fd < 0) return ErrnoError("io_uring loop: eventfd", errno);
      if (const int rc = io_uring_register_eventfd(&ring_, fd); rc < 0) {
        close(fd);
        return ErrnoError("io_uring loop: io_uring_register_eventfd", -rc);
      }
      notify_fd_ = fd;
    }
    // Read down first: a signal from here on means new work.
    DrainEventFd(notify_fd_);
    if (absl::Status entered = EnterNow("io_uring_submit"); !entered.ok()) return entered;
    if (io_uring_cq_ready(&ring_) > 0) return absl::OkStatus();
    const absl::Time deadline =
        timeout == absl::InfiniteDuration() ? absl::InfiniteFuture() : absl::Now() + timeout;
    absl::Status waited = context.WaitFdUntil(notify_fd_, POLLIN, deadline);
    if (!waited.ok() && !absl::IsDeadlineExceeded(waited)) return waited;
    return EnterIfNeeded("io_uring_get_events");
  }

  absl::StatusOr<int> DispatchReady(absl::Duration timeout) override {
    if (!started_) {
      if (absl::Status started = StartOnLoopThread(); !started.ok()) return started;
    }
    TakeRequests();
    if (completion_io_ != nullptr) completion_io_->SubmitPending();
    bool block = timeout > absl::ZeroDuration();
    sleeping_.store(true, std::memory_order_seq_cst);
    // Cleared before LoopBase takes the posted work: a Post() from here on
    // wakes the next wait; one before it is in the batch taken next.
    if (wake_requested_.exchange(false, std::memory_order_seq_cst)) block = false;
    if (io_uring_cq_ready(&ring_) > 0) block = false;
    absl::Status waited;
    if (!block) {
      waited = EnterIfNeeded("io_uring_submit");
    } else if (ExecutionContext& context = CurrentExecutionContext(); context.suspends_task()) {
      waited = WaitInTask(context, timeout);
    } else {
      waited = SubmitAndWait(timeout);
    }
    sleeping_.store(false, std::memory_order_seq_cst);
    wake_sent_.store(false, std::memory_order_release);
    WaitEnded();
    if (!waited.ok()) return waited;
    if (io_uring_cq_ready(&ring_) == 0 && io_uring_cq_has_overflow(&ring_)) {
      if (absl::Status entered = EnterNow("io_uring_get_events"); !entered.ok()) return entered;
    }

    Completion completions[kCompletionsPerPass];
    int count = 0;
    io_uring_cqe* cqe;
    unsigned head;
    io_uring_for_each_cqe(&ring_, head, cqe) {
      completions[count++] = {cqe->user_data, cqe->res, cqe->flags};
      if (count == kCompletionsPerPass) break;
    }
    io_uring_cq_advance(&ring_, static_cast<unsigned>(count));

    int ran = 0;
    bool rearm_wake_poll = false;
    for (int i = 0; i < count; ++i) {
      const Completion& completion = completions[i];
      const bool ended = !(completion.flags & IORING_CQE_F_MORE);
      if (completion.user_data == kWakeTag) {
        rearm_wake_poll = rearm_wake_poll || ended;
        continue;
      }
      if (completion.user_data == kRemoveTag) continue;
      if (io_uring_loop_internal::CompletionIo::IsIoCompletion(completion.user_data)) {
        ran += completion_io_->Complete(completion.user_data, completion.result, completion.flags);
        continue;
      }
      const WatchId id = completion.user_data;
      std::shared_ptr<std::function<void()>> callback;
      {
        MutexLock lock(&mu_);
        if (ended) {
          if (auto removing = removing_.find(id); removing != removing_.end()) {
            // The last completion of an unwatched poll: its Unwatch may
            // return.
            if (removing->second != nullptr) removing->second->Unpark();
            removing_.erase(removing);
            continue;
          }
        }
        auto it = watches_.find(id);
        if (it == watches_.end()) continue;  // unwatched since
        if (ended) {
          it->second.armed = false;
          // Ended by the kernel (one-shot wake-up, full queue): re-arm after
          // the callback. An error result (a closed fd) is reported once and
          // not re-armed.
          if (completion.result >= 0 || completion.result == -ECANCELED) {
            rearm_.push_back(id);
            stats_.polls_ended.fetch_add(1, std::memory_order_relaxed);
          }
        }
        if (completion.result == -ECANCELED) continue;  // no event, just the end
        callback = it->second.callback;
      }
      (*callback)();
      ++ran;
    }
    if (rearm_wake_poll && !PrepareWakePoll()) return SubmitQueueFull("wake-up poll");
    RearmEnded();
    return ran;
  }

  // Queues the polls ended by the kernel again; the next submission takes
  // them.
  void RearmEnded() {
    if (rearm_.empty()) return;
    MutexLock lock(&mu_);
    for (WatchId id : rearm_) {
      auto it = watches_.find(id);
      if (it != watches_.end() && !it->second.armed) PrepareArmLocked(id, it->second);
    }
    rearm_.clear();
  }

  io_uring ring_{};
  bool ring_ready_ = false;
  bool single_issuer_ = false;  // set by Init, read-only after
  std::string fallback_;        // set by Init, read-only after
  // Socket I/O as completions; null: on readiness, for `io_fallback_`.
  // Set by Init; used on the loop thread only.
  std::unique_ptr<io_uring_loop_internal::CompletionIo> completion_io_;
  std::string io_fallback_;  // set by Init, read-only after
  int wake_fd_ = -1;            // written by Wake(), polled by the ring
  int notify_fd_ = -1;          // the ring's registered eventfd; loop thread only
  bool started_ = false;        // loop thread only
  std::atomic<bool> ring_fd_registered_{false};
  std::atomic<bool> sleeping_{false};
  std::atomic<bool> wake_requested_{false};
  std::atomic<bool> wake_sent_{false};
  std::vector<WatchId> rearm_;  // loop thread only
  int loop_depth_ = 0;          // loop thread only: RunOnce/Run nesting
  Counters stats_;

  mutable Mutex mu_;
  WatchId next_id_ ABSL_GUARDED_BY(mu_) = kFirstWatchId;
  absl::flat_hash_map<WatchId, WatchEntry> watches_ ABSL_GUARDED_BY(mu_);
  std::vector<Request> requests_ ABSL_GUARDED_BY(mu_);
  bool in_loop_ ABSL_GUARDED_BY(mu_) = false;
  // Polls unwatched from other threads whose last completion the loop has
  // not seen yet, and the Unwatch waiting for it (null: none waits).
  absl::flat_hash_map<WatchId, Parker*> removing_ ABSL_GUARDED_BY(mu_);
};

}  // namespace

namespace io_uring_loop_internal {

std::optional<LoopStats> GetLoopStats(const EventLoop& loop) {
  const auto* io_uring_loop = dynamic_cast<const IoUringLoop*>(&loop);
  if (io_uring_loop == nullptr) return std::nullopt;
  return io_uring_loop->stats();
}

std::optional<LoopSetup> GetLoopSetup(const EventLoop& loop) {
  const auto* io_uring_loop = dynamic_cast<const IoUringLoop*>(&loop);
  if (io_uring_loop == nullptr) return std::nullopt;
  return io_uring_loop->setup();
}

absl::StatusOr<std::unique_ptr<EventLoop>> NewLoopForTest(unsigned extra_setup_flags,
                                                          bool readiness_io) {
  return IoUringLoop::Create(extra_setup_flags, readiness_io);
}

}  // namespace io_uring_loop_internal

absl::StatusOr<std::unique_ptr<EventLoop>> NewIoUringLoop() {
  return IoUringLoop::Create(0, /*readiness_io=*/false);
}

}  // namespace taskrt
