#ifndef TASKRT_CORE_EVENT_LOOP_H_
#define TASKRT_CORE_EVENT_LOOP_H_

// EventLoop: the owner's side of the runtime. It watches file descriptors
// (task channels) and runs their callbacks, and work posted from other
// threads, on one thread: the loop thread. Backends live in
// event_loops/<name>/, listed in backends/registry.cc.
//
// The loop thread
//   The first thread to call RunOnce() or Run() becomes the loop thread for
//   the loop's whole life. RunOnce()/Run() from any other thread afterwards
//   are refused with kPermissionDenied, never run concurrently.
//
// Watches
//   Watch(readiness, callback) calls `callback` on the loop thread each time
//   `readiness.fd` becomes ready for `readiness.events`, edge-triggered (as
//   Kore's loop): several arrivals may produce one call, and a callback that
//   leaves data unread is not called again until new data or a close arrives.
//   Hang-up and error conditions also trigger a call. Watch and Unwatch may
//   be called from any thread. After Unwatch() returns on the loop thread
//   (for instance from inside a callback, even its own) that callback is not
//   called again; from another thread, a call already under way may finish.
//   The caller keeps the fd open until it has unwatched it.
//
// Posted work
//   Post() may be called from any thread; work runs on the loop thread in the
//   order posted. Work still queued when the loop is destroyed is destroyed
//   without running.
//
// Errors
//   kPermissionDenied  RunOnce/Run from a thread that is not the loop thread
//   kNotFound          Unwatch of an unknown id
//   kInvalidArgument   Watch of a bad fd, empty callbacks, negative timeouts
//   kFailedPrecondition  Run() re-entered from inside a callback
//   system errors      the kernel refused (message names the call)

#include <cstdint>
#include <functional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "core/channel.h"
#include "core/scheduler.h"

namespace taskrt {

using WatchId = uint64_t;

class EventLoop {
 public:
  virtual ~EventLoop() = default;

  virtual absl::StatusOr<WatchId> Watch(Readiness readiness, std::function<void()> callback) = 0;
  virtual absl::Status Unwatch(WatchId id) = 0;

  // Queues `work` to run on the loop thread. Thread-safe.
  virtual absl::Status Post(Work work) = 0;

  // Waits up to `timeout` for events (zero: just polls), runs the callbacks
  // and posted work that are ready, and returns how many it ran.
  virtual absl::StatusOr<int> RunOnce(absl::Duration timeout) = 0;

  // Runs until Stop(). Returns OK after a Stop().
  virtual absl::Status Run() = 0;

  // Makes Run() return after the callbacks under way. Thread-safe; a Stop()
  // before Run() makes the next Run() return at once.
  virtual void Stop() = 0;

  // True on the loop thread.
  virtual bool IsLoopThread() const = 0;

  virtual std::string name() const = 0;
};

}  // namespace taskrt

#endif  // TASKRT_CORE_EVENT_LOOP_H_
