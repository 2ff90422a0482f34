#include "core/channel.h"

#include <chrono>

#include "absl/strings/str_cat.h"

#include "core/errors.h"
#include "core/execution_context.h"

namespace taskrt {
namespace {

const absl::Status& StatusOf(const absl::Status& status) { return status; }
template <typename T>
const absl::Status& StatusOf(const absl::StatusOr<T>& status_or) {
  return status_or.status();
}

// Runs the non-blocking `attempt`, whose last try returned WouldBlock(),
// until it stops doing so: first spinning for the execution context's spin
// budget, then waiting through the end (see ChannelEnd::WaitUntilReady)
// between attempts.
template <typename Attempt>
auto RetryUntilReady(Attempt attempt, ChannelEnd& end, ChannelDirection direction)
    -> decltype(attempt()) {
  ExecutionContext& context = CurrentExecutionContext();
  if (const auto spin = context.spin_before_wait(); spin.count() > 0) {
    const auto deadline = std::chrono::steady_clock::now() + spin;
    do {
      CpuRelax();
      auto result = attempt();
      if (!IsWouldBlock(StatusOf(result))) return result;
    } while (std::chrono::steady_clock::now() < deadline);
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
    if (absl::Status wait = end.WaitUntilReady(direction); !wait.ok()) return wait;
    auto result = attempt();
    if (result.ok() || !IsWouldBlock(StatusOf(result))) return result;
  }
}

}  // namespace

absl::Status ChannelEnd::WaitUntilReady(ChannelDirection direction) {
  const Readiness readiness =
      direction == ChannelDirection::kSend ? send_readiness() : receive_readiness();
  return CurrentExecutionContext().WaitFd(readiness.fd, readiness.events);
}

namespace channel_internal {

absl::Status SendSlow(ChannelEnd& end, absl::Span<const char> message, bool accepted) {
  if (!accepted) {
    absl::Status status =
        RetryUntilReady([&] { return end.TrySend(message); }, end, ChannelDirection::kSend);
    if (!status.ok()) return status;
    status = end.TryFlush();
    if (status.ok() || !IsWouldBlock(status)) return status;
  }
  return RetryUntilReady([&] { return end.TryFlush(); }, end, ChannelDirection::kSend);
}

absl::StatusOr<size_t> ReceiveSlow(ChannelEnd& end, absl::Span<char> out) {
  return RetryUntilReady([&] { return end.TryReceive(out); }, end, ChannelDirection::kReceive);
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
