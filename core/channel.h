#ifndef TASKRT_CORE_CHANNEL_H_
#define TASKRT_CORE_CHANNEL_H_

// Channel: an ordered, message-preserving, bidirectional pipe between a task
// and its owner. A backend (channels/<name>/) creates a connected pair of
// ends; each end sends to and receives from the other.
//
// Messages
//   Message boundaries and order are kept. A zero-length message is a
//   message. A message longer than the pair's max_message_size is refused
//   with kResourceExhausted and nothing is sent. A receive into a buffer
//   shorter than the message copies the prefix, returns the message's full
//   length, and drops the rest of that message: the next receive returns the
//   next message (Kore's stream falls out of step here; ours does not).
//
// Non-blocking core, blocking calls on top
//   Each backend supplies only non-blocking TrySend / TryFlush / TryReceive,
//   which return WouldBlock() (errors.h) when they cannot make progress, and
//   a readiness target (fd + poll events) to wait on before retrying. The
//   blocking Send() and Receive() below are written once, here, on top of
//   those and wait through the current ExecutionContext, so a cooperative
//   scheduler suspends only the calling task.
//
// Deadlines
//   SendUntil() and ReceiveUntil() give up at a deadline with
//   kDeadlineExceeded and leave the channel as it was: a timed-out receive
//   took nothing (the message arrives whole on a later receive), a
//   timed-out send sent nothing. A deadline that has passed is a valid,
//   immediate timeout when the call cannot complete at once.
//
// Closing
//   Close() (or destroying the end) ends this side. The peer can still
//   receive every message sent before the close, then gets kOutOfRange
//   ("closed and drained"); its sends fail with kFailedPrecondition. Calls on
//   an end after its own Close() get kFailedPrecondition. Nothing aborts.
//
// Thread safety
//   The two ends of a pair may be used concurrently from different threads.
//   One end is not internally synchronised: calls on the same end must not
//   overlap (the task uses its end; the owner's thread uses the other).
//
// Errors
//   WouldBlock()         (kUnavailable, empty message) retry after readiness
//   kResourceExhausted   message over max_message_size; nothing sent
//   kOutOfRange          receive on a channel the peer closed, once drained
//   kFailedPrecondition  send to a closed peer; any call after Close()
//   kDataLoss            the peer broke the wire format (closed mid-message,
//                        or announced an oversized message)
//   others               the system refused; the message says which call

#include <poll.h>  // POLLIN, POLLOUT: the events of a Readiness

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "core/errors.h"

namespace taskrt {

struct ChannelOptions {
  // Largest message either end accepts, in bytes.
  size_t max_message_size = size_t{1} << 20;
  // Bytes buffered per direction by backends that buffer in their own
  // memory; 0 picks the backend's default. Messages larger
  // than the buffer still pass, in pieces.
  size_t buffer_bytes = 0;
};

enum class ChannelDirection { kSend, kReceive };

// Where to wait before retrying a non-blocking call: poll() `fd` for `events`.
struct Readiness {
  int fd = -1;
  short events = 0;
};

// What one channel end counted since it was created (ChannelEnd::metrics()).
struct ChannelMetrics {
  uint64_t messages_sent = 0;     // whole messages TrySend accepted
  uint64_t bytes_sent = 0;        // their payload bytes
  uint64_t messages_received = 0;  // messages TryReceive returned
  uint64_t bytes_received = 0;    // their full lengths (before any truncation)
  uint64_t sends_blocked = 0;     // TrySend or TryFlush calls that returned WouldBlock()
  uint64_t receives_blocked = 0;  // TryReceive calls that returned WouldBlock()
  uint64_t wakeups_sent = 0;      // signals this end sent to a waiting peer or watcher
};

class ChannelEnd {
 public:
  virtual ~ChannelEnd() = default;

  // A snapshot of this end's counters, from any thread while the end
  // exists. The end's user writes them (one thread at a time, as every call
  // here), so each is exact once the calls it counts have returned.
  virtual ChannelMetrics metrics() const = 0;

  // Accepts one whole message or nothing. OK means accepted: the message will
  // reach the peer in order, though part of it may still sit in this end
  // until TryFlush() (or the blocking Send()) pushes it out.
  virtual absl::Status TrySend(absl::Span<const char> message) = 0;

  // Pushes out accepted bytes still held by this end. OK when none remain.
  virtual absl::Status TryFlush() = 0;

  // Receives one message into `out` (truncating as described above) and
  // returns its full length.
  virtual absl::StatusOr<size_t> TryReceive(absl::Span<char> out) = 0;

  // What an event loop watches: the fd becomes ready (edge) after
  // TrySend/TryFlush or TryReceive returned WouldBlock() and progress became
  // possible. The fd stays valid until the end is destroyed.
  virtual Readiness send_readiness() const = 0;
  virtual Readiness receive_readiness() const = 0;

  // For a waiter other than an event loop (Select): the readiness target of
  // `direction`, which fires as send_readiness()/receive_readiness() do
  // until ReleaseReadiness(direction). Calls pair up, and may nest. A
  // backend that signals its readiness fd only while someone waits on it
  // stops again once no one does; the default hands out the same target.
  virtual Readiness AcquireReadiness(ChannelDirection direction) {
    return direction == ChannelDirection::kSend ? send_readiness() : receive_readiness();
  }
  virtual void ReleaseReadiness(ChannelDirection) {}

  // Blocks, through the current execution context, until a send or receive
  // may make progress again (or the channel closed), or until `deadline`
  // (kDeadlineExceeded, having changed nothing the peer can see); the
  // blocking Send() and Receive() call it between attempts. The default
  // waits on the readiness fd; a backend with a cheaper wake-up (no system
  // call for a task on the same thread) overrides it. Errors only when
  // waiting failed or the deadline passed.
  virtual absl::Status WaitUntilReady(ChannelDirection direction, absl::Time deadline);
  absl::Status WaitUntilReady(ChannelDirection direction) {
    return WaitUntilReady(direction, absl::InfiniteFuture());
  }

  // True when a whole message is waiting, so TryReceive() would return it
  // now; pulls in what has arrived to decide, and hands nothing out. False
  // counts as a TryReceive() that returned WouldBlock(): the receive
  // readiness fires once a message arrives or the peer closes. A large
  // message whose last pieces are still on their way may count as waiting
  // (a receive then waits for the rest, which is being sent). False after
  // Close(), on a closed and drained channel, and on an error, which
  // TryReceive() reports. An owner that reads one message per notification
  // asks this to know whether to read again (core/task.h).
  virtual bool ReceiveReady() = 0;

  // True while messages the peer sent may still be on their way here,
  // neither in this end nor in the peer: a backend whose messages cross a
  // broker says so until the peer's close has arrived behind them. The
  // default, for backends whose sends are within this end's reach once they
  // return, is false. An owner that learns by other means that the peer is
  // done (core/task.cc: the entry returned) waits for this to turn false
  // before it takes the channel for finished.
  virtual bool MessagesMayBeInFlight() { return false; }

  // Takes back the message TrySend accepted last, when none of its bytes
  // has left this end yet (TryFlush has pushed none of it out): it is then
  // as if never sent, and the result is true. False, changing nothing, when
  // part of it has left, or nothing is held. SendUntil calls it at its
  // deadline; the default (for backends that hold back only the rest of a
  // message whose start has left) is false.
  virtual bool TryTakeBackUnsent() { return false; }

  // Ends this side; see "Closing" above. Unflushed bytes of a message that
  // TrySend accepted are discarded; the blocking Send() never leaves any.
  virtual void Close() = 0;

  virtual size_t max_message_size() const = 0;

  // False when TryFlush() would return OK at once because nothing accepted
  // is held back, so the blocking Send() skips that call: for a backend
  // whose send is a few stores, a second call per message (and the Status
  // it returns through memory) can cost as much as the send itself. True
  // unless the backend keeps it.
  bool may_hold_unflushed() const { return may_hold_unflushed_; }

 protected:
  void set_may_hold_unflushed(bool value) { may_hold_unflushed_ = value; }

 private:
  bool may_hold_unflushed_ = true;
};

struct ChannelPair {
  std::unique_ptr<ChannelEnd> task_end;
  std::unique_ptr<ChannelEnd> owner_end;
};

// Creates connected pairs. Thread-safe.
class ChannelFactory {
 public:
  virtual ~ChannelFactory() = default;

  // kInvalidArgument for options the backend cannot honour (e.g. a maximum
  // beyond the wire format's 32-bit length); system errors otherwise.
  virtual absl::StatusOr<ChannelPair> CreatePair(const ChannelOptions& options) = 0;

  virtual std::string name() const = 0;
};

namespace channel_internal {
// The waiting halves of Send and Receive, after a first attempt that would
// have blocked (or, for Send, was accepted but not flushed).
absl::Status SendSlow(ChannelEnd& end, absl::Span<const char> message, bool accepted,
                      absl::Time deadline);
absl::StatusOr<size_t> ReceiveSlow(ChannelEnd& end, absl::Span<char> out, absl::Time deadline);
}  // namespace channel_internal

// As Send, giving up at `deadline` with kDeadlineExceeded, having sent
// nothing, when the message has not left by then: the end refused it all
// along, or accepted it and can take it back whole (TryTakeBackUnsent).
// When part of it has left already (a large message goes in pieces as the
// peer reads), that part cannot be taken back, so SendUntil pushes the
// rest out as Send does, past the deadline if the peer is slow to read: it
// never returns with a message half sent, nor leaves one for a later call.
inline absl::Status SendUntil(ChannelEnd& end, absl::Span<const char> message,
                              absl::Time deadline) {
  absl::Status sent = end.TrySend(message);
  if (!sent.ok()) [[unlikely]] {
    if (!IsWouldBlock(sent)) return sent;
    return channel_internal::SendSlow(end, message, /*accepted=*/false, deadline);
  }
  if (!end.may_hold_unflushed()) [[likely]] return sent;
  absl::Status flushed = end.TryFlush();
  if (flushed.ok() || !IsWouldBlock(flushed)) [[likely]] return flushed;
  return channel_internal::SendSlow(end, message, /*accepted=*/true, deadline);
}

// Sends one whole message, waiting through the current execution context
// while the end cannot take it, and returns once every byte has left the end.
// The first attempt is inline: most sends need no wait.
inline absl::Status Send(ChannelEnd& end, absl::Span<const char> message) {
  return SendUntil(end, message, absl::InfiniteFuture());
}

// As Receive, giving up at `deadline` with kDeadlineExceeded when no whole
// message has arrived by then: nothing was taken, and the next receive gets
// the next message whole (`out` may hold scratch bytes after the error).
inline absl::StatusOr<size_t> ReceiveUntil(ChannelEnd& end, absl::Span<char> out,
                                           absl::Time deadline) {
  absl::StatusOr<size_t> received = end.TryReceive(out);
  if (received.ok() || !IsWouldBlock(received.status())) return received;
  return channel_internal::ReceiveSlow(end, out, deadline);
}

// Receives one message into `out`, waiting through the current execution
// context until one arrives; returns the message's full length.
inline absl::StatusOr<size_t> Receive(ChannelEnd& end, absl::Span<char> out) {
  return ReceiveUntil(end, out, absl::InfiniteFuture());
}

// The errors of the contract above, for backends, so that every backend
// words them alike. Out of line: an error's message is never on a hot path.
//
// kFailedPrecondition: `operation` ("send", "receive", ...) on an end after
// its own Close().
absl::Status ChannelEndClosedError(absl::string_view operation);
// kFailedPrecondition: a send after the peer closed.
absl::Status ChannelPeerClosedError();
// kOutOfRange: a receive after the peer closed, once every message is read.
absl::Status ChannelDrainedError();
// kResourceExhausted: a send of `size` bytes over the end's maximum.
absl::Status ChannelMessageTooLargeError(size_t size, size_t max_message_size);

}  // namespace taskrt

#endif  // TASKRT_CORE_CHANNEL_H_
