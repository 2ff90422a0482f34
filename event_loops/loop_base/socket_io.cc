#include "event_loops/loop_base/socket_io.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/types/span.h"
#include "core/errors.h"

namespace taskrt::loop_internal {
namespace {

// System calls one side of an fd makes per turn before it lets the rest of
// the loop run.
constexpr int kCallsPerTurn = 16;
constexpr size_t kReceiveBufferBytes = 64 * 1024;

}  // namespace

absl::Status CheckSocket(absl::string_view label, absl::string_view operation, int fd,
                         SocketUse use) {
  int type = 0;
  socklen_t length = sizeof type;
  if (fd < 0 || getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &length) != 0) {
    if (fd >= 0 && errno == ENOTSOCK) {
      return absl::InvalidArgumentError(
          absl::StrCat(label, ": ", operation, " got fd ", fd, ", which is not a socket"));
    }
    return absl::InvalidArgumentError(
        absl::StrCat(label, ": ", operation, " got a bad file descriptor ", fd));
  }
  if (use != SocketUse::kListening) return absl::OkStatus();
  int listening = 0;
  length = sizeof listening;
  if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &length) != 0 || listening == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(label, ": ", operation, " got socket ", fd, ", which is not listening"));
  }
  const int flags = fcntl(fd, F_GETFL);
  if (flags < 0 || (flags & O_NONBLOCK) == 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        label, ": ", operation, " got listening socket ", fd, " in blocking mode (needs O_NONBLOCK)"));
  }
  return absl::OkStatus();
}

bool IsTransientAcceptError(int error_number) {
  // accept(2): a connection that went before it was accepted, or network
  // errors of that one connection that Linux passes on.
  switch (error_number) {
    case EINTR:
    case ECONNABORTED:
    case EPROTO:
    case ENETDOWN:
    case ENOPROTOOPT:
    case EHOSTDOWN:
    case ENONET:
    case EHOSTUNREACH:
    case EOPNOTSUPP:
    case ENETUNREACH:
      return true;
    default:
      return false;
  }
}

ReadinessIo::ReadinessIo(EventLoop& loop, std::string label, std::function<void(Work)> defer)
    : loop_(loop), label_(std::move(label)), defer_(std::move(defer)) {}

absl::Status ReadinessIo::AcceptEach(IoId id, int listen_fd, AcceptCallback on_accept) {
  absl::StatusOr<FdState*> state = ReaderStateFor("AcceptEach", listen_fd);
  if (!state.ok()) return state.status();
  (*state)->accept = id;
  (*state)->on_accept = std::make_shared<AcceptCallback>(std::move(on_accept));
  Started(id, listen_fd, kAcceptSide);
  return absl::OkStatus();
}

absl::Status ReadinessIo::ReceiveEach(IoId id, int fd, ReceiveCallback on_data) {
  absl::StatusOr<FdState*> state = ReaderStateFor("ReceiveEach", fd);
  if (!state.ok()) return state.status();
  (*state)->receive = id;
  (*state)->receive_paused = false;
  (*state)->on_data = std::make_shared<ReceiveCallback>(std::move(on_data));
  Started(id, fd, kReceiveSide);
  return absl::OkStatus();
}

absl::Status ReadinessIo::SendAll(IoId id, int fd, std::string bytes, SendCallback on_sent) {
  absl::StatusOr<FdState*> state = StateFor(fd);
  if (!state.ok()) return state.status();
  (*state)->sends.push_back(
      {id, std::move(bytes), 0, std::make_shared<SendCallback>(std::move(on_sent))});
  // Only the first send of the queue writes; later ones wait their turn.
  if ((*state)->sends.size() == 1) {
    Started(id, fd, kSendSide);
  } else {
    ops_[id] = fd;
  }
  return absl::OkStatus();
}

void ReadinessIo::Started(IoId id, int fd, unsigned sides) {
  ops_[id] = fd;
  DeferDrive(fd, sides);
}

absl::Status ReadinessIo::CancelIo(IoId id) {
  auto op = ops_.find(id);
  if (op == ops_.end()) {
    return absl::NotFoundError(
        absl::StrCat(label_, ": CancelIo of operation ", id, ", which is unknown or has ended"));
  }
  const int fd = op->second;
  FdState* state = Find(fd);
  if (state != nullptr) {
    if (state->accept == id) {
      state->accept = 0;
      state->on_accept.reset();
    } else if (state->receive == id) {
      state->receive = 0;
      state->on_data.reset();
    } else {
      for (auto it = state->sends.begin(); it != state->sends.end(); ++it) {
        if (it->id != id) continue;
        const bool was_first = it == state->sends.begin();
        state->sends.erase(it);
        // The next send takes over the fd.
        if (was_first && !state->sends.empty()) DeferDrive(fd, kSendSide);
        break;
      }
    }
  }
  Forget(fd, id);
  return absl::OkStatus();
}

absl::StatusOr<ReadinessIo::FdState*> ReadinessIo::ReceiveStateOf(const char* operation, IoId id) {
  auto op = ops_.find(id);
  FdState* state = op == ops_.end() ? nullptr : Find(op->second);
  if (state == nullptr) {
    return absl::NotFoundError(absl::StrCat(label_, ": ", operation, " of operation ", id,
                                            ", which is unknown or has ended"));
  }
  if (state->receive != id) {
    return absl::InvalidArgumentError(absl::StrCat(label_, ": ", operation, " of operation ", id,
                                                   ", which is not a ReceiveEach"));
  }
  return state;
}

absl::Status ReadinessIo::HoldReceive(IoId id, bool hold) {
  absl::StatusOr<FdState*> state = ReceiveStateOf(hold ? "PauseReceive" : "ResumeReceive", id);
  if (!state.ok()) return state.status();
  const bool resumed = (*state)->receive_paused && !hold;
  (*state)->receive_paused = hold;
  // The edges that came while paused were reported to nobody.
  if (resumed) DeferDrive(ops_[id], kReceiveSide);
  return absl::OkStatus();
}

absl::StatusOr<ReadinessIo::FdState*> ReadinessIo::StateFor(int fd) {
  if (FdState* state = Find(fd); state != nullptr) return state;
  auto state = std::make_unique<FdState>();
  absl::StatusOr<WatchId> watch = loop_.Watch({fd, POLLIN | POLLOUT}, [this, fd] { Drive(fd); });
  if (!watch.ok()) return watch.status();
  state->watch = *watch;
  FdState* raw = state.get();
  fds_[fd] = std::move(state);
  return raw;
}

absl::StatusOr<ReadinessIo::FdState*> ReadinessIo::ReaderStateFor(const char* operation, int fd) {
  absl::StatusOr<FdState*> state = StateFor(fd);
  if (!state.ok()) return state;
  if ((*state)->accept != 0 || (*state)->receive != 0) {
    return absl::FailedPreconditionError(absl::StrCat(
        label_, ": ", operation, " on fd ", fd, ", which has an AcceptEach or ReceiveEach"));
  }
  return state;
}

ReadinessIo::FdState* ReadinessIo::Find(int fd) {
  auto it = fds_.find(fd);
  return it == fds_.end() ? nullptr : it->second.get();
}

void ReadinessIo::Forget(int fd, IoId id) {
  ops_.erase(id);
  FdState* state = Find(fd);
  if (state == nullptr || state->accept != 0 || state->receive != 0 || !state->sends.empty()) {
    return;
  }
  // A watch of ours is known to the loop: the Unwatch cannot fail for the
  // id, and the fd is still open (the caller keeps it open until now).
  loop_.Unwatch(state->watch).IgnoreError();
  fds_.erase(fd);
}

void ReadinessIo::DeferDrive(int fd, unsigned sides) {
  defer_([this, fd, sides] { Drive(fd, sides); });
}

void ReadinessIo::Drive(int fd, unsigned sides) {
  if (sides & kAcceptSide) DriveAccept(fd);
  if (sides & kReceiveSide) DriveReceive(fd);
  if (sides & kSendSide) DriveSends(fd);
}

void ReadinessIo::DriveAccept(int fd) {
  for (int calls = 0;; ++calls) {
    FdState* state = Find(fd);
    if (state == nullptr || state->accept == 0) return;
    if (calls == kCallsPerTurn) {
      DeferDrive(fd, kAcceptSide);
      return;
    }
    const IoId id = state->accept;
    std::shared_ptr<AcceptCallback> on_accept = state->on_accept;
    const int connection = accept4(fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (connection >= 0) {
      (*on_accept)(connection);
      continue;
    }
    const int error = errno;
    if (error == EAGAIN || error == EWOULDBLOCK) return;
    if (IsTransientAcceptError(error)) continue;
    state->accept = 0;
    state->on_accept.reset();
    Forget(fd, id);
    (*on_accept)(ErrnoError(absl::StrCat(label_, ": accept4 on fd ", fd), error));
    return;
  }
}

void ReadinessIo::DriveReceive(int fd) {
  std::vector<char> own_buffer;
  std::vector<char>* buffer = &buffer_;
  if (buffer_in_use_) buffer = &own_buffer;
  if (buffer->empty()) buffer->resize(kReceiveBufferBytes);
  const bool claimed = buffer == &buffer_;
  if (claimed) buffer_in_use_ = true;
  for (int calls = 0;; ++calls) {
    FdState* state = Find(fd);
    if (state == nullptr || state->receive == 0 || state->receive_paused) break;
    if (calls == kCallsPerTurn) {
      DeferDrive(fd, kReceiveSide);
      break;
    }
    const IoId id = state->receive;
    std::shared_ptr<ReceiveCallback> on_data = state->on_data;
    const ssize_t received = recv(fd, buffer->data(), buffer->size(), MSG_DONTWAIT);
    if (received > 0) {
      (*on_data)(absl::Span<const char>(buffer->data(), static_cast<size_t>(received)));
      continue;
    }
    const int error = errno;
    if (received < 0 && (error == EAGAIN || error == EWOULDBLOCK)) break;
    if (received < 0 && error == EINTR) continue;
    // The end of the stream or an error: the operation is over.
    state->receive = 0;
    state->on_data.reset();
    Forget(fd, id);
    if (received == 0) {
      (*on_data)(absl::Span<const char>());
    } else {
      (*on_data)(ErrnoError(absl::StrCat(label_, ": recv on fd ", fd), error));
    }
    break;
  }
  if (claimed) buffer_in_use_ = false;
}

void ReadinessIo::DriveSends(int fd) {
  for (int calls = 0;; ++calls) {
    FdState* state = Find(fd);
    if (state == nullptr || state->sends.empty()) return;
    if (calls == kCallsPerTurn) {
      DeferDrive(fd, kSendSide);
      return;
    }
    Send& send = state->sends.front();
    absl::Status status;
    if (send.sent < send.bytes.size()) {
      const ssize_t sent = ::send(fd, send.bytes.data() + send.sent, send.bytes.size() - send.sent,
                                  MSG_NOSIGNAL | MSG_DONTWAIT);
      if (sent < 0) {
        const int error = errno;
        if (error == EAGAIN || error == EWOULDBLOCK) return;
        if (error == EINTR) continue;
        status = ErrnoError(absl::StrCat(label_, ": send on fd ", fd), error);
      } else {
        send.sent += static_cast<size_t>(sent);
        if (send.sent < send.bytes.size()) continue;
      }
    }
    // Done (every byte written, or none to write) or failed.
    const IoId id = send.id;
    std::shared_ptr<SendCallback> on_sent = std::move(send.on_sent);
    state->sends.pop_front();
    Forget(fd, id);
    (*on_sent)(std::move(status));
  }
}

}  // namespace taskrt::loop_internal
