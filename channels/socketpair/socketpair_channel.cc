#include "channels/socketpair/socketpair_channel.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <string>

#include "channels/framing/framing.h"
#include "core/channel_counters.h"
#include "core/errors.h"

namespace taskrt {
namespace {

using framing::kHeaderSize;
// The receive buffer's size when first used, and after a large message:
// several small messages cost one recv().
constexpr size_t kInitialBufferSize = 64 * 1024;

class SocketpairEnd final : public ChannelEnd {
 public:
  SocketpairEnd(int fd, size_t max_message_size)
      : fd_(fd), max_message_size_(max_message_size), in_(max_message_size, kInitialBufferSize) {}
  ~SocketpairEnd() override {
    Close();
    close(fd_);
  }

  absl::Status TrySend(absl::Span<const char> message) override {
    if (closed_) return ChannelEndClosedError("send");
    if (message.size() > max_message_size_) {
      return ChannelMessageTooLargeError(message.size(), max_message_size_);
    }
    // One message at a time on the wire: finish the last one first.
    if (absl::Status flushed = TryFlush(); !flushed.ok()) return flushed;

    framing::Header header = framing::EncodeHeader(message.size());
    iovec parts[2] = {{header.bytes, kHeaderSize},
                      {const_cast<char*>(message.data()), message.size()}};
    msghdr msg{};
    msg.msg_iov = parts;
    msg.msg_iovlen = message.empty() ? 1 : 2;
    ssize_t sent;
    do {
      sent = sendmsg(fd_, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
    } while (sent < 0 && errno == EINTR);
    if (sent < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        counts_.sends_blocked.Add();
        return WouldBlock();
      }
      return framing::SendErrnoError("channel send", errno);
    }
    const size_t total = kHeaderSize + message.size();
    if (static_cast<size_t>(sent) < total) {
      // Accepted: keep the rest and push it out in TryFlush().
      framing::AppendFrame(out_, message, static_cast<size_t>(sent));
      out_offset_ = 0;
    }
    counts_.Sent(message.size());
    return absl::OkStatus();
  }

  absl::Status TryFlush() override {
    if (closed_) return ChannelEndClosedError("flush");
    while (out_offset_ < out_.size()) {
      const ssize_t sent = send(fd_, out_.data() + out_offset_, out_.size() - out_offset_,
                                MSG_NOSIGNAL | MSG_DONTWAIT);
      if (sent < 0) {
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
          counts_.sends_blocked.Add();
          return WouldBlock();
        }
        return framing::SendErrnoError("channel send", errno);
      }
      out_offset_ += static_cast<size_t>(sent);
    }
    out_.clear();
    out_offset_ = 0;
    return absl::OkStatus();
  }

  absl::StatusOr<size_t> TryReceive(absl::Span<char> out) override {
    absl::StatusOr<size_t> length = PullMessage();
    if (!length.ok()) {
      if (IsWouldBlock(length.status())) counts_.receives_blocked.Add();
      return length;
    }
    in_.Take(out, *length);
    counts_.Received(*length);
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

  // The kernel wakes the peer: wakeups_sent stays 0.
  ChannelMetrics metrics() const override { return counts_.Snapshot(); }
  void LinkForTraceWith(SocketpairEnd& peer) { LinkForTrace(counts_, peer.counts_); }

 private:
  // Reads from the socket until in_ holds a whole message at its front, and
  // returns its length; WouldBlock() when the socket has no more for now.
  absl::StatusOr<size_t> PullMessage() {
    if (closed_) return ChannelEndClosedError("receive");
    while (true) {
      absl::StatusOr<size_t> length = in_.Front();
      if (length.ok() || !IsWouldBlock(length.status())) return length;
      if (peer_closed_) return in_.EndOfStream();
      const absl::Span<char> space = in_.Space();
      const ssize_t got = recv(fd_, space.data(), space.size(), MSG_DONTWAIT);
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
      in_.Commit(static_cast<size_t>(got));
    }
  }

  const int fd_;  // open for the end's whole life
  bool closed_ = false;
  const size_t max_message_size_;
  bool peer_closed_ = false;
  // Received bytes not yet handed out.
  framing::FrameReader in_;
  // Accepted bytes not yet sent: out_[out_offset_, end).
  std::string out_;
  size_t out_offset_ = 0;
  ChannelEndCounters counts_;  // metrics()
};

class SocketpairFactory final : public ChannelFactory {
 public:
  absl::StatusOr<ChannelPair> CreatePair(const ChannelOptions& options) override {
    absl::StatusOr<std::array<int, 2>> fds =
        framing::NewStreamSocketPair("socketpair channel", options);
    if (!fds.ok()) return fds.status();
    auto task_end = std::make_unique<SocketpairEnd>((*fds)[0], options.max_message_size);
    auto owner_end = std::make_unique<SocketpairEnd>((*fds)[1], options.max_message_size);
    task_end->LinkForTraceWith(*owner_end);
    return ChannelPair{.task_end = std::move(task_end), .owner_end = std::move(owner_end)};
  }

  std::string name() const override { return "socketpair"; }
};

}  // namespace

absl::StatusOr<std::unique_ptr<ChannelFactory>> NewSocketpairChannelFactory() {
  return std::make_unique<SocketpairFactory>();
}

}  // namespace taskrt
