#ifndef TASKRT_CORE_CHANNEL_COUNTERS_H_
#define TASKRT_CORE_CHANNEL_COUNTERS_H_

// The counters behind ChannelEnd::metrics(), for channel backends. The
// end's user writes them (one thread at a time, as the channel contract
// has it); metrics() reads them from any thread. They also record each
// message in a running trace (core/trace.h) when the pair was linked with
// LinkForTrace at creation.

#include <cstddef>

#include "core/channel.h"
#include "core/counters.h"
#include "core/trace.h"

namespace taskrt {

struct ChannelEndCounters {
  OwnedCounter messages_sent, bytes_sent, messages_received, bytes_received;
  OwnedCounter sends_blocked, receives_blocked, wakeups_sent;

  trace::ChannelTrace flows;

  void Sent(size_t bytes) {
    messages_sent.Add();
    bytes_sent.Add(bytes);
    if (flows.send_flow != 0) [[unlikely]] trace::RecordSend(flows, messages_sent.Read(), bytes);
  }
  // A message taken back (TryTakeBackUnsent): as if never sent.
  void Unsent(size_t bytes) {
    // Its flow ends here: the next message reuses its sequence number.
    if (flows.send_flow != 0) [[unlikely]] trace::RecordUnsent(flows, messages_sent.Read(), bytes);
    messages_sent.Subtract(1);
    bytes_sent.Subtract(bytes);
  }
  void Received(size_t bytes) {
    messages_received.Add();
    bytes_received.Add(bytes);
    if (flows.receive_flow != 0) [[unlikely]] {
      trace::RecordReceive(flows, messages_received.Read(), bytes);
    }
  }

  ChannelMetrics Snapshot() const {
    ChannelMetrics m;
    m.messages_sent = messages_sent.Read();
    m.bytes_sent = bytes_sent.Read();
    m.messages_received = messages_received.Read();
    m.bytes_received = bytes_received.Read();
    m.sends_blocked = sends_blocked.Read();
    m.receives_blocked = receives_blocked.Read();
    m.wakeups_sent = wakeups_sent.Read();
    return m;
  }
};

// Called by a factory on the two ends of each new pair; a load and a branch
// while no trace runs.
inline void LinkForTrace(ChannelEndCounters& a, ChannelEndCounters& b) {
  if (trace::Enabled()) [[unlikely]] trace::LinkChannelPair(a.flows, b.flows);
}

}  // namespace taskrt

#endif  // TASKRT_CORE_CHANNEL_COUNTERS_H_
