#ifndef TASKRT_EVENT_LOOPS_IO_URING_IO_URING_LOOP_H_
#define TASKRT_EVENT_LOOPS_IO_URING_IO_URING_LOOP_H_

// Event-loop backend driven by io_uring. Contract: core/event_loop.h; same
// edge-triggered semantics as the epoll loop.
//
// Design
//   One ring (256 submission / 4096 completion entries), submitted to by the
//   loop thread only. It is set up with IORING_SETUP_SINGLE_ISSUER |
//   IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_TASKRUN_FLAG, disabled until
//   the loop thread's first RunOnce()/Run() enables it (that thread becomes
//   its issuer) and registers the ring fd (io_uring_register_ring_fd, where
//   the kernel allows). A kernel that refuses these flags gets a plain ring
//   with the same single-submitter discipline; the fallback and its reason
//   are reported (io_uring_loop_internal.h, GetLoopSetup).
//
//   Each Watch() is a multishot IORING_OP_POLL_ADD (POLLIN/POLLOUT as asked,
//   plus POLLRDHUP; errors and hang-ups always report) whose user_data is
//   the watch id; every wake-up of the fd posts one completion, so a watch
//   fires on each new arrival, as EPOLLET does. When the kernel ends a
//   multishot poll (a full completion queue; polls of another ring's fd,
//   which the kernel turns one-shot) the loop re-arms it after running the
//   callback.
//
//   Requests are queued in the ring without a system call; each iteration
//   submits them all and waits in one io_uring_submit_and_wait_timeout (one
//   io_uring_enter, the timeout passed with IORING_FEAT_EXT_ARG, so the wait
//   honours LoopBase's timers to the nanosecond without a timeout request in
//   the ring). With DEFER_TASKRUN the kernel runs the polls' wake-ups in
//   that same call. A zero timeout enters the kernel only when there is
//   something to submit or the kernel flags completion work
//   (IORING_SQ_TASKRUN, a completion-queue overflow). The loop then reaps
//   every completion, runs the callbacks and queues the re-arms.
//
//   In a stackful task (ExecutionContext::suspends_task()) the loop waits
//   through the context instead, so the loop shares the thread with the
//   other tasks: on an eventfd registered with the ring
//   (io_uring_register_eventfd), which the kernel signals when it queues
//   completion work for the loop thread or posts completions (the ring fd's
//   own readiness is not woken by queued completion work under
//   DEFER_TASKRUN); it then enters the kernel to run that work and reaps.
//
// Socket I/O
//   AcceptEach, ReceiveEach and SendAll are completions on the loop's own
//   ring (completion_io.h): a multishot accept; a multishot receive into a
//   ring of provided buffers the loop registers at creation and fills on
//   its first receive, each buffer returned as soon as the callback that saw
//   it returns (a receive the kernel ends for want of buffers is armed
//   again); sends with MSG_NOSIGNAL, one per fd in the kernel at a time.
//   They are queued in the ring by the loop thread and go with the
//   iteration's one submission; CancelIo enters the kernel at once, so the
//   kernel has let go of the operation when it returns. Where the kernel
//   lacks what this needs (IORING_OP_ACCEPT, IORING_OP_RECV, IORING_OP_SEND;
//   IORING_FEAT_REG_REG_RING, the mark of Linux 6.3, as multishot receive
//   and accept have no feature bit; the provided-buffer ring) the loop runs
//   socket I/O on readiness as the epoll loop does (LoopBase), over its
//   polls; GetLoopSetup says which and why (io_uring_loop_internal.h).
//   Destroyed on its own thread, the loop cancels every request and runs
//   the cancellations before the ring goes, so that no send still reads
//   bytes the loop frees; on another thread it cannot submit, and the
//   kernel cancels them as the ring goes (see "Threads": destroy the loop
//   on its own thread).
//
// Threads
//   Watch and Unwatch on the loop thread, once the loop has started, queue
//   their request in the ring. From any other thread (and from any thread
//   before the first RunOnce/Run, when no loop thread is known) they hand
//   the request to the loop thread through a queue under a mutex, which
//   the loop takes in order at the start of each iteration; Post() and
//   Stop() use LoopBase's queue. All of them wake the loop only when it
//   sleeps (a flag it sets before its wait and re-checks after, as the
//   cooperative scheduler does): by a write to an eventfd that the ring
//   polls with a multishot poll. wake_bench.cc measures this wake against
//   IORING_OP_MSG_RING from a ring of the waker's own and against a NOP
//   submitted into the loop's ring (which SINGLE_ISSUER forbids); the
//   eventfd needs no ring per waking thread.
//
//   Unwatch keeps core/event_loop.h's promise that the caller may close the
//   fd once Unwatch returns, and the kernel lets go of the file by then (a
//   poll left armed would keep a socket open):
//     - on the loop thread it queues an IORING_OP_ASYNC_CANCEL of the poll
//       and enters the kernel at once, which cancels the poll and runs its
//       completion (IORING_OP_POLL_REMOVE would fail while a wake-up of the
//       poll waits to run, as it does under DEFER_TASKRUN until the loop
//       thread enters the kernel);
//     - on another thread, for a poll already in the ring, while the loop
//       thread is in RunOnce/Run/RunUntil, it waits (a Parker,
//       core/execution_context.h: a stackful task is suspended, an OS
//       thread blocks) until the loop thread has reaped the poll's last
//       completion, or has left the loop;
//     - on another thread while the loop thread is out of the loop (between
//       RunOnce calls, after Run returned, before the first), it returns at
//       once: the poll is removed at the loop's next iteration, or goes
//       with the ring, and holds the file until then. Closing the fd is
//       safe all the same: a completion of a removed watch runs nothing,
//       and a new watch of a reused fd number polls the new file.
//   A watch whose poll is not in the ring yet (requested, not taken) or has
//   ended is dropped at once. A cross-thread Unwatch that waits must not
//   hold anything the loop thread's callbacks wait for.
//   The polls' wake-ups run on the loop thread, the ring's only submitter.
//
//   The ring fd's registration lives in the loop thread's table: a loop
//   destroyed on another thread leaves it there, and the ring with it,
//   until the loop thread exits. Destroy the loop on its own thread, or
//   let the loop thread end with it.
//
// Probe
//   NewIoUringLoop() checks the features (IORING_FEAT_NODROP,
//   IORING_FEAT_EXT_ARG) and opcodes (POLL_ADD, POLL_REMOVE, ASYNC_CANCEL)
//   it needs, and once per process arms one multishot poll on a scratch
//   ring. If the kernel refuses (ENOSYS; EPERM or EACCES under seccomp or
//   kernel.io_uring_disabled; EINVAL from a kernel too old; a missing
//   opcode or feature) it returns kUnavailable, "io_uring: <why>"; other
//   failures are system errors.

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
