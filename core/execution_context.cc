#include "core/execution_context.h"

#include <poll.h>

#include <cerrno>

#include "core/errors.h"

namespace taskrt {
namespace {

// Parks the OS thread in poll(); EINTR is not an error, just an early return
// after which the caller retries.
class OsThreadContext final : public ExecutionContext {
 public:
  absl::Status WaitFd(int fd, short poll_events) override {
    pollfd entry{.fd = fd, .events = poll_events, .revents = 0};
    while (true) {
      const int ready = poll(&entry, 1, -1);
      if (ready >= 0) break;
      if (errno != EINTR) return ErrnoError("poll", errno);
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

ExecutionContext& CurrentExecutionContext() {
  return current_context != nullptr ? *current_context : os_thread_context;
}

ScopedExecutionContext::ScopedExecutionContext(ExecutionContext* context)
    : previous_(current_context) {
  current_context = context;
}

ScopedExecutionContext::~ScopedExecutionContext() { current_context = previous_; }

}  // namespace taskrt
