#include "channels/memory/memory_channel.h"

#include <memory>

#include "channels/spsc_rings/spsc_ring_pair.h"

namespace taskrt {

absl::StatusOr<std::unique_ptr<ChannelFactory>> NewMemoryChannelFactory() {
  return spsc_rings::NewFactory("memory");
}

}  // namespace taskrt
