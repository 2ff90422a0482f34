#include "core/channel.h"

#include "core/errors.h"
#include "core/execution_context.h"

namespace taskrt {
namespace {

absl::Status WaitFor(Readiness readiness) {
  return CurrentExecutionContext().WaitFd(readiness.fd, readiness.events);
}

}  // namespace

absl::Status Send(ChannelEnd& end, absl::Span<const char> message) {
  absl::Status status;
  while (IsWouldBlock(status = end.TrySend(message))) {
    if (absl::Status wait = WaitFor(end.send_readiness()); !wait.ok()) return wait;
  }
  if (!status.ok()) return status;
  while (IsWouldBlock(status = end.TryFlush())) {
    if (absl::Status wait = WaitFor(end.send_readiness()); !wait.ok()) return wait;
  }
  return status;
}

absl::StatusOr<size_t> Receive(ChannelEnd& end, absl::Span<char> out) {
  while (true) {
    absl::StatusOr<size_t> received = end.TryReceive(out);
    if (!IsWouldBlock(received.status())) return received;
    if (absl::Status wait = WaitFor(end.receive_readiness()); !wait.ok()) return wait;
  }
}

}  // namespace taskrt
