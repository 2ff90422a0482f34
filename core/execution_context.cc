#include "core/execution_context.h"

#include <poll.h>

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
  // Measured with benchmarks/compare's round_trip job: a spin about as
  // long as one wake-up on these machines catches most replies.
  std::chrono::nanoseconds spin_before_wait() const override {
    return std::chrono::microseconds(50);
  }
  const char* name() const override { return "os_thread"; }
};

OsThreadContext os_thread_context;
thread_local ExecutionContext* current_context = nullptr;

}  // namespace

void ExecutionContext::Yield() { std::this_thread::yield(); }

void ExecutionContext::Park(Parker& parker) {
  MutexLock lock(&parker.sleep_mutex_);
  uint32_t expected = Parker::kIdle;
  if (!parker.state_.compare_exchange_strong(expected, Parker::kThreadSleeping,
                                             std::memory_order_acq_rel)) {
    return;  // already unparked
  }
  // Unpark() takes sleep_mutex_ before signalling, so the signal cannot
  // come between the exchange above and this wait.
  parker.sleep_cv_.Wait(&parker.sleep_mutex_, [&] {
    return parker.state_.load(std::memory_order_acquire) == Parker::kUnparked;
  });
}

bool ExecutionContext::RegisterWaker(Parker& parker, void* token) {
  parker.waker_ = this;
  parker.waker_token_ = token;
  uint32_t expected = Parker::kIdle;
  return parker.state_.compare_exchange_strong(expected, Parker::kTaskSuspended,
                                               std::memory_order_acq_rel);
}

void ExecutionContext::Wake(void*) {
  std::fprintf(stderr, "taskrt: %s registered a waker but cannot wake\n", name());
  std::abort();
}

void Parker::Park() { CurrentExecutionContext().Park(*this); }

void Parker::Unpark() {
  uint32_t state = state_.load(std::memory_order_acquire);
  while (true) {
    if (state == kThreadSleeping) {
      // Under the mutex, which the sleeper holds whenever it checks the
      // state: it cannot see kUnparked, return and free this Parker before
      // this call is done with it.
      MutexLock lock(&sleep_mutex_);
      state_.store(kUnparked, std::memory_order_release);
      sleep_cv_.Signal();
      return;
    }
    if (state_.compare_exchange_weak(state, kUnparked, std::memory_order_acq_rel)) break;
  }
  // The task cannot resume, and so cannot free this Parker, before Wake()
  // makes it runnable.
  if (state == kTaskSuspended) waker_->Wake(waker_token_);
}

void Yield() { CurrentExecutionContext().Yield(); }

ExecutionContext& CurrentExecutionContext() {
  return current_context != nullptr ? *current_context : os_thread_context;
}

ScopedExecutionContext::ScopedExecutionContext(ExecutionContext* context)
    : previous_(current_context) {
  current_context = context;
}

ScopedExecutionContext::~ScopedExecutionContext() { current_context = previous_; }

}  // namespace taskrt
