#include "channels/io_uring/io_uring_channel.h"

#include <memory>

#include "core/backend.h"

namespace taskrt {
namespace {

absl::StatusOr<std::unique_ptr<ChannelFactory>> Create(const BackendOptions& /*options*/) {
  return NewIoUringChannelFactory();
}

}  // namespace

const ChannelDescriptor& IoUringChannelDescriptor() {
  static constexpr ChannelDescriptor kDescriptor{
      .name = "io_uring",
      .summary = "lock-free rings in memory, eventfd wakes; no io_uring (see its header)",
      .needs_io_uring = false,
      .capabilities = {},
      .create = &Create,
  };
  return kDescriptor;
}

}  // namespace taskrt
