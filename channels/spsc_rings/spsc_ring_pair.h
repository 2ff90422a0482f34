#ifndef TASKRT_CHANNELS_SPSC_RINGS_SPSC_RING_PAIR_H_
#define TASKRT_CHANNELS_SPSC_RINGS_SPSC_RING_PAIR_H_

// A channel pair over two lock-free single-producer, single-consumer byte
// rings in memory, one per direction: the data path of the channel backends
// that pass messages between threads in memory. Not a backend: it names
// none. Contract of the ends: core/channel.h.
//
// Fast path
//   A message is a record in the ring: an 8-byte header (length, flags)
//   and the payload, padded to 8 bytes. The header is also the record's
//   publication: sending copies the payload in, stores a zero header just
//   past the record (the producer keeps those 8 bytes free), then
//   release-stores the record's header; receiving acquire-loads the header
//   at its read position, where 0 means "nothing yet", copies the record
//   out and publishes the new head (lazily, once a quarter of the ring has
//   been read, or before it waits: the producer needs the head only when
//   the ring looks full). There is no shared tail: the reader touches only
//   the lines its records are in (several small records to a line), and the
//   writer's position never leaves the writer's cache. The writer claims
//   lines for writing 512 bytes ahead of its position (PREFETCHW), inside
//   the space it knows is free, so its stores need not wait for the
//   reader's core to hand back lines it read a lap ago. Neither side makes
//   a system call, and neither makes an atomic read-modify-write: the check
//   for a waiter on the other side is a plain load after the publishing
//   store, ordered by an asymmetric barrier whose expensive half
//   (membarrier(2)) runs only when a side is about to wait
//   (spsc_ring_pair.cc, LightBarrier and RingEnd::ArmWaiter).
//
// Capacity
//   Each direction holds ChannelOptions::buffer_bytes (default 64 KiB,
//   rounded up to a power of two). A message larger than a quarter of the
//   ring travels as several records: TrySend accepts it whole, and
//   TryFlush (or the blocking Send) pushes the pieces in as the reader
//   frees space; the reader reassembles it. So any message up to
//   max_message_size passes, whatever the ring size.
//
// Waiting
//   A blocked Send or Receive (WaitUntilReady) registers a Parker with the
//   ring and the other side unparks it after it publishes: a stackful task
//   on the same cooperative thread is resumed with no system call at all,
//   an OS thread with one futex wake.
//   Readiness for an event loop is an eventfd per direction, created when
//   send_readiness() / receive_readiness() is first asked for. The other
//   side writes it only when the watcher has drained the ring (its last
//   TryReceive returned WouldBlock): one system call per burst, none per
//   message while the owner is busy.
//
// Cost of a pair
//   Two ring allocations and two small objects; no kernel object until an
//   event loop or a Select() asks for readiness.
//
// Thread safety: as core/channel.h. Each ring has one producer (one end)
// and one consumer (the other end); the ends may run on different threads.

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "core/channel.h"

namespace taskrt::spsc_rings {

// Creates a pair of ends as described above. `label` names the backend in
// error messages ("<label>: ..."): kInvalidArgument for a buffer_bytes
// outside [256, 2^30] or a max_message_size over 2^32 - 9,
// kResourceExhausted when the system refuses the rings' memory.
absl::StatusOr<ChannelPair> CreatePair(const ChannelOptions& options, absl::string_view label);

// A factory whose name() is `name` and whose CreatePair() is the above,
// labelled "<name> channel".
std::unique_ptr<ChannelFactory> NewFactory(std::string name);

}  // namespace taskrt::spsc_rings

#endif  // TASKRT_CHANNELS_SPSC_RINGS_SPSC_RING_PAIR_H_
