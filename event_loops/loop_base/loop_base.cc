#include "event_loops/loop_base/loop_base.h"

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
  return Wake();
}

absl::StatusOr<int> LoopBase::RunOnce(absl::Duration timeout) {
  if (absl::Status owner = ClaimLoopThread("RunOnce"); !owner.ok()) return owner;
  if (timeout < absl::ZeroDuration()) {
    return absl::InvalidArgumentError(absl::StrCat(label_, ": RunOnce got a negative timeout"));
  }
  return Iterate(timeout);
}

absl::Status LoopBase::Run() {
  if (absl::Status owner = ClaimLoopThread("Run"); !owner.ok()) return owner;
  if (running_) {
    return absl::FailedPreconditionError(absl::StrCat(label_, ": Run re-entered from a callback"));
  }
  running_ = true;
  absl::Status status;
  while (!stop_requested_.exchange(false, std::memory_order_acq_rel)) {
    absl::StatusOr<int> ran = Iterate(absl::InfiniteDuration());
    if (!ran.ok()) {
      status = ran.status();
      break;
    }
  }
  running_ = false;
  return status;
}

void LoopBase::Stop() {
  stop_requested_.store(true, std::memory_order_release);
  // A failed wake-up leaves the Stop to be seen when the current wait ends.
  Wake().IgnoreError();
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

absl::StatusOr<int> LoopBase::Iterate(absl::Duration timeout) {
  absl::StatusOr<int> ran = DispatchReady(timeout);
  if (!ran.ok()) return ran;
  return *ran + RunPosted();
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
