#include "channels/socketpair/socketpair_channel.h"

#include <memory>

#include "core/backend.h"

namespace taskrt {
namespace {

absl::StatusOr<std::unique_ptr<ChannelFactory>> Create(const BackendOptions& /*options*/) {
  return NewSocketpairChannelFactory();
}

}  // namespace

const ChannelDescriptor& SocketpairChannelDescriptor() {
  static constexpr ChannelDescriptor kDescriptor{
      .name = "socketpair",
      .summary = "Kore's wire format over an AF_UNIX socketpair",
      .needs_io_uring = false,
      .capabilities = {.readiness_fd_is_the_wire = true},
      .create = &Create,
  };
  return kDescriptor;
}

}  // namespace taskrt
