#include "channels/socketpair/socketpair_channel.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/errors.h"

namespace taskrt {
namespace {

constexpr size_t kHeaderSize = sizeof(uint32_t);
// The receive buffer starts here and returns to it after a large message.
constexpr size_t kInitialBufferSize = 64 * 1024;

class SocketpairEnd final : public ChannelEnd {
 public:
  SocketpairEnd(int fd, size_t max_message_size)
      : fd_(fd), max_message_size_(max_message_size), in_(kInitialBufferSize) {}
  ~SocketpairEnd() override {
    Close();
    close(fd_);
  }

  absl::Status TrySend(absl::Span<const char> message) override {
    if (closed_) return ClosedError("send");
    if (message.size() > max_message_size_) {
      return absl::ResourceExhaustedError(
          absl::StrCat("channel send: a message of ", message.size(),
                       " bytes exceeds the channel's maximum of ", max_message_size_,
                       " bytes; nothing was sent"));
    }
    // One message at a time on the wire: finish the last one first.
    if (absl::Status flushed = TryFlush(); !flushed.ok()) return flushed;

    const uint32_t header = static_cast<uint32_t>(message.size());
    iovec parts[2] = {{const_cast<uint32_t*>(&header), kHeaderSize},
                      {const_cast<char*>(message.data()), message.size()}};
    msghdr msg{};
    msg.msg_iov = parts;
    msg.msg_iovlen = message.empty() ? 1 : 2;
    ssize_t sent;
    do {
      sent = sendmsg(fd_, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
    } while (sent < 0 && errno == EINTR);
    if (sent < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK) return WouldBlock();
      return SendError(errno);
    }
    const size_t total = kHeaderSize + message.size();
    if (static_cast<size_t>(sent) < total) {
      // Accepted: keep the rest and push it out in TryFlush().
      const char* header_bytes = reinterpret_cast<const char*>(&header);
      size_t done = static_cast<size_t>(sent);
      if (done < kHeaderSize) out_.assign(header_bytes + done, kHeaderSize - done);
      const size_t payload_done = done > kHeaderSize ? done - kHeaderSize : 0;
      out_.append(message.data() + payload_done, message.size() - payload_done);
      out_offset_ = 0;
    }
    return absl::OkStatus();
  }

  absl::Status TryFlush() override {
    if (closed_) return ClosedError("flush");
    while (out_offset_ < out_.size()) {
      const ssize_t sent = send(fd_, out_.data() + out_offset_, out_.size() - out_offset_,
                                MSG_NOSIGNAL | MSG_DONTWAIT);
      if (sent < 0) {
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) return WouldBlock();
        return SendError(errno);
      }
      out_offset_ += static_cast<size_t>(sent);
    }
    out_.clear();
    out_offset_ = 0;
    return absl::OkStatus();
  }

  absl::StatusOr<size_t> TryReceive(absl::Span<char> out) override {
    absl::StatusOr<size_t> length = PullMessage();
    if (!length.ok()) return length;
    const size_t copied = std::min(*length, out.size());
    if (copied > 0) std::memcpy(out.data(), in_.data() + in_begin_ + kHeaderSize, copied);
    in_begin_ += kHeaderSize + *length;
    if (in_begin_ == in_end_) ResetBuffer();
    return length;
  }

  bool ReceiveReady() override { return PullMessage().ok(); }

  Readiness send_readiness() const override { return {fd_, POLLOUT}; }
  Readiness receive_readiness() const override { return {fd_, POLLIN}; }

  void Close() override {
    if (closed_) return;
    closed_ = true;
    // shutdown() ends the stream now for the peer; the descriptor itself
    // stays open until the end is destroyed (core/channel.h), so an owner
    // that closes before it unwatches cannot unwatch a new pair's socket
    // that reused the number.
    shutdown(fd_, SHUT_RDWR);
    out_.clear();
    out_offset_ = 0;
  }

  size_t max_message_size() const override { return max_message_size_; }

 private:
  static absl::Status ClosedError(const char* operation) {
    return absl::FailedPreconditionError(
        absl::StrCat("channel ", operation, ": this end of the channel is closed"));
  }
  static absl::Status PeerClosedError() {
    return absl::OutOfRangeError("channel receive: the peer closed the channel and it is drained");
  }
  static absl::Status SendError(int error_number) {
    if (error_number == EPIPE || error_number == ECONNRESET) {
      return absl::FailedPreconditionError("channel send: the peer closed the channel");
    }
    return ErrnoError("channel send", error_number);
  }

  // Reads from the socket until in_ holds a whole message at in_begin_, and
  // returns its length; WouldBlock() when the socket has no more for now.
  absl::StatusOr<size_t> PullMessage() {
    if (closed_) return ClosedError("receive");
    while (true) {
      const size_t available = in_end_ - in_begin_;
      size_t needed = kHeaderSize;
      if (available >= kHeaderSize) {
        uint32_t length;
        std::memcpy(&length, in_.data() + in_begin_, kHeaderSize);
        if (length > max_message_size_) {
          return absl::DataLossError(absl::StrCat(
              "channel receive: the peer announced a message of ", length,
              " bytes, over the channel's maximum of ", max_message_size_, " bytes"));
        }
        needed = kHeaderSize + length;
        if (available >= needed) return static_cast<size_t>(length);
      }
      if (peer_closed_) {
        if (available == 0) return PeerClosedError();
        return absl::DataLossError(absl::StrCat(
            "channel receive: the peer closed in the middle of a message (", available,
            " bytes of ", needed, " arrived)"));
      }
      MakeRoom(needed);
      const ssize_t got =
          recv(fd_, in_.data() + in_end_, in_.size() - in_end_, MSG_DONTWAIT);
      if (got < 0) {
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) return WouldBlock();
        if (errno == ECONNRESET) {
          peer_closed_ = true;
          continue;
        }
        return ErrnoError("channel receive: recv", errno);
      }
      if (got == 0) {
        peer_closed_ = true;
        continue;
      }
      in_end_ += static_cast<size_t>(got);
    }
  }

  // Ensures the buffer can hold `needed` bytes from in_begin_ on.
  void MakeRoom(size_t needed) {
    if (in_.size() - in_begin_ >= needed && in_end_ < in_.size()) return;
    if (in_begin_ > 0) {
      std::memmove(in_.data(), in_.data() + in_begin_, in_end_ - in_begin_);
      in_end_ -= in_begin_;
      in_begin_ = 0;
    }
    if (in_.size() < needed) in_.resize(needed);
  }

  void ResetBuffer() {
    in_begin_ = in_end_ = 0;
    if (in_.size() > 4 * kInitialBufferSize) {
      in_.resize(kInitialBufferSize);
      in_.shrink_to_fit();
    }
  }

  const int fd_;  // open for the end's whole life
  bool closed_ = false;
  const size_t max_message_size_;
  bool peer_closed_ = false;
  // Received bytes not yet handed out: in_[in_begin_, in_end_).
  std::vector<char> in_;
  size_t in_begin_ = 0;
  size_t in_end_ = 0;
  // Accepted bytes not yet sent: out_[out_offset_, end).
  std::string out_;
  size_t out_offset_ = 0;
};

class SocketpairFactory final : public ChannelFactory {
 public:
  absl::StatusOr<ChannelPair> CreatePair(const ChannelOptions& options) override {
    if (options.max_message_size > std::numeric_limits<uint32_t>::max()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "socketpair channel: max_message_size ", options.max_message_size,
          " does not fit the 32-bit length of Kore's wire format"));
    }
    int fds[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds) != 0) {
      return ErrnoError("socketpair channel: socketpair", errno);
    }
    ChannelPair pair;
    pair.task_end = std::make_unique<SocketpairEnd>(fds[0], options.max_message_size);
    pair.owner_end = std::make_unique<SocketpairEnd>(fds[1], options.max_message_size);
    return pair;
  }

  std::string name() const override { return "socketpair"; }
};

}  // namespace

absl::StatusOr<std::unique_ptr<ChannelFactory>> NewSocketpairChannelFactory() {
  return std::make_unique<SocketpairFactory>();
}

}  // namespace taskrt
