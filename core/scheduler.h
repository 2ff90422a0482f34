#ifndef TASKRT_CORE_SCHEDULER_H_
#define TASKRT_CORE_SCHEDULER_H_

// Scheduler: runs units of work. One interface, several backends
// (schedulers/<name>/); the conformance suite holds every backend to this
// contract.
//
// Work
//   A unit of work is a move-only callable. Schedule() takes ownership and
//   never runs the work inline before it returns, so a caller may hold its
//   own locks while scheduling. Work runs exactly once, on one of the
//   scheduler's threads, with the scheduler's execution context installed
//   (see execution_context.h). Work should not throw; an exception escaping
//   work terminates the process, as with std::thread.
//
// Thread safety
//   Schedule() may be called from any thread, including from inside work
//   running on this scheduler (nested scheduling). Shutdown() may be called
//   from any thread that is not one of the scheduler's own.
//
// Lifetime and shutdown
//   Shutdown() refuses new work, runs every unit already accepted, joins the
//   scheduler's threads and returns. Work that tries to schedule more during
//   the drain gets kFailedPrecondition. Calling Shutdown() from inside one of
//   the scheduler's own units is refused with kFailedPrecondition (it would
//   wait for itself); it is never a deadlock. A second Shutdown() is a no-op.
//   The destructor shuts down if Shutdown() was not called, so a scheduler
//   must not be destroyed from one of its own threads.
//
// Units in other processes
//   A scheduler whose units run in other processes
//   (capabilities().runs_named_entries_elsewhere) cannot take a closure for
//   a task: it runs registered entries by name (core/entry_registry.h)
//   through StartNamedEntry(), and hands the owner the task's end of a
//   channel (core/remote_entry.h). Such a backend says in its own header
//   how often an entry may run (a retry after a worker died runs it again,
//   TaskContext::attempt() > 1).
//
// Errors
//   Schedule: kFailedPrecondition after shutdown began; kInvalidArgument for
//   empty work. Construction (each backend's Create): kInvalidArgument for a
//   bad configuration such as zero workers.

#include <cstddef>
#include <cstdint>
#include <string>

#include <memory>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "core/channel.h"
#include "core/remote_entry.h"
#include "core/work.h"

namespace taskrt {

// What a scheduler offers beyond this contract. Code that needs more asks
// for a capability, never for a backend by name.
struct SchedulerCapabilities {
  // Every unit runs on one thread, as a stackful task: a blocking call
  // (a channel, a join, a Parker) suspends only that task, and units
  // interleave at such calls alone, never in between.
  bool single_thread_stackful_tasks = false;
  // The backend runs as many workers as it is asked for (otherwise one).
  bool honours_worker_count = false;
  // Units run in other processes: a task runs there by the name of a
  // registered entry (StartNamedEntry), never as a closure.
  bool runs_named_entries_elsewhere = false;

  friend bool operator==(const SchedulerCapabilities&, const SchedulerCapabilities&) = default;
};

// What a scheduler counted since it was created (Scheduler::metrics()): the
// figures that explain its speed on a workload. A count of something the
// backend never does (steals on a shared queue) stays 0.
struct SchedulerMetrics {
  uint64_t units_started = 0;    // units that began to run, helps included
  uint64_t spawned_inside = 0;   // accepted from one of the scheduler's own units
  uint64_t spawned_outside = 0;  // accepted from any other thread
  uint64_t steals = 0;           // units taken from another worker's queue
  uint64_t steal_attempts = 0;   // looks into another worker's queue, won or not
  uint64_t parks = 0;            // times a worker (or the loop) slept for want of work
  uint64_t wakes = 0;            // wake-ups sent to a sleeping worker
  uint64_t helps = 0;            // units run by a waiting unit (RunPendingWork)
  uint64_t queue_high_water = 0;  // the most units one queue held at once
};

class Scheduler {
 public:
  virtual ~Scheduler() = default;

  // A snapshot of the counters. Thread-safe, from any thread, at any time
  // (after Shutdown too). Each counter is exact on its own once the units it
  // counts have started; they are not read at one instant together. Each
  // worker counts in memory of its own, so counting adds no shared write to
  // the hot paths; spawns from outside and wake-ups, which synchronise
  // anyway, count in shared atomics.
  virtual SchedulerMetrics metrics() const = 0;

  // Queues `work` to run later on one of this scheduler's threads.
  virtual absl::Status Schedule(Work work) = 0;

  // As Schedule, for a self-owning Job. On success the scheduler owns `job`
  // and runs it exactly once; on error the caller still owns it. Backends
  // with a cheaper path for jobs override this.
  virtual absl::Status ScheduleJob(Job* job) {
    return Schedule([job] { job->RunAndDelete(); });
  }

  // Helping: runs one unit of queued work on the calling thread, if there is
  // one, and returns whether it did. Only for the scheduler's own threads
  // (false elsewhere). A fork-join wait inside a worker calls this instead
  // of blocking the thread, so recursive fork-join on one worker finishes.
  virtual bool RunPendingWork() { return false; }

  // Drains and stops; see the contract above.
  virtual absl::Status Shutdown() = 0;

  // True when called from work running on this scheduler.
  virtual bool IsCurrentThreadOwned() const = 0;

  // How many units can run at once (the number of worker threads).
  virtual size_t concurrency() const = 0;

  // Backend name and configuration, "<descriptor name>(<workers>)" say, for
  // people to read: choose by capabilities(), never by parsing this.
  virtual std::string name() const = 0;

  virtual SchedulerCapabilities capabilities() const = 0;

  // For a scheduler whose units run in other processes
  // (capabilities().runs_named_entries_elsewhere): starts registered entry
  // `entry_name` for a new task and returns the owner's end of its channel.
  // Every other scheduler: kUnimplemented. Task::Run calls it; the owner
  // then uses the end as the task's channel, and the task is finished once
  // RemoteOwnerEnd::EntryResult() has a value.
  virtual absl::StatusOr<std::unique_ptr<RemoteOwnerEnd>> StartNamedEntry(
      absl::string_view entry_name, const ChannelOptions& options);
};

}  // namespace taskrt

#endif  // TASKRT_CORE_SCHEDULER_H_
