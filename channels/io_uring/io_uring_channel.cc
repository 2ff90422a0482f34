#include "channels/io_uring/io_uring_channel.h"

#include <memory>

#include "channels/spsc_rings/spsc_ring_pair.h"

namespace taskrt {

// The SPSC ring pair, data path and wakes alike: the header says why
// nothing here goes through a ring.
absl::StatusOr<std::unique_ptr<ChannelFactory>> NewIoUringChannelFactory() {
  return spsc_rings::NewFactory("io_uring");
}

}  // namespace taskrt
