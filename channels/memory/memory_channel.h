#ifndef TASKRT_CHANNELS_MEMORY_MEMORY_CHANNEL_H_
#define TASKRT_CHANNELS_MEMORY_MEMORY_CHANNEL_H_

// Channel backend: two lock-free single-producer, single-consumer byte
// rings in memory, one per direction (channels/spsc_rings/spsc_ring_pair.h
// describes them). Contract: core/channel.h.
//
// No system call per message: a blocked Send or Receive is woken through a
// Parker (none at all for a stackful task on the same cooperative thread),
// and an event loop watches an eventfd per direction, created on first
// request and written once per burst. A pair holds no kernel object until
// someone asks for readiness.

#include <memory>

#include "absl/status/statusor.h"
#include "core/backend.h"
#include "core/channel.h"

namespace taskrt {

absl::StatusOr<std::unique_ptr<ChannelFactory>> NewMemoryChannelFactory();

// This backend's descriptor ("memory"), listed in backends/registry.cc.
const ChannelDescriptor& MemoryChannelDescriptor();

}  // namespace taskrt

#endif  // TASKRT_CHANNELS_MEMORY_MEMORY_CHANNEL_H_
