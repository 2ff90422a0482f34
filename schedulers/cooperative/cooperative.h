#ifndef TASKRT_SCHEDULERS_COOPERATIVE_COOPERATIVE_H_
#define TASKRT_SCHEDULERS_COOPERATIVE_COOPERATIVE_H_

// Scheduler backend: one OS thread runs many stackful tasks, switched in
// user space (fiber.h) on stacks from a pool (stack.h).
//
//   - Every unit of work runs as its own stackful task, so it may block
//     anywhere in its call stack. A blocking call (a channel's Send or
//     Receive, Parker::Park, TaskGroup::Wait) suspends only the calling task;
//     the others keep running on the same thread.
//   - Yield() (core/execution_context.h) switches straight to the next ready
//     task, without passing through the scheduler's own loop.
//   - A blocking channel call that cannot go on lets the ready tasks run
//     once (ExecutionContext::YieldToReady) before it parks: a peer on the
//     same thread usually answers meanwhile, so a same-thread round trip
//     costs two switches and no park or wake-up.
//   - A hand-off from one task to a parked one (SPL's switch, co_call and
//     co_return; ExecutionContext::SwitchToParked) switches straight to it
//     when it would run next anyway (nothing else ready, no outside work
//     due), so the run order is the same as through the ready queue.
//   - A task waiting on a file descriptor is parked in the scheduler's epoll
//     set. When no task is ready the thread sleeps in epoll_wait, so a task
//     blocked on a channel wakes when data arrives, with no busy polling
//     beyond a bounded spin: an idle loop polls the descriptors for 50 us
//     before it sleeps, so quick replies cost no thread wake-up.
//     An event loop run from one of the tasks (EventLoop::Run) shares the
//     thread the same way: it suspends while it waits.
//   - Sleeps and deadlines (SleepFor/SleepUntil, Parker::ParkUntil, the
//     deadline of WaitFdUntil and so of every timed blocking call) suspend
//     only the calling task and share one timer queue: tasks wake in
//     deadline order (equal deadlines in the order they went to sleep).
//     With no task ready, the thread sleeps in epoll_pwait2 until the next
//     deadline, to the nanosecond (to the next millisecond on kernels
//     without it), with the minimum timer slack. A sleep whose deadline
//     has passed is a yield. Shutdown waits for sleeping tasks as for any
//     suspended one.
//   - Order: ready tasks run first-in, first-out. Work scheduled from other
//     threads and file-descriptor readiness are picked up at least every 61
//     switches, so tasks that keep yielding cannot starve them. Tasks woken
//     by their deadline are the exception: each such visit of the loop runs
//     up to 60 of them, in deadline order, ahead of the ready queue (as
//     timers come first in an event loop's turn, and as Go's wake into
//     runnext), so a sleeper is late by at most a loop interval however
//     long the queue, and the queue's head still advances every interval.
//   - A unit gets its stack when it first runs, so queued work costs a small
//     object, not a stack. Finished tasks hand their stacks to the next.
//     Stacks and task objects freed in a burst are kept until the thread
//     goes idle, which then frees those over StackOptions::max_cached.
//   - concurrency() is 1: one unit runs at a time. Work that blocks the OS
//     thread itself (a raw system call, std::mutex held across a wait) stops
//     every task of this scheduler.
//
// Contract: core/scheduler.h. Shutdown waits for every task, including
// suspended ones, so a task blocked forever on a descriptor nobody writes
// keeps Shutdown waiting (as a blocked thread-pool worker does).
//
// Why it keeps its own epoll set rather than an event-loop backend: the
// loops sit on top of it (run from a task, a loop waits on its own fd
// through this scheduler's WaitFd), so the scheduler cannot wait through
// one. A task's wait is also the hot path of every blocking call here: it
// re-arms a one-shot interest with one epoll_ctl, without a lock or an
// allocation, and several tasks may wait on one descriptor for different
// events (a channel's reader and writer); an EventLoop watch is a
// persistent, edge-triggered callback, one per descriptor, added and
// removed under the loop's lock.
//
// Errors: NewCooperativeScheduler returns the stack options' error
// (kInvalidArgument), kResourceExhausted when the thread or its epoll set
// cannot be created, and the kernel's error (core/errors.h) when epoll
// refuses the scheduler's wake-up descriptor. WaitFd on a descriptor epoll
// refuses (a regular file, a closed fd, no memory) returns that error to the
// waiting task. When epoll refuses to re-arm a descriptor for the tasks
// still waiting on it, they are all woken to retry; a task that waits again
// gets the error from its WaitFd. Nothing aborts.

#include <memory>

#include "absl/status/statusor.h"
#include "core/backend.h"
#include "core/scheduler.h"
#include "schedulers/cooperative/fiber.h"
#include "schedulers/cooperative/stack.h"

namespace taskrt {

struct CooperativeOptions {
  StackOptions stack;
  ContextSwitchKind context_switch = DefaultContextSwitch();
};

absl::StatusOr<std::unique_ptr<Scheduler>> NewCooperativeScheduler(
    const CooperativeOptions& options = {});

// This backend's descriptor ("cooperative"), listed in backends/registry.cc.
const SchedulerDescriptor& CooperativeDescriptor();

}  // namespace taskrt

#endif  // TASKRT_SCHEDULERS_COOPERATIVE_COOPERATIVE_H_
