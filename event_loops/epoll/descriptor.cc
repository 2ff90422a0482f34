#include "event_loops/epoll/epoll_loop.h"

#include <memory>

#include "core/backend.h"

namespace taskrt {
namespace {

absl::StatusOr<std::unique_ptr<EventLoop>> Create(const BackendOptions& /*options*/) {
  return NewEpollLoop();
}

}  // namespace

const EventLoopDescriptor& EpollLoopDescriptor() {
  static constexpr EventLoopDescriptor kDescriptor{
      .name = "epoll",
      .summary = "the owner's loop over edge-triggered epoll",
      .needs_io_uring = false,
      .capabilities = {},
      .create = &Create,
  };
  return kDescriptor;
}

}  // namespace taskrt
