#ifndef TASKRT_EVENT_LOOPS_EPOLL_EPOLL_LOOP_H_
#define TASKRT_EVENT_LOOPS_EPOLL_EPOLL_LOOP_H_

// Event-loop backend on epoll, edge-triggered as Kore's loop is. Posted work
// wakes the loop through an eventfd. Contract: core/event_loop.h.
//
// Timers are LoopBase's (one wheel for every loop); the loop waits for the
// earliest one with epoll_pwait2, whose timeout is a timespec, and falls
// back to epoll_wait with the timeout rounded up to a millisecond where the
// kernel lacks it (ENOSYS).
//
// Socket I/O (AcceptEach, ReceiveEach, SendAll) is LoopBase's, on
// readiness: the loop watches each fd with operations and makes the system
// calls when it is ready (event_loops/loop_base/socket_io.h).
//
// Run from a stackful task (the cooperative scheduler), the loop waits
// through the task's execution context: it suspends on the epoll fd, so the
// loop and the tasks share one thread, as Kore's worker loop does.

#include <memory>

#include "absl/status/statusor.h"
#include "core/backend.h"
#include "core/event_loop.h"

namespace taskrt {

// A system error if epoll or the eventfd cannot be created.
absl::StatusOr<std::unique_ptr<EventLoop>> NewEpollLoop();

// This backend's descriptor ("epoll"), listed in backends/registry.cc.
const EventLoopDescriptor& EpollLoopDescriptor();

}  // namespace taskrt

#endif  // TASKRT_EVENT_LOOPS_EPOLL_EPOLL_LOOP_H_
