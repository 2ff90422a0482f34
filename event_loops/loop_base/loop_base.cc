#include "event_loops/loop_base/loop_base.h"

#include <algorithm>
#include <cstdint>
#include <limits>
#include <utility>

#include "absl/strings/str_cat.h"

namespace taskrt {

absl::Status LoopBase::Post(Work work) {
  if (!work) return absl::InvalidArgumentError(absl::StrCat(label_, ": Post got empty work"));
  {
    MutexLock lock(&posted_mu_);
    posted_.push_back(std::move(work));
  }
  // After the push: a backend that coalesces wake-ups clears its pending
  // flag before RunPosted() takes the queue, so either this work is in the
  // batch taken or this Wake() sees the flag clear and wakes the loop.
  return RequestWake();
}

absl::StatusOr<int> LoopBase::RunOnce(absl::Duration timeout) {
  if (absl::Status owner = ClaimLoopThread("RunOnce"); !owner.ok()) return owner;
  if (timeout < absl::ZeroDuration()) {
    return absl::InvalidArgumentError(absl::StrCat(label_, ": RunOnce got a negative timeout"));
  }
  LoopEntered();
  absl::StatusOr<int> ran = Iterate(timeout);
  LoopLeft();
  return ran;
}

absl::Status LoopBase::Run() { return RunLoop("Run", kNoDeadline); }

absl::Status LoopBase::RunUntil(absl::Time deadline) {
  return RunLoop("RunUntil", timers_.ToMonotonic(deadline));
}

absl::Status LoopBase::RunLoop(const char* operation, uint64_t deadline_ns) {
  if (absl::Status owner = ClaimLoopThread(operation); !owner.ok()) return owner;
  if (running_) {
    return absl::FailedPreconditionError(
        absl::StrCat(label_, ": ", operation, " re-entered from a callback"));
  }
  running_ = true;
  LoopEntered();
  absl::Status status;
  bool first = true;
  while (!stop_requested_.exchange(false, std::memory_order_acq_rel)) {
    absl::Duration timeout = absl::InfiniteDuration();
    if (deadline_ns != kNoDeadline) {
      const uint64_t now = loop_internal::MonotonicNowNs();
      // A deadline that has passed still gets one pass over what is ready.
      if (now >= deadline_ns && !first) {
        status = absl::DeadlineExceededError(
            absl::StrCat(label_, ": ", operation, " reached its deadline before a Stop()"));
        break;
      }
      const uint64_t left = now >= deadline_ns ? 0 : deadline_ns - now;
      // Iterate() rounds nothing down, so the wait never ends early.
      if (left < static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
        timeout = absl::Nanoseconds(static_cast<int64_t>(left));
      }
    }
    first = false;
    absl::StatusOr<int> ran = Iterate(timeout);
    if (!ran.ok()) {
      status = ran.status();
      break;
    }
  }
  running_ = false;
  LoopLeft();
  return status;
}

void LoopBase::Stop() {
  stop_requested_.store(true, std::memory_order_release);
  // A failed wake-up leaves the Stop to be seen when the current wait ends.
  RequestWake().IgnoreError();
}

bool LoopBase::IsLoopThread() const {
  return loop_thread_.load(std::memory_order_acquire) == std::this_thread::get_id();
}

absl::Status LoopBase::ClaimLoopThread(const char* operation) {
  std::thread::id expected{};
  const std::thread::id self = std::this_thread::get_id();
  if (loop_thread_.compare_exchange_strong(expected, self, std::memory_order_acq_rel) ||
      expected == self) {
    return absl::OkStatus();
  }
  return absl::PermissionDeniedError(absl::StrCat(
      label_, ": ", operation,
      " called from a thread that is not the loop thread (the first thread to run the loop)"));
}

absl::StatusOr<TimerId> LoopBase::RunAt(absl::Time deadline, std::function<void()> closure) {
  if (!closure) return absl::InvalidArgumentError(absl::StrCat(label_, ": RunAt got an empty closure"));
  return Arm(timers_.ToMonotonic(deadline), closure);
}

absl::StatusOr<TimerId> LoopBase::RunAfter(absl::Duration delay, std::function<void()> closure) {
  if (!closure) {
    return absl::InvalidArgumentError(absl::StrCat(label_, ": RunAfter got an empty closure"));
  }
  return Arm(loop_internal::MonotonicAfter(delay), closure);
}

absl::StatusOr<TimerId> LoopBase::Arm(uint64_t deadline_ns, std::function<void()>& closure) {
  if (IsLoopThread()) {
    absl::StatusOr<TimerId> id = timers_.ArmOnLoop(deadline_ns, closure);
    // Another task on this thread armed it while the loop task waits: the
    // wait was computed without it. Failing that, the loop sees it when the
    // wait ends.
    if (waiting_ && id.ok()) RequestWake().IgnoreError();
    return id;
  }
  bool wake = false;
  absl::StatusOr<TimerId> id = timers_.ArmFromOtherThread(deadline_ns, closure, wake);
  if (!id.ok() || !wake) return id;
  absl::Status woken = RequestWake();
  if (woken.ok()) return id;
  // The loop may sleep past the deadline: take the timer back and report.
  // If it fired meanwhile it was armed after all.
  bool unused = false;
  if (timers_.Cancel(*id, /*on_loop_thread=*/false, unused).ok()) return woken;
  return id;
}

absl::Status LoopBase::Cancel(TimerId id) {
  const bool on_loop_thread = IsLoopThread();
  bool wake = false;
  absl::Status status = timers_.Cancel(id, on_loop_thread, wake);
  // The wake-up only hurries the closure's destruction: the timer is
  // cancelled whether or not it succeeds.
  if (wake) RequestWake().IgnoreError();
  return status;
}

absl::StatusOr<int> LoopBase::Iterate(absl::Duration timeout) {
  const bool timers_may_run = !timers_.running();  // false in a nested RunOnce
  if (timers_may_run && timeout > absl::ZeroDuration()) {
    if (const std::optional<uint64_t> next = timers_.NextDeadline(); next.has_value()) {
      const uint64_t now = loop_internal::MonotonicNowNs();
      const uint64_t left = *next > now ? *next - now : 0;
      if (left < static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
        timeout = std::min(timeout, absl::Nanoseconds(static_cast<int64_t>(left)));
      }
    }
  }
  // Deferred work is ready now.
  if (!deferred_.empty()) timeout = absl::ZeroDuration();
  waiting_ = true;
  absl::StatusOr<int> ran = DispatchReady(timeout);
  waiting_ = false;
  if (!ran.ok()) return ran;
  const int timers = timers_may_run ? timers_.RunDue(loop_internal::MonotonicNowNs()) : 0;
  const int posted = RunPosted() + RunDeferred();
  iterations_.Add();
  callbacks_run_.Add(static_cast<uint64_t>(*ran));
  timers_run_.Add(static_cast<uint64_t>(timers));
  posted_run_.Add(static_cast<uint64_t>(posted));
  return *ran + timers + posted;
}

absl::Status LoopBase::RequestWake() {
  wake_requests_.Add();
  return Wake();
}

LoopMetrics LoopBase::metrics() const {
  LoopMetrics m;
  m.iterations = iterations_.Read();
  m.callbacks_run = callbacks_run_.Read();
  m.timers_run = timers_run_.Read();
  m.posted_run = posted_run_.Read();
  m.wake_requests = wake_requests_.Read();
  m.io_started = io_started_.Read();
  return m;
}

int LoopBase::RunDeferred() {
  std::deque<Work> batch;
  batch.swap(deferred_);
  const int count = static_cast<int>(batch.size());
  for (Work& work : batch) std::move(work)();
  return count;
}

void LoopBase::Defer(Work work) {
  deferred_.push_back(std::move(work));
  // Another task of this thread while the loop task waits: the wait was
  // computed without it.
  if (waiting_) RequestWake().IgnoreError();
}

absl::Status LoopBase::CheckIo(const char* operation, int fd, bool has_callback,
                               loop_internal::SocketUse use) {
  if (!IsLoopThread()) {
    if (absl::Status owner = ClaimLoopThread(operation); !owner.ok()) return owner;
  }
  if (!has_callback) {
    return absl::InvalidArgumentError(absl::StrCat(label_, ": ", operation, " got an empty callback"));
  }
  // An fd with an operation under way was checked when that one started,
  // and is the same socket still (the caller keeps it open meanwhile): a
  // connection's sends cost no getsockopt each.
  if (use == loop_internal::SocketUse::kConnected && HasIoOn(fd)) return absl::OkStatus();
  return loop_internal::CheckSocket(label_, operation, fd, use);
}

bool LoopBase::HasIoOn(int fd) const {
  return readiness_io_ != nullptr && readiness_io_->HasOperationsOn(fd);
}

loop_internal::ReadinessIo& LoopBase::readiness_io() {
  if (readiness_io_ == nullptr) {
    readiness_io_ = std::make_unique<loop_internal::ReadinessIo>(
        *this, label_, [this](Work work) { Defer(std::move(work)); });
  }
  return *readiness_io_;
}

absl::StatusOr<IoId> LoopBase::AcceptEach(int listen_fd, AcceptCallback on_accept) {
  return StartIo("AcceptEach", listen_fd, static_cast<bool>(on_accept),
                 loop_internal::SocketUse::kListening, [&](IoId id) {
                   return readiness_io().AcceptEach(id, listen_fd, std::move(on_accept));
                 });
}

absl::StatusOr<IoId> LoopBase::ReceiveEach(int fd, ReceiveCallback on_data) {
  return StartIo("ReceiveEach", fd, static_cast<bool>(on_data),
                 loop_internal::SocketUse::kConnected,
                 [&](IoId id) { return readiness_io().ReceiveEach(id, fd, std::move(on_data)); });
}

absl::StatusOr<IoId> LoopBase::SendAll(int fd, std::string bytes, SendCallback on_sent) {
  return StartIo("SendAll", fd, static_cast<bool>(on_sent), loop_internal::SocketUse::kConnected,
                 [&](IoId id) {
                   return readiness_io().SendAll(id, fd, std::move(bytes), std::move(on_sent));
                 });
}

template <typename Call>
absl::Status LoopBase::OnIo(const char* operation, IoId id, Call&& call) {
  if (!IsLoopThread()) {
    if (absl::Status owner = ClaimLoopThread(operation); !owner.ok()) return owner;
  }
  if (readiness_io_ == nullptr || !readiness_io_->Owns(id)) {
    return absl::NotFoundError(
        absl::StrCat(label_, ": ", operation, " of operation ", id, ", which is unknown or has ended"));
  }
  return call(*readiness_io_);
}

absl::Status LoopBase::CancelIo(IoId id) {
  return OnIo("CancelIo", id, [id](loop_internal::ReadinessIo& io) { return io.CancelIo(id); });
}

absl::Status LoopBase::PauseReceive(IoId id) {
  return OnIo("PauseReceive", id,
              [id](loop_internal::ReadinessIo& io) { return io.HoldReceive(id, true); });
}

absl::Status LoopBase::ResumeReceive(IoId id) {
  return OnIo("ResumeReceive", id,
              [id](loop_internal::ReadinessIo& io) { return io.HoldReceive(id, false); });
}

int LoopBase::RunPosted() {
  std::deque<Work> batch;
  {
    MutexLock lock(&posted_mu_);
    batch.swap(posted_);
  }
  const int count = static_cast<int>(batch.size());
  for (Work& work : batch) std::move(work)();
  return count;
}

}  // namespace taskrt
