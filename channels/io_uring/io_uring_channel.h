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
//   ring), and routing its completion to a watch's callback needs a ring
//   per sending thread and watches in core/event_loop.h that can name a
//   target other than an fd; it is not built.
//
//   The numbers (issue 22; `compare --filter
//   'channel_pair_lifecycle|cross_thread_ping_pong|stream_8B|fan_in_1000'
//   --repetitions=3`, 2 shared vCPUs, ratios within one run): the socket
//   data path with two rings a pair took 119 us for channel_pair_lifecycle,
//   361x the `memory` row; the ring pair takes 0.98x the `memory` row, and
//   0.02x socketpair on cross_thread_ping_pong, 0.013x on stream_8B, 0.011x
//   on stream_8B_batch64, 0.98-1.17x the `memory` rows of fan_in_1000.
//   `wake_bench` (event_loops/io_uring) put a one-way wake through
//   MSG_RING at 12.6 us against 19.3 us for the eventfd with its drain, on
//   a loaded machine; an earlier run on a quieter one had the eventfd ahead
//   without the drain (2.5 against 3.0 us).
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
