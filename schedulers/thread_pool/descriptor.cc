#include "schedulers/thread_pool/thread_pool.h"

#include <memory>

#include "absl/strings/str_cat.h"
#include "core/backend.h"

namespace taskrt {
namespace {

absl::StatusOr<std::unique_ptr<Scheduler>> Create(const BackendOptions& options) {
  if (options.workers <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("thread_pool: needs at least one worker, got ", options.workers));
  }
  return NewThreadPool(static_cast<size_t>(options.workers));
}

}  // namespace

const SchedulerDescriptor& ThreadPoolDescriptor() {
  static constexpr SchedulerDescriptor kDescriptor{
      .name = "thread_pool",
      .summary = "N OS threads share one queue; for work that blocks in system calls",
      .needs_io_uring = false,
      .capabilities = {.honours_worker_count = true},
      .create = &Create,
  };
  return kDescriptor;
}

}  // namespace taskrt
