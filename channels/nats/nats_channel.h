#ifndef TASKRT_CHANNELS_NATS_NATS_CHANNEL_H_
#define TASKRT_CHANNELS_NATS_NATS_CHANNEL_H_

// A channel whose two ends talk through a NATS broker: the transport for
// ends in different processes or on different machines. CreatePair makes
// both ends in this process, on one connection. Contract: core/channel.h.
//
// Broker
//   A factory holds one connection to the broker (platform/nats/broker.h's
//   BrokerUrl(): $TASKRT_NATS_URL, or a nats-server of the process's own).
//   The connection does not reconnect: core NATS keeps nothing for a client
//   that is away, so a lost connection could lose messages silently.
//   Instead every end of the factory fails from then on with kUnavailable,
//   "nats: connection to the broker lost", and its readiness fires.
//
// Subjects and wire
//   Each end subscribes to a subject of its own, unique to the pair
//   (_INBOX.<factory's unique id>.<pair>.<a|b>), and publishes to its
//   peer's. Every NATS message carries a piece of one of our messages, and
//   its reply subject, which nothing answers, is the piece's kind: empty
//   for a message's last (or only) piece, "m" when more pieces follow, "c"
//   for credit (8 bytes, host order: bytes the receiver has taken), "b" (no
//   bytes) when a sender waits for credit, "x" for the end's close. A message larger than the broker's maximum payload
//   travels as several pieces. Anything else on an end's subject (another
//   kind, credit of another size, a message over max_message_size) is
//   kDataLoss at the receive that reaches it.
//
//   Messages may still be on their way through the broker after the
//   sender's calls have returned: MessagesMayBeInFlight() is true until the
//   peer's close has arrived, so a task's owner waits for the close before
//   it takes the task for finished (core/task.cc).
//
// Flow control
//   Core NATS has no back-pressure: a subscriber that falls behind has
//   messages dropped. So each direction has a window of buffer_bytes
//   (default 256 KiB) of credit, each piece costing its size plus 16 bytes;
//   a sender publishes a piece only when its credit covers it, and the
//   receiver hands credit back once it has taken a quarter of the window,
//   or at once when the sender has said it is blocked (so that one receive
//   frees a blocked sender, as on every backend).
//   Pieces are at most half the window, so a blocked sender always has
//   more than a quarter in flight, and the credit for it comes back. The
//   subscription's own limits are lifted, so the library never drops what
//   the window lets through. A message of one piece waits whole for its
//   credit (TrySend returns WouldBlock()); a larger one is accepted by
//   TrySend (when nothing else is held) and goes out piece by piece as
//   credit returns (TryFlush, or the blocking Send); until its first piece
//   has left, SendUntil's deadline takes it back unsent.
//
// Readiness
//   An eventfd per end and direction, written by the library's delivery
//   thread when news arrives (a piece, credit, the peer's close, the loss
//   of the connection) for an end whose last Try* call returned
//   WouldBlock(), or that a watcher has just asked for (send_readiness()
//   and receive_readiness() arm it, and signal it at once when news is
//   already waiting); the Try* call that finds nothing reads it empty
//   first. The peer's close and the loss of the connection signal both
//   fds whether armed or not.
//
// Closing
//   Close() publishes the close to the peer behind everything sent before
//   it, and unsubscribes. The peer receives what came before, then
//   kOutOfRange; its sends fail with kFailedPrecondition from the moment
//   the close arrives.
//
// Threads: the library delivers messages on its shared delivery threads
// (one pool for every subscription, not a thread per end). A publish is
// written to the connection's socket at once, so a Try* call can wait for
// the socket to take it (not for the peer).
//
// Limits: every pair of a factory shares its connection, and the broker
// cuts off a client that falls behind by more than its max_pending (64 MiB
// by default); with windows of 256 KiB, that is reached only by about 128
// pairs whose receivers all stop reading at once, and then every end of the
// factory gets kUnavailable. Credit beyond what a sender has outstanding
// (a third party publishing on the subject) is kDataLoss at the send.

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "core/backend.h"
#include "core/channel.h"

namespace taskrt {

struct NatsChannelOptions {
  // nats://host:port; empty: platform/nats/broker.h's BrokerUrl().
  std::string url;
};

// kUnavailable when no broker answers at the URL (or none can be started).
absl::StatusOr<std::unique_ptr<ChannelFactory>> NewNatsChannelFactory(
    const NatsChannelOptions& options = {});

// This backend's descriptor ("nats"), listed in backends/registry.cc.
const ChannelDescriptor& NatsChannelDescriptor();

}  // namespace taskrt

#endif  // TASKRT_CHANNELS_NATS_NATS_CHANNEL_H_
