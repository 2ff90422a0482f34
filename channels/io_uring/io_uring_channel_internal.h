#ifndef TASKRT_CHANNELS_IO_URING_IO_URING_CHANNEL_INTERNAL_H_
#define TASKRT_CHANNELS_IO_URING_IO_URING_CHANNEL_INTERNAL_H_

// Internals of the io_uring channel, for its own unit tests only.

#include <cstdint>
#include <optional>

#include "core/channel.h"

namespace taskrt::io_uring_channel_internal {

// Counters kept by one end, read by the thread that uses the end.
struct EndStats {
  uint64_t submit_calls = 0;       // io_uring_enter() calls that submitted
  uint64_t task_work_calls = 0;    // io_uring_enter() calls that only ran task work
  uint64_t send_submissions = 0;   // IORING_OP_SEND requests (one per batch)
  uint64_t recv_arms = 0;          // multishot receives armed (1 at creation)
  uint64_t recv_buffer_exhaustions = 0;  // ended with -ENOBUFS
  uint64_t recv_cancellations = 0;       // ended with -ECANCELED (re-armed)
  uint64_t recv_parks = 0;               // parked: the reader was far behind
  uint64_t recv_drain_arms = 0;          // re-armed at once to drain the socket
  // The end's state when the counters were read.
  bool receive_armed = false;  // the multishot receive is in the kernel
  bool parked = false;         // see io_uring_channel.cc, KeepReceiving()
  bool watch_armed = false;    // the parked end's multishot poll is in the kernel
  bool receive_cancelling = false;  // the armed receive is being cancelled
  bool watch_removing = false;      // the armed poll is being removed
};

// The counters of an io_uring channel end; nullopt for any other end.
std::optional<EndStats> GetEndStats(const ChannelEnd& end);

}  // namespace taskrt::io_uring_channel_internal

#endif  // TASKRT_CHANNELS_IO_URING_IO_URING_CHANNEL_INTERNAL_H_
