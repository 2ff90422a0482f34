#include "core/channel.h"

#include <chrono>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

#include "core/errors.h"
#include "core/execution_context.h"

namespace taskrt {
namespace {

const absl::Status& StatusOf(const absl::Status& status) { return status; }
template <typename T>
const absl::Status& StatusOf(const absl::StatusOr<T>& status_or) {
  return status_or.status();
}

absl::Status DeadlineError(ChannelDirection direction) {
  return absl::DeadlineExceededError(
      direction == ChannelDirection::kSend
          ? "channel send: deadline exceeded; nothing was sent"
          : "channel receive: deadline exceeded; nothing was received");
}

// Runs the non-blocking `attempt`, whose last try returned WouldBlock(),
// until it stops doing so or `deadline` passes: first spinning for the
// execution context's spin budget, then waiting through the end (see
// ChannelEnd::WaitUntilReady) between attempts.
template <typename Attempt>
auto RetryUntilReady(Attempt attempt, ChannelEnd& end, ChannelDirection direction,
                     absl::Time deadline) -> decltype(attempt()) {
  const bool timed = deadline != absl::InfiniteFuture();
  if (timed && deadline <= absl::Now()) return DeadlineError(direction);
  ExecutionContext& context = CurrentExecutionContext();
  if (const auto spin = context.spin_before_wait(); spin.count() > 0) {
    const auto spin_end = std::chrono::steady_clock::now() + spin;
    do {
      CpuRelax();
      auto result = attempt();
      if (!IsWouldBlock(StatusOf(result))) return result;
    } while (std::chrono::steady_clock::now() < spin_end && !(timed && deadline <= absl::Now()));
  }
  // A stackful task lets the ready tasks of its thread run once before it
  // waits: when the peer is one of them (a same-thread round trip) it
  // answers meanwhile, and neither side pays for a park and a wake-up. At
  // most one extra switch when the answer is further away.
  if (context.YieldToReady()) {
    auto result = attempt();
    if (result.ok() || !IsWouldBlock(StatusOf(result))) return result;
  }
  while (true) {
    if (absl::Status wait = end.WaitUntilReady(direction, deadline); !wait.ok()) {
      if (wait.code() == absl::StatusCode::kDeadlineExceeded) return DeadlineError(direction);
      return wait;
    }
    auto result = attempt();
    if (result.ok() || !IsWouldBlock(StatusOf(result))) return result;
  }
}

}  // namespace

absl::Status ChannelEnd::WaitUntilReady(ChannelDirection direction, absl::Time deadline) {
  const Readiness readiness =
      direction == ChannelDirection::kSend ? send_readiness() : receive_readiness();
  return CurrentExecutionContext().WaitFdUntil(readiness.fd, readiness.events, deadline);
}

namespace channel_internal {

absl::Status SendSlow(ChannelEnd& end, absl::Span<const char> message, bool accepted,
                      absl::Time deadline) {
  if (!accepted) {
    absl::Status status = RetryUntilReady([&] { return end.TrySend(message); }, end,
                                          ChannelDirection::kSend, deadline);
    if (!status.ok()) return status;
    status = end.TryFlush();
    if (status.ok() || !IsWouldBlock(status)) return status;
  }
  const auto flush = [&] { return end.TryFlush(); };
  absl::Status status = RetryUntilReady(flush, end, ChannelDirection::kSend, deadline);
  if (status.code() != absl::StatusCode::kDeadlineExceeded) return status;
  if (end.TryTakeBackUnsent()) return status;
  // Part of it has left: the rest goes too, whatever the deadline.
  return RetryUntilReady(flush, end, ChannelDirection::kSend, absl::InfiniteFuture());
}

absl::StatusOr<size_t> ReceiveSlow(ChannelEnd& end, absl::Span<char> out, absl::Time deadline) {
  return RetryUntilReady([&] { return end.TryReceive(out); }, end, ChannelDirection::kReceive,
                         deadline);
}

}  // namespace channel_internal

absl::Status ChannelEndClosedError(absl::string_view operation) {
  return absl::FailedPreconditionError(
      absl::StrCat("channel ", operation, ": this end of the channel is closed"));
}

absl::Status ChannelPeerClosedError() {
  return absl::FailedPreconditionError("channel send: the peer closed the channel");
}

absl::Status ChannelDrainedError() {
  return absl::OutOfRangeError("channel receive: the peer closed the channel and it is drained");
}

absl::Status ChannelMessageTooLargeError(size_t size, size_t max_message_size) {
  return absl::ResourceExhaustedError(absl::StrCat("channel send: a message of ", size,
                                                   " bytes exceeds the channel's maximum of ",
                                                   max_message_size, " bytes; nothing was sent"));
}

}  // namespace taskrt
