#include "event_loops/io_uring/io_uring_loop.h"

#include <memory>

#include "core/backend.h"

namespace taskrt {
namespace {

absl::StatusOr<std::unique_ptr<EventLoop>> Create(const BackendOptions& /*options*/) {
  return NewIoUringLoop();
}

}  // namespace

const EventLoopDescriptor& IoUringLoopDescriptor() {
  static constexpr EventLoopDescriptor kDescriptor{
      .name = "io_uring",
      .summary = "the owner's loop driven by io_uring polls",
      .needs_io_uring = true,
      .capabilities = {},
      .create = &Create,
  };
  return kDescriptor;
}

}  // namespace taskrt
