#include "channels/memory/memory_channel.h"

#include <memory>

#include "core/backend.h"

namespace taskrt {
namespace {

absl::StatusOr<std::unique_ptr<ChannelFactory>> Create(const BackendOptions& /*options*/) {
  return NewMemoryChannelFactory();
}

}  // namespace

const ChannelDescriptor& MemoryChannelDescriptor() {
  static constexpr ChannelDescriptor kDescriptor{
      .name = "memory",
      .summary = "lock-free rings in memory, no system call per message",
      .needs_io_uring = false,
      .capabilities = {},
      .create = &Create,
  };
  return kDescriptor;
}

}  // namespace taskrt
