#include "core/execution_context.h"

#include <poll.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <limits>
#include <cstdio>
#include <cstdlib>
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
  MutexLock lock(&parker.mutex_);
  parker.unparked_cv_.Wait(&parker.mutex_, [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(parker.mutex_) {
    return parker.unparked_;
  });
}

bool ExecutionContext::RegisterWaker(Parker& parker, void* token) {
  MutexLock lock(&parker.mutex_);
  if (parker.unparked_) return false;
  parker.waker_ = this;
  parker.waker_token_ = token;
  return true;
}

void ExecutionContext::Wake(void*) {
  std::fprintf(stderr, "taskrt: %s registered a waker but cannot wake\n", name());
  std::abort();
}

void Parker::Park() { CurrentExecutionContext().Park(*this); }

void Parker::Unpark() {
  ExecutionContext* waker;
  void* token;
  {
    MutexLock lock(&mutex_);
    unparked_ = true;
    waker = waker_;
    token = waker_token_;
    // Signalled under the lock: a sleeping Park() cannot return (and its
    // caller free this Parker) before this call is done with it.
    unparked_cv_.Signal();
  }
  // A suspended task cannot resume, and so cannot free the Parker, before
  // Wake() makes it runnable; nothing here touches the Parker any more.
  if (waker != nullptr) waker->Wake(token);
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
