#ifndef TASKRT_SCHEDULERS_THREAD_POOL_THREAD_POOL_H_
#define TASKRT_SCHEDULERS_THREAD_POOL_THREAD_POOL_H_

// Scheduler backend: N OS threads taking work from one shared FIFO queue.
//
// Because the queue is shared, a long unit never delays a queued one while
// another worker is idle (Kore hands tasks round-robin to per-thread queues
// and has that head-of-line problem). Work blocks its OS thread when it
// blocks: with N workers, N blocked units stop the pool.
//
// Contract: core/scheduler.h.

#include <cstddef>
#include <memory>

#include "absl/status/statusor.h"
#include "core/backend.h"
#include "core/scheduler.h"

namespace taskrt {

// kInvalidArgument for zero threads; a system error if a thread cannot start.
absl::StatusOr<std::unique_ptr<Scheduler>> NewThreadPool(size_t num_threads);

// This backend's descriptor ("thread_pool"), listed in backends/registry.cc.
const SchedulerDescriptor& ThreadPoolDescriptor();

}  // namespace taskrt

#endif  // TASKRT_SCHEDULERS_THREAD_POOL_THREAD_POOL_H_
