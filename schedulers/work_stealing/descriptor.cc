#include "schedulers/work_stealing/work_stealing.h"

#include <memory>

#include "absl/strings/str_cat.h"
#include "core/backend.h"

namespace taskrt {
namespace {

absl::StatusOr<std::unique_ptr<Scheduler>> Create(const BackendOptions& options) {
  if (options.workers <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("work_stealing: needs at least one worker, got ", options.workers));
  }
  return NewWorkStealingPool(static_cast<size_t>(options.workers));
}

}  // namespace

const SchedulerDescriptor& WorkStealingDescriptor() {
  static constexpr SchedulerDescriptor kDescriptor{
      .name = "work_stealing",
      .summary = "per-worker deques with stealing; for many short tasks and fork-join",
      .needs_io_uring = false,
      .capabilities = {.honours_worker_count = true},
      .create = &Create,
  };
  return kDescriptor;
}

}  // namespace taskrt
