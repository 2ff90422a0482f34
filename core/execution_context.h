#ifndef TASKRT_CORE_EXECUTION_CONTEXT_H_
#define TASKRT_CORE_EXECUTION_CONTEXT_H_

// What "block" means for the code that is running now.
//
// Every blocking call of the runtime (a channel's blocking Send and Receive,
// later joins and pauses) waits through the current execution context rather
// than calling poll() itself. On an OS thread the context parks the thread.
// A cooperative scheduler installs a context of its own for each stackful
// task, which suspends just that task and lets the others run. That is what
// makes every channel backend work on every scheduler.
//
// Thread safety: the current context is per thread (per stackful task once a
// scheduler switches contexts); WaitFd is called only by the code that is
// running in that context.

#include <poll.h>

#include <chrono>

#include "absl/status/status.h"

namespace taskrt {

class ExecutionContext {
 public:
  virtual ~ExecutionContext() = default;

  // Blocks the calling code until `fd` reports one of `poll_events` (POLLIN,
  // POLLOUT), or an error or hang-up condition, which the caller discovers
  // by retrying its non-blocking operation. Returns an error only when
  // waiting itself failed (a bad fd, or a context that is shutting down).
  virtual absl::Status WaitFd(int fd, short poll_events) = 0;

  // How long a blocking call retries its non-blocking operation before it
  // waits. On this project's machines a park-and-wake costs tens of
  // microseconds, so an OS thread that expects a quick answer (a round trip)
  // is faster spinning briefly first; a cooperative task should instead let
  // the others run at once (zero).
  virtual std::chrono::nanoseconds spin_before_wait() const { return std::chrono::nanoseconds(0); }

  // A short name for messages and test output ("os_thread", ...).
  virtual const char* name() const = 0;
};

// The context of the calling code: the one installed by the innermost live
// ScopedExecutionContext on this thread, or else the OS-thread context,
// whose WaitFd parks the thread in poll().
ExecutionContext& CurrentExecutionContext();

// Installs `context` as the current one for its lifetime on this thread.
// Schedulers use it around the work they run.
class ScopedExecutionContext {
 public:
  explicit ScopedExecutionContext(ExecutionContext* context);
  ~ScopedExecutionContext();
  ScopedExecutionContext(const ScopedExecutionContext&) = delete;
  ScopedExecutionContext& operator=(const ScopedExecutionContext&) = delete;

 private:
  ExecutionContext* const previous_;
};

}  // namespace taskrt

#endif  // TASKRT_CORE_EXECUTION_CONTEXT_H_
