#include "core/execution_context.h"

#include <linux/futex.h>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <thread>

#include "absl/time/clock.h"
#include "core/errors.h"
#include "core/trace.h"

namespace taskrt {
namespace {

absl::Duration MonotonicNow() {
  timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  return absl::DurationFromTimespec(now);
}

// `deadline` as an absolute CLOCK_MONOTONIC time. The wall clock is read
// first, so the monotonic reading is the later one and the conversion errs
// late, never early, by the gap between the two reads. An infinite
// deadline saturates to the largest timespec.
timespec MonotonicDeadline(absl::Time deadline) {
  const absl::Duration left = deadline - absl::Now();
  return absl::ToTimespec(MonotonicNow() + left);
}

// Parks the OS thread in poll(); EINTR is not an error, just an early return
// after which the caller retries.
class OsThreadContext final : public ExecutionContext {
 public:
  absl::Status WaitFdUntil(int fd, short poll_events, absl::Time deadline) override {
    pollfd entry{.fd = fd, .events = poll_events, .revents = 0};
    trace::ParkSpan span;
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
  trace::ParkSpan span;
  while (parker.state_.load(std::memory_order_acquire) != Parker::kUnparked) {
    // Returns at once if Unpark() changed the state in between.
    syscall(SYS_futex, &parker.state_, FUTEX_WAIT_PRIVATE, Parker::kThreadSleeping, nullptr,
            nullptr, 0);
  }
}

bool ExecutionContext::ParkUntil(Parker& parker, absl::Time deadline) {
  if (deadline == absl::InfiniteFuture()) {
    Park(parker);
    return true;
  }
  if (deadline <= absl::Now()) {
    return parker.state_.load(std::memory_order_acquire) == Parker::kUnparked;
  }
  uint32_t state = Parker::kIdle;
  if (!parker.state_.compare_exchange_strong(state, Parker::kThreadSleeping,
                                             std::memory_order_acq_rel)) {
    return true;  // already unparked
  }
  const timespec until = MonotonicDeadline(deadline);
  trace::ParkSpan span;
  while (parker.state_.load(std::memory_order_acquire) != Parker::kUnparked) {
    // FUTEX_WAIT_BITSET takes an absolute CLOCK_MONOTONIC timeout, so a
    // spurious or EINTR return needs no recomputation. EAGAIN: the state
    // changed before the wait; any other error ends the wait as a timeout
    // would rather than spin.
    const long result = syscall(SYS_futex, &parker.state_, FUTEX_WAIT_BITSET_PRIVATE,
                                Parker::kThreadSleeping, &until, nullptr, FUTEX_BITSET_MATCH_ANY);
    if (result != 0 && errno != EINTR && errno != EAGAIN) {
      // Give up unless Unpark() came meanwhile: whoever moves the state on
      // from kThreadSleeping decides.
      uint32_t expected = Parker::kThreadSleeping;
      if (parker.state_.compare_exchange_strong(expected, Parker::kIdle,
                                                std::memory_order_acq_rel)) {
        return false;
      }
      return true;
    }
  }
  return true;
}

absl::Status ExecutionContext::SleepUntil(absl::Time deadline) {
  if (deadline <= absl::Now()) return absl::OkStatus();
  const timespec until = MonotonicDeadline(deadline);
  trace::ParkSpan span;
  int result;
  // An absolute deadline: a signal's early return just sleeps again.
  while ((result = clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &until, nullptr)) == EINTR) {
  }
  if (result != 0) return ErrnoError("clock_nanosleep", result);
  return absl::OkStatus();
}

bool ExecutionContext::SwitchToParked(Parker&, Parker&) { return false; }

void ExecutionContext::Wake(void*) {
  std::fprintf(stderr, "taskrt: %s registered a waker but cannot wake\n", name());
  std::abort();
}

void Parker::Park() { CurrentExecutionContext().Park(*this); }

bool Parker::ParkUntil(absl::Time deadline) {
  return CurrentExecutionContext().ParkUntil(*this, deadline);
}

void Parker::Unpark() {
  // A suspended task is the common case, and then nobody else touches
  // state_ any more (Park registered and suspended; Unpark comes once): a
  // plain store wakes it, without the atomic read-modify-write that only
  // the race with a Park still in progress needs. A suspension with a
  // deadline (kTaskSuspendedUntil) races with its timer: the exchange below.
  if (state_.load(std::memory_order_acquire) == kTaskSuspended) {
    state_.store(kUnparked, std::memory_order_relaxed);
    waker_->Wake(waker_token_);
    return;
  }
  const uint32_t previous = state_.exchange(kUnparked, std::memory_order_acq_rel);
  if (previous == kTaskSuspended || previous == kTaskSuspendedUntil) {
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

absl::Status SleepFor(absl::Duration duration) {
  ExecutionContext& context = CurrentExecutionContext();
  if (duration == absl::InfiniteDuration()) return context.SleepUntil(absl::InfiniteFuture());
  if (duration <= absl::ZeroDuration()) return context.SleepUntil(absl::InfinitePast());
  // Measured on the monotonic clock: the context sleeps on absl::Now()'s,
  // so a wake that is early by the clocks' drift sleeps the rest.
  const absl::Duration end = MonotonicNow() + duration;
  absl::Duration left = duration;
  do {
    if (absl::Status slept = context.SleepUntil(absl::Now() + left); !slept.ok()) return slept;
    left = end - MonotonicNow();
  } while (left > absl::ZeroDuration());
  return absl::OkStatus();
}

void UseTightTimerSlack() { prctl(PR_SET_TIMERSLACK, 1UL, 0UL, 0UL, 0UL); }

absl::Status SleepUntil(absl::Time deadline) {
  ExecutionContext& context = CurrentExecutionContext();
  do {
    if (absl::Status slept = context.SleepUntil(deadline); !slept.ok()) return slept;
  } while (absl::Now() < deadline);
  return absl::OkStatus();
}

ScopedExecutionContext::ScopedExecutionContext(ExecutionContext* context)
    : previous_(current) {
  current = context;
}

ScopedExecutionContext::~ScopedExecutionContext() { current = previous_; }

}  // namespace taskrt
