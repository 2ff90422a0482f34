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

namespace platform = io_uring_platform;

constexpr absl::string_view kUser = "io_uring loop";
constexpr platform::Feature kNeededFeatures[] = {
    {IORING_FEAT_NODROP, "IORING_FEAT_NODROP", "Linux 5.5"},
    {IORING_FEAT_EXT_ARG, "IORING_FEAT_EXT_ARG", "Linux 5.11"},
};
constexpr platform::Opcode kNeededOpcodes[] = {
    {IORING_OP_POLL_ADD, "IORING_OP_POLL_ADD"},
    {IORING_OP_POLL_REMOVE, "IORING_OP_POLL_REMOVE"},
    {IORING_OP_NOP, "IORING_OP_NOP"},
};

unsigned ToPollMask(short events) {
  unsigned mask = POLLRDHUP;  // errors and hang-ups are always reported
  if (events & POLLIN) mask |= POLLIN;
  if (events & POLLOUT) mask |= POLLOUT;
  return mask;
}

struct Completion {
  uint64_t user_data;
  int32_t result;
  uint32_t flags;
};

class IoUringLoop final : public LoopBase {
 public:
  static absl::StatusOr<std::unique_ptr<EventLoop>> Create() {
    std::unique_ptr<IoUringLoop> loop(new IoUringLoop());
    if (absl::Status status = loop->Init(); !status.ok()) return status;
    return std::unique_ptr<EventLoop>(std::move(loop));
  }

  ~IoUringLoop() override {
    // The kernel cancels the remaining polls as the ring goes away; they
    // reference no memory of ours.
    if (ring_ready_) platform::ExitRing(&ring_);
  }

  absl::StatusOr<WatchId> Watch(Readiness readiness, std::function<void()> callback) override {
    if (!callback) return absl::InvalidArgumentError("io_uring loop: Watch got an empty callback");
    if (readiness.fd < 0 || fcntl(readiness.fd, F_GETFD) < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("io_uring loop: Watch got a bad file descriptor ", readiness.fd));
    }
    auto shared_callback = std::make_shared<std::function<void()>>(std::move(callback));
    MutexLock lock(&mu_);
    const WatchId id = next_id_++;
    WatchEntry& entry = watches_[id];
    entry.fd = readiness.fd;
    entry.mask = ToPollMask(readiness.events);
    entry.callback = std::move(shared_callback);
    PrepareArmLocked(id, entry);
    if (!entry.armed) {
      watches_.erase(id);
      return SubmitQueueFull("Watch");
    }
    if (absl::Status submitted = SubmitLocked("Watch"); !submitted.ok()) {
      // The poll stays queued and goes with the next submission: queue its
      // removal behind it.
      watches_.erase(id);
      if (io_uring_sqe* sqe = io_uring_get_sqe(&ring_); sqe != nullptr) {
        io_uring_prep_poll_remove(sqe, id);
        io_uring_sqe_set_data64(sqe, kRemoveTag);
      }
      return submitted;
    }
    return id;
  }

  absl::Status Unwatch(WatchId id) override {
    MutexLock lock(&mu_);
    auto it = watches_.find(id);
    if (it == watches_.end()) {
      return absl::NotFoundError(absl::StrCat("io_uring loop: Unwatch of unknown watch ", id));
    }
    const bool armed = it->second.armed;
    watches_.erase(it);
    if (armed) {
      // Now, so that the kernel lets go of the file before the caller closes
      // it. If the poll already ended, the removal fails with ENOENT: fine.
      io_uring_sqe* sqe = GetSqeLocked();
      if (sqe == nullptr) return SubmitQueueFull("Unwatch");
      io_uring_prep_poll_remove(sqe, id);
      io_uring_sqe_set_data64(sqe, kRemoveTag);
      return SubmitLocked("Unwatch");
    }
    return absl::OkStatus();
  }

  std::string name() const override { return "io_uring"; }

  io_uring_loop_internal::LoopStats stats() const {
    MutexLock lock(&mu_);
    return stats_;
  }

 private:
  struct WatchEntry {
    int fd = -1;
    unsigned mask = 0;
    bool armed = false;
    std::shared_ptr<std::function<void()>> callback;
  };

  IoUringLoop() : LoopBase("io_uring loop") {}

  absl::Status Init() {
    // Without cooperative task running: any thread may arm a poll, and the
    // kernel runs the poll's wake-up on that thread, so with it the loop's
    // event would wait until that thread next enters the kernel.
    absl::StatusOr<platform::RingSetup> setup = platform::SetUpRing(
        &ring_, {.user = kUser, .sq_entries = kSqEntries, .cq_entries = kCqEntries});
    if (!setup.ok()) return setup.status();
    ring_ready_ = true;
    if (absl::Status features = platform::CheckFeatures(setup->features, kNeededFeatures);
        !features.ok()) {
      return features;
    }
    if (absl::Status opcodes = platform::ProbeOpcodes(&ring_, kNeededOpcodes); !opcodes.ok()) {
      return opcodes;
    }
    return ProbeMultishotPoll();
  }

  // Arms one multishot poll on a ready eventfd, checks that it reports and
  // stays armed, and removes it again.
  absl::Status ProbeMultishotPoll() {
    const int event_fd = eventfd(1, EFD_NONBLOCK | EFD_CLOEXEC);
    if (event_fd < 0) return ErrnoError("io_uring loop: probe: eventfd", errno);
    absl::Cleanup close_event_fd = [event_fd] { close(event_fd); };
    MutexLock lock(&mu_);
    io_uring_sqe* sqe = GetSqeLocked();
    io_uring_prep_poll_multishot(sqe, event_fd, POLLIN);
    io_uring_sqe_set_data64(sqe, kProbeTag);
    int rc = SubmitRetrying();
    if (rc < 0) return platform::RefusedOrError(kUser, "io_uring_enter", -rc);
    io_uring_cqe* cqe = nullptr;
    rc = platform::WaitRetrying(&ring_, &cqe);
    if (rc < 0) return platform::RefusedOrError(kUser, "io_uring_enter(GETEVENTS)", -rc);
    const int result = cqe->res;
    bool ended = !(cqe->flags & IORING_CQE_F_MORE);
    io_uring_cqe_seen(&ring_, cqe);
    absl::Status status;
    if (result < 0 || !(result & POLLIN) || ended) {
      status = absl::UnavailableError(absl::StrCat(
          "io_uring: multishot poll does not work here (Linux 5.13): ",
          result < 0 ? platform::ErrnoText(-result) : absl::StrCat("result ", result)));
    }
    bool removed = ended;
    if (!ended) {
      sqe = GetSqeLocked();
      io_uring_prep_poll_remove(sqe, kProbeTag);
      io_uring_sqe_set_data64(sqe, kRemoveTag);
      rc = SubmitRetrying();
      if (rc < 0) return platform::RefusedOrError(kUser, "io_uring_enter", -rc);
    }
    // Wait for the poll's end and the removal's own completion.
    while (!ended || !removed) {
      rc = platform::WaitRetrying(&ring_, &cqe);
      if (rc < 0) return platform::RefusedOrError(kUser, "io_uring_enter(GETEVENTS)", -rc);
      if (io_uring_cqe_get_data64(cqe) == kProbeTag && !(cqe->flags & IORING_CQE_F_MORE)) {
        ended = true;
      }
      if (io_uring_cqe_get_data64(cqe) == kRemoveTag) removed = true;
      io_uring_cqe_seen(&ring_, cqe);
    }
    return status;
  }

  // --- Submission side: any thread, under mu_. ---

  io_uring_sqe* GetSqeLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
    if (sqe == nullptr && SubmitRetrying() >= 0) sqe = io_uring_get_sqe(&ring_);
    return sqe;
  }

  int SubmitRetrying() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    ++stats_.submit_calls;
    return platform::SubmitRetrying(&ring_);
  }

  absl::Status SubmitLocked(absl::string_view operation) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    const int rc = SubmitRetrying();
    if (rc < 0) {
      return ErrnoError(absl::StrCat("io_uring loop: ", operation, ": io_uring_submit"), -rc);
    }
    return absl::OkStatus();
  }

  static absl::Status SubmitQueueFull(absl::string_view operation) {
    return absl::ResourceExhaustedError(
        absl::StrCat("io_uring loop: ", operation, ": the submission queue is full"));
  }

  // Queues the multishot poll of `entry`; the caller submits.
  void PrepareArmLocked(WatchId id, WatchEntry& entry) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    io_uring_sqe* sqe = GetSqeLocked();
    if (sqe == nullptr) return;  // left unarmed; the next dispatch retries
    io_uring_prep_poll_multishot(sqe, entry.fd, entry.mask);
    io_uring_sqe_set_data64(sqe, id);
    entry.armed = true;
    ++stats_.polls_armed;
  }

  absl::Status Wake() override {
    MutexLock lock(&mu_);
    return WakeLocked();
  }

  // Makes the loop's wait return: one NOP completion, unless one is already
  // on its way (cleared by the loop when it reaps it).
  absl::Status WakeLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (wake_pending_.exchange(true, std::memory_order_acq_rel)) return absl::OkStatus();
    io_uring_sqe* sqe = GetSqeLocked();
    if (sqe == nullptr) {
      wake_pending_.store(false, std::memory_order_release);
      return SubmitQueueFull("wake-up");
    }
    io_uring_prep_nop(sqe);
    io_uring_sqe_set_data64(sqe, kWakeTag);
    ++stats_.wake_ups;
    absl::Status submitted = SubmitLocked("wake-up");
    if (!submitted.ok()) wake_pending_.store(false, std::memory_order_release);
    return submitted;
  }

  // --- Completion side: the loop thread only. ---

  // Waits until a completion is queued or `timeout` passes.
  absl::Status Wait(absl::Duration timeout) {
    io_uring_cqe* cqe = nullptr;
    if (timeout == absl::InfiniteDuration()) {
      const int rc = platform::WaitRetrying(&ring_, &cqe);
      if (rc < 0) return ErrnoError("io_uring loop: io_uring_wait_cqe", -rc);
      return absl::OkStatus();
    }
    // Capped so that the clock arithmetic cannot overflow; a wait that long
    // may return early, as a wait for events may.
    const absl::Duration capped = std::min(timeout, absl::Hours(24 * 365));
    const auto deadline = std::chrono::steady_clock::now() +
                          absl::ToChronoNanoseconds(absl::Ceil(capped, absl::Nanoseconds(1)));
    while (true) {
      const auto left = deadline - std::chrono::steady_clock::now();
      if (left <= std::chrono::nanoseconds::zero()) return absl::OkStatus();
      const int64_t left_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(left).count();
      __kernel_timespec ts{};
      ts.tv_sec = left_ns / 1'000'000'000;
      ts.tv_nsec = left_ns % 1'000'000'000;
      const int rc = io_uring_wait_cqe_timeout(&ring_, &cqe, &ts);
      if (rc == 0 || rc == -ETIME) return absl::OkStatus();
      if (rc != -EINTR) return ErrnoError("io_uring loop: io_uring_wait_cqe_timeout", -rc);
    }
  }

  absl::StatusOr<int> DispatchReady(absl::Duration timeout) override {
    if (io_uring_cq_ready(&ring_) == 0) {
      if (timeout == absl::ZeroDuration()) {
        // Just poll: let the kernel run pending poll wake-ups and flush an
        // overflowed completion queue.
        io_uring_get_events(&ring_);
      } else if (ExecutionContext& context = CurrentExecutionContext(); context.suspends_task()) {
        // In a stackful task, wait the task's way: the ring fd is readable
        // while completions are queued, and the other tasks keep running.
        const absl::Time deadline = timeout == absl::InfiniteDuration()
                                        ? absl::InfiniteFuture()
                                        : absl::Now() + timeout;
        absl::Status waited = context.WaitFdUntil(ring_.ring_fd, POLLIN, deadline);
        if (!waited.ok() && !absl::IsDeadlineExceeded(waited)) return waited;
      } else if (absl::Status waited = Wait(timeout); !waited.ok()) {
        return waited;
      }
    }
    WaitEnded();
    if (io_uring_cq_ready(&ring_) == 0 && io_uring_cq_has_overflow(&ring_)) {
      io_uring_get_events(&ring_);
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
    bool woken = false;
    for (int i = 0; i < count; ++i) {
      const Completion& completion = completions[i];
      if (completion.user_data == kWakeTag) {
        woken = true;
        continue;
      }
      if (completion.user_data == kRemoveTag || completion.user_data == kProbeTag) continue;
      const WatchId id = completion.user_data;
      const bool ended = !(completion.flags & IORING_CQE_F_MORE);
      std::shared_ptr<std::function<void()>> callback;
      {
        MutexLock lock(&mu_);
        auto it = watches_.find(id);
        if (it == watches_.end()) continue;  // unwatched since
        if (ended) {
          it->second.armed = false;
          // Ended by the kernel (one-shot wake-up, full queue, the
          // submitter's exit): re-arm after the callback. An error result
          // (a closed fd) is reported once and not re-armed.
          if (completion.result >= 0 || completion.result == -ECANCELED) {
            rearm_.push_back(id);
            ++stats_.polls_ended;
          }
        }
        if (completion.result == -ECANCELED) continue;  // no event, just the end
        callback = it->second.callback;
      }
      (*callback)();
      ++ran;
    }
    // Cleared before LoopBase takes the posted work: a Post() from here on
    // sends a new wake-up, one before it is in the batch taken next.
    if (woken) wake_pending_.store(false, std::memory_order_release);
    RearmEnded();
    return ran;
  }

  void RearmEnded() {
    if (rearm_.empty()) return;
    MutexLock lock(&mu_);
    for (WatchId id : rearm_) {
      auto it = watches_.find(id);
      if (it != watches_.end() && !it->second.armed) PrepareArmLocked(id, it->second);
    }
    rearm_.clear();
    // On failure the polls stay queued and go with the next submission.
    SubmitRetrying();
  }

  io_uring ring_{};
  bool ring_ready_ = false;
  std::atomic<bool> wake_pending_{false};
  std::vector<WatchId> rearm_;  // loop thread only

  mutable Mutex mu_;
  WatchId next_id_ ABSL_GUARDED_BY(mu_) = kFirstWatchId;
  absl::flat_hash_map<WatchId, WatchEntry> watches_ ABSL_GUARDED_BY(mu_);
  io_uring_loop_internal::LoopStats stats_ ABSL_GUARDED_BY(mu_);
};

}  // namespace

namespace io_uring_loop_internal {

std::optional<LoopStats> GetLoopStats(const EventLoop& loop) {
  const auto* io_uring_loop = dynamic_cast<const IoUringLoop*>(&loop);
  if (io_uring_loop == nullptr) return std::nullopt;
  return io_uring_loop->stats();
}

}  // namespace io_uring_loop_internal

absl::StatusOr<std::unique_ptr<EventLoop>> NewIoUringLoop() { return IoUringLoop::Create(); }

}  // namespace taskrt
