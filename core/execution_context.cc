#include "core/execution_context.h"

#include <linux/futex.h>
#include <poll.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <thread>

#include "core/errors.h"

namespace taskrt {
namespace {

// Parks the OS thread in poll(); EINTR is not an error, just an early return
// after which the caller retries.
class OsThreadContext final : public ExecutionContext {
 public:
  absl::Status WaitFdUntil(int fd, short poll_events, absl::Time deadline) override {
    pollfd entry{.fd = fd, .events = poll_events, .revents = 0};
    while (true) {
      int timeout_ms = -1;
      if (deadline != absl::InfiniteFuture()) {
        const absl::Duration left = deadline - absl::Now();
        if (left <= absl::ZeroDuration()) return absl::DeadlineExceededError("WaitFd: deadline");
        timeout_ms = static_cast<int>(
            std::min<int64_t>(absl::ToInt64Milliseconds(absl::Ceil(left, absl::Milliseconds(1))),
                              std::numeric_limits<int>::max()));
      }
      const int ready = poll(&entry, 1, timeout_ms);
      if (ready > 0) break;
      if (ready < 0 && errno != EINTR) return ErrnoError("poll", errno);
    }
    if (entry.revents & POLLNVAL) {
      return absl::InvalidArgumentError("WaitFd: file descriptor is not open");
    }
    return absl::OkStatus();
  }
  // A spin about as long as one wake-up catches most replies of a round
  // trip (benchmarks/compare's round_trip job).
  std::chrono::nanoseconds spin_before_wait() const override {
    return std::chrono::microseconds(50);
  }
  const char* name() const override { return "os_thread"; }
};

OsThreadContext os_thread_context;

}  // namespace

namespace execution_context_internal {
thread_local constinit ExecutionContext* current = nullptr;
ExecutionContext& OsThreadContext() { return os_thread_context; }
}  // namespace execution_context_internal

using execution_context_internal::current;

void ExecutionContext::Yield() { std::this_thread::yield(); }

void TaskLocals::Set(const void* key, void* value) {
  for (auto it = entries_.begin(); it != entries_.end(); ++it) {
    if (it->first != key) continue;
    if (value != nullptr) {
      it->second = value;
    } else {
      entries_.erase(it);
    }
    return;
  }
  if (value != nullptr) entries_.emplace_back(key, value);
}

namespace {
thread_local TaskLocals thread_task_locals;
}  // namespace

TaskLocals& ExecutionContext::task_locals() const { return thread_task_locals; }

void ExecutionContext::Park(Parker& parker) {
  uint32_t state = Parker::kIdle;
  if (!parker.state_.compare_exchange_strong(state, Parker::kThreadSleeping,
                                             std::memory_order_acq_rel)) {
    return;  // already unparked
  }
  while (parker.state_.load(std::memory_order_acquire) != Parker::kUnparked) {
    // Returns at once if Unpark() changed the state in between.
    syscall(SYS_futex, &parker.state_, FUTEX_WAIT_PRIVATE, Parker::kThreadSleeping, nullptr,
            nullptr, 0);
  }
}

bool ExecutionContext::SwitchToParked(Parker&, Parker&) { return false; }

void ExecutionContext::Wake(void*) {
  std::fprintf(stderr, "taskrt: %s registered a waker but cannot wake\n", name());
  std::abort();
}

void Parker::Park() { CurrentExecutionContext().Park(*this); }

void Parker::Unpark() {
  // A suspended task is the common case, and then nobody else touches
  // state_ any more (Park registered and suspended; Unpark comes once): a
  // plain store wakes it, without the atomic read-modify-write that only
  // the race with a Park still in progress needs.
  if (state_.load(std::memory_order_acquire) == kTaskSuspended) {
    state_.store(kUnparked, std::memory_order_relaxed);
    waker_->Wake(waker_token_);
    return;
  }
  const uint32_t previous = state_.exchange(kUnparked, std::memory_order_acq_rel);
  if (previous == kTaskSuspended) {
    // The task cannot resume, and so cannot free this Parker, before
    // Wake() makes it runnable.
    waker_->Wake(waker_token_);
  } else if (previous == kThreadSleeping) {
    // The sleeper may already have seen kUnparked, returned and freed this
    // Parker: a private futex wake only names the address, the kernel never
    // reads it (glibc's mutexes rely on the same).
    syscall(SYS_futex, &state_, FUTEX_WAKE_PRIVATE, 1, nullptr, nullptr, 0);
  }
}

void Yield() { CurrentExecutionContext().Yield(); }

ScopedExecutionContext::ScopedExecutionContext(ExecutionContext* context)
    : previous_(current) {
  current = context;
}

ScopedExecutionContext::~ScopedExecutionContext() { current = previous_; }

}  // namespace taskrt
