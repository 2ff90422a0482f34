#ifndef TASKRT_CHANNELS_SOCKETPAIR_SOCKETPAIR_CHANNEL_H_
#define TASKRT_CHANNELS_SOCKETPAIR_SOCKETPAIR_CHANNEL_H_

// Kore's own channel: an AF_UNIX SOCK_STREAM socketpair carrying Kore's wire
// format, a 4-byte host-endian length then the payload.
//
// Differences from Kore, each keeping core/channel.h's contract:
//   - header and payload leave in one sendmsg() (Kore: two writes), and
//     partial writes and EINTR are handled, so messages larger than the
//     socket buffer work;
//   - reads fill a per-end buffer and cut whole messages out of it, so a
//     short destination drops the rest of *that* message and the stream stays
//     in step (Kore leaves the rest in the socket), and several small
//     messages cost one recv();
//   - a send to a closed peer is an error (MSG_NOSIGNAL), never SIGPIPE.
//
// max_message_size may be at most 2^32 - 1 (the length field).

#include <memory>

#include "absl/status/statusor.h"
#include "core/backend.h"
#include "core/channel.h"

namespace taskrt {

absl::StatusOr<std::unique_ptr<ChannelFactory>> NewSocketpairChannelFactory();

// This backend's descriptor ("socketpair"), listed in backends/registry.cc.
const ChannelDescriptor& SocketpairChannelDescriptor();

}  // namespace taskrt

#endif  // TASKRT_CHANNELS_SOCKETPAIR_SOCKETPAIR_CHANNEL_H_
