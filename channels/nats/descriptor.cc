#include <memory>

#include "channels/nats/nats_channel.h"
#include "core/backend.h"

namespace taskrt {
namespace {

absl::StatusOr<std::unique_ptr<ChannelFactory>> Create(const BackendOptions& /*options*/) {
  return NewNatsChannelFactory();
}

}  // namespace

const ChannelDescriptor& NatsChannelDescriptor() {
  static constexpr ChannelDescriptor kDescriptor{
      .name = "nats",
      .summary = "through a NATS broker ($TASKRT_NATS_URL, or a nats-server of its own): "
                 "the transport for ends in other processes",
      .needs_io_uring = false,
      .capabilities = {},
      .create = &Create,
  };
  return kDescriptor;
}

}  // namespace taskrt
