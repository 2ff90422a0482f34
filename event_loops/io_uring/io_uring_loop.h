#ifndef TASKRT_EVENT_LOOPS_IO_URING_IO_URING_LOOP_H_
#define TASKRT_EVENT_LOOPS_IO_URING_IO_URING_LOOP_H_

// Event-loop backend driven by io_uring. Contract: core/event_loop.h; same
// edge-triggered semantics as the epoll loop.
//
// Design
//   One ring (256 submission / 4096 completion entries). Each Watch() is a
//   multishot IORING_OP_POLL_ADD (POLLIN/POLLOUT as asked, plus POLLRDHUP;
//   errors and hang-ups always report) whose user_data is the watch id;
//   every wake-up of the fd posts one completion, so a watch fires on each
//   new arrival, as EPOLLET does. When the kernel ends a multishot poll (a
//   full completion queue; polls of another ring's fd, which the kernel
//   turns one-shot; a cancellation because the submitting thread exited)
//   the loop re-arms it after running the callback. Unwatch() submits
//   IORING_OP_POLL_REMOVE at once, from the calling thread, so the kernel
//   drops its reference to the file promptly (the caller may close the fd
//   right after; a poll left armed would keep a socket open).
//
//   Post() and Stop() wake the loop by submitting an IORING_OP_NOP to its
//   ring: the completion wakes the loop thread's wait. At most one such
//   wake-up is in flight, so a burst of posts costs one system call.
//
//   RunOnce(timeout) waits with io_uring_wait_cqe_timeout: with
//   IORING_FEAT_EXT_ARG the timeout is a timespec passed to io_uring_enter
//   itself, so the wait honours LoopBase's timers (one wheel for every loop)
//   to the nanosecond without a timeout request in the ring (an
//   IORING_OP_TIMEOUT would cost a submission and a completion per wait).
//   It then reaps every completion,
//   runs the callbacks, re-arms ended polls, and runs the posted work.
//   In a stackful task (ExecutionContext::suspends_task()) it instead waits
//   through the context on the ring fd, which is readable while
//   completions are queued, and then reaps without blocking, so the loop
//   shares the thread with the other tasks.
//
// Threads
//   The submission queue is shared by every thread that calls Watch,
//   Unwatch, Post or Stop, under one mutex; only the loop thread reaps the
//   completion queue, without it. io_uring runs a poll's wake-up on the
//   thread that submitted it (task work): watches are best added from the
//   loop thread, or a thread that outlives them. A poll whose submitting
//   thread exited is cancelled by the kernel when it next fires, and the
//   loop re-arms it from the loop thread; that one event is a few
//   milliseconds late.
//
// Probe
//   NewIoUringLoop() checks the features (IORING_FEAT_NODROP,
//   IORING_FEAT_EXT_ARG) and opcodes (POLL_ADD, POLL_REMOVE, NOP) it needs
//   and arms one multishot poll. If the kernel refuses (ENOSYS; EPERM or
//   EACCES under seccomp or kernel.io_uring_disabled; EINVAL from a kernel
//   too old; a missing opcode or feature) it returns kUnavailable,
//   "io_uring: <why>"; other failures are system errors.

#include <memory>

#include "absl/status/statusor.h"
#include "core/backend.h"
#include "core/event_loop.h"

namespace taskrt {

absl::StatusOr<std::unique_ptr<EventLoop>> NewIoUringLoop();

// This backend's descriptor ("io_uring"), listed in backends/registry.cc.
const EventLoopDescriptor& IoUringLoopDescriptor();

}  // namespace taskrt

#endif  // TASKRT_EVENT_LOOPS_IO_URING_IO_URING_LOOP_H_
