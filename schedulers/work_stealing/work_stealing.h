#ifndef TASKRT_SCHEDULERS_WORK_STEALING_WORK_STEALING_H_
#define TASKRT_SCHEDULERS_WORK_STEALING_WORK_STEALING_H_

// Scheduler backend: a work-stealing pool.
//
//   - Each worker owns a Chase-Lev deque: work scheduled from inside the
//     pool goes to the scheduling worker's deque, which it pops newest-first
//     (depth-first, cache-warm fork-join); idle workers steal oldest-first
//     from a randomly chosen victim.
//   - Work scheduled from outside the pool goes to a shared injection queue
//     (injection_queue.h: one compare-and-swap for the scheduling thread, no
//     lock); workers take it in small batches.
//   - Fairness: every 61st pick a worker looks at the injection queue first
//     and then at the oldest end of its own deque, so a unit that keeps
//     rescheduling itself cannot starve either (cf. Tokio #4941).
//   - Idle workers spin briefly, then park on a condition variable. A
//     scheduler that finds sleepers after publishing work wakes one; a worker
//     re-checks every queue after announcing it will sleep, so work is never
//     left queued while every worker sleeps. An idle pool uses no CPU beyond
//     the bounded spin.
//
// Contract: core/scheduler.h. RunPendingWork() helps from inside a worker
// (used by TaskGroup::Wait).

#include <cstddef>
#include <memory>

#include "absl/status/statusor.h"
#include "core/backend.h"
#include "core/scheduler.h"

namespace taskrt {

// kInvalidArgument for zero workers; a system error if a thread cannot start.
absl::StatusOr<std::unique_ptr<Scheduler>> NewWorkStealingPool(size_t num_workers);

// This backend's descriptor ("work_stealing"), listed in backends/registry.cc.
const SchedulerDescriptor& WorkStealingDescriptor();

}  // namespace taskrt

#endif  // TASKRT_SCHEDULERS_WORK_STEALING_WORK_STEALING_H_
