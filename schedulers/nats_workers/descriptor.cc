#include <memory>

#include "core/backend.h"
#include "schedulers/nats_workers/nats_workers.h"

namespace taskrt {
namespace {

absl::StatusOr<std::unique_ptr<Scheduler>> Create(const BackendOptions&) {
  return NewNatsWorkersScheduler();
}

}  // namespace

const SchedulerDescriptor& NatsWorkersDescriptor() {
  static constexpr SchedulerDescriptor kDescriptor{
      .name = "nats_workers",
      .summary = "named entries run in tools/nats_worker processes, through NATS JetStream "
                 "($TASKRT_NATS_URL)",
      .needs_io_uring = false,
      .capabilities = {.runs_named_entries_elsewhere = true},
      .create = &Create,
  };
  return kDescriptor;
}

}  // namespace taskrt
