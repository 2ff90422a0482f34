#ifndef TASKRT_CORE_WORK_H_
#define TASKRT_CORE_WORK_H_

// The units a Scheduler runs (core/scheduler.h has the contract): apart from
// the scheduler, so that what wraps units (core/trace.h) depends on them
// alone.

#include "absl/functional/any_invocable.h"

namespace taskrt {

using Work = absl::AnyInvocable<void() &&>;

// A unit of work that owns itself, for hot paths such as fork-join spawns:
// one allocation per unit, no type-erasure box around it. RunAndDelete()
// runs the unit and destroys it.
class Job {
 public:
  virtual ~Job() = default;
  virtual void RunAndDelete() = 0;

  // Belongs to the scheduler that accepted the job, from ScheduleJob() until
  // the job runs: a link for the scheduler's intrusive queues, so queuing a
  // job allocates nothing. Nobody else reads or writes it.
  Job* scheduler_link = nullptr;
};

}  // namespace taskrt

#endif  // TASKRT_CORE_WORK_H_
