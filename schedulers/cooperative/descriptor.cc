#include "schedulers/cooperative/cooperative.h"

#include <memory>

#include "core/backend.h"

namespace taskrt {
namespace {

absl::StatusOr<std::unique_ptr<Scheduler>> Create(const BackendOptions& /*options*/) {
  return NewCooperativeScheduler();
}

}  // namespace

const SchedulerDescriptor& CooperativeDescriptor() {
  static constexpr SchedulerDescriptor kDescriptor{
      .name = "cooperative",
      .summary = "stackful tasks on one thread; a blocking call suspends only its task",
      .needs_io_uring = false,
      .capabilities = {.single_thread_stackful_tasks = true},
      .create = &Create,
  };
  return kDescriptor;
}

}  // namespace taskrt
