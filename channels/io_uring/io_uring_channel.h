#ifndef TASKRT_CHANNELS_IO_URING_IO_URING_CHANNEL_H_
#define TASKRT_CHANNELS_IO_URING_IO_URING_CHANNEL_H_

// The channel backend named io_uring. Contract: core/channel.h.
//
// It uses no io_uring. Its ends are the SPSC ring pair of
// channels/spsc_rings/spsc_ring_pair.h, data path and wakes alike:
// messages pass between threads through byte rings in memory, a blocked
// Send or Receive waits on a Parker, and an event loop watches an eventfd
// per direction, created when readiness is first asked for and written
// only when the watcher has drained the ring. A pair owns no ring and no
// kernel object until someone asks for readiness: creating and destroying
// one makes no system call. It works where the kernel refuses io_uring, and
// its factory never reports kUnavailable.
//
// Why, from measurement
//   A data path over a socket (multishot receive into provided buffers,
//   batched sends) costs a kernel object per pair and a system call per
//   burst at least; rings in memory cost neither. What io_uring could offer
//   a memory data path is the wake of an event loop asleep in its ring:
//   IORING_OP_MSG_RING from a ring of the sender's thread posts a
//   completion straight into the loop's ring, where the eventfd costs a
//   write, the loop's poll completion and a read to drain it. That wake is
//   sent at most once per burst (only to a watcher that has drained the
//   ring). Since Linux 6.13 a sender needs no ring of its own for it
//   (IORING_REGISTER_SEND_MSG_RING), but a wake between threads costs what
//   the kernel's cross-CPU wake-up costs whichever way it is asked for:
//   event_loops/io_uring:wake_bench times that message within a few per
//   cent of the eventfd with its read. Routing it to a watch's callback
//   would need watches in core/event_loop.h that name a target other than
//   an fd; for so small a gain it is not built.
//
//   The measurements behind this choice (pair lifecycle, ping-pong,
//   streams, fan-in, MSG_RING against the eventfd) are in the README's
//   numbers section, with the commands that reproduce them.
//
// Limits and errors: as the ring pair's (ChannelOptions::buffer_bytes in
// [256, 2^30]; max_message_size at most 2^32 - 9), labelled
// "io_uring channel: ...".

#include <memory>

#include "absl/status/statusor.h"
#include "core/backend.h"
#include "core/channel.h"

namespace taskrt {

absl::StatusOr<std::unique_ptr<ChannelFactory>> NewIoUringChannelFactory();

// This backend's descriptor ("io_uring"), listed in backends/registry.cc.
const ChannelDescriptor& IoUringChannelDescriptor();

}  // namespace taskrt

#endif  // TASKRT_CHANNELS_IO_URING_IO_URING_CHANNEL_H_
