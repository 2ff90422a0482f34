#ifndef TASKRT_CORE_SELECT_H_
#define TASKRT_CORE_SELECT_H_

// Select: wait on several channel ends at once, as Go's select statement.
//
// Each case is a receive into a buffer or a send of a message, on an end of
// any channel backend (one select may mix backends). Select() performs
// exactly one case, the first that can proceed, and returns which:
//   - A receive case proceeds when a message waits (it is received, with
//     Receive()'s truncation rule) or when the end can only fail: the peer
//     closed and everything is read (kOutOfRange), or the end was closed.
//   - A send case proceeds when the end accepts the message whole, or when
//     it can only fail (the peer closed, the message is over the maximum,
//     the end was closed). An accepted message is then flushed to the end
//     as Send() does, even past the deadline: a message is never left half
//     sent.
// A case that fails is selected like one that succeeds: Selected::status
// carries the error, and nothing else happened. When several cases can
// proceed, each is equally likely to be chosen (the cases are tried in a
// fresh random order each time), so none starves.
//
// Waiting goes through the current execution context, as Send() and
// Receive() do: an OS thread sleeps, a stackful task suspends and lets the
// others of its thread run (the ones that are ready run first, so a
// same-thread peer answers without a wake-up).
//
// Errors of Select() itself (no case was performed):
//   kInvalidArgument   no cases, or a case without an end
//   kDeadlineExceeded  no case could proceed by `deadline`; a deadline that
//                      has passed polls every case once
//   others             waiting failed (the message names the call)
//
// Thread safety: the rules of core/channel.h: while Select() runs it is the
// one caller on each of its ends. The same end may appear in several cases.

#include <cstddef>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "core/channel.h"

namespace taskrt {

class SelectCase {
 public:
  // Receives one message from `end` into `out`.
  static SelectCase Receive(ChannelEnd* end, absl::Span<char> out) {
    return SelectCase(end, ChannelDirection::kReceive, out, {});
  }
  // Sends `message` (whole) to `end`'s peer.
  static SelectCase Send(ChannelEnd* end, absl::Span<const char> message) {
    return SelectCase(end, ChannelDirection::kSend, {}, message);
  }

  ChannelEnd* end() const { return end_; }
  ChannelDirection direction() const { return direction_; }

 private:
  friend class SelectRunner;
  SelectCase(ChannelEnd* end, ChannelDirection direction, absl::Span<char> out,
             absl::Span<const char> message)
      : end_(end), direction_(direction), out_(out), message_(message) {}

  ChannelEnd* end_;
  ChannelDirection direction_;
  absl::Span<char> out_;
  absl::Span<const char> message_;
};

struct Selected {
  size_t index = 0;     // the case performed, an index into the cases
  absl::Status status;  // that case's outcome: OK, or its channel error
  size_t length = 0;    // a receive's message length (Receive()'s result)
};

// Performs one case that can proceed, waiting until `deadline` for one.
absl::StatusOr<Selected> Select(absl::Span<const SelectCase> cases,
                                absl::Time deadline = absl::InfiniteFuture());

}  // namespace taskrt

#endif  // TASKRT_CORE_SELECT_H_
