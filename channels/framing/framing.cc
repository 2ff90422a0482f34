#include "channels/framing/framing.h"

#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <memory>

#include "absl/strings/str_cat.h"
#include "core/channel.h"
#include "core/errors.h"

namespace taskrt {
namespace framing {

absl::StatusOr<std::array<int, 2>> NewStreamSocketPair(absl::string_view channel,
                                                       const ChannelOptions& options) {
  if (options.max_message_size > kMaxMessageSize) {
    return absl::InvalidArgumentError(absl::StrCat(channel, ": max_message_size ",
                                                   options.max_message_size,
                                                   " does not fit the 32-bit length of the wire "
                                                   "format"));
  }
  std::array<int, 2> fds;
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds.data()) != 0) {
    return ErrnoError(absl::StrCat(channel, ": socketpair"), errno);
  }
  return fds;
}

absl::Status SendErrnoError(absl::string_view operation, int error_number) {
  if (error_number == EPIPE || error_number == ECONNRESET) return ChannelPeerClosedError();
  return ErrnoError(operation, error_number);
}

absl::Status FrameReader::EndOfStream() const {
  const size_t available = end_ - begin_;
  if (available == 0) return ChannelDrainedError();
  return absl::DataLossError(absl::StrCat("channel receive: the peer closed in the middle of a "
                                          "message (",
                                          available, " bytes of ", Needed(), " arrived)"));
}

absl::Status FrameReader::OversizedError(size_t length) const {
  return absl::DataLossError(absl::StrCat("channel receive: the peer announced a message of ",
                                          length, " bytes, over the channel's maximum of ",
                                          max_message_size_, " bytes"));
}

void FrameReader::MakeRoom(size_t bytes) {
  const size_t live = end_ - begin_;
  bytes = std::max(bytes, live + 1);  // room to receive into, whatever the caller asked
  if (bytes <= capacity_) {
    std::memmove(data_.get(), data_.get() + begin_, live);
  } else {
    // Doubling keeps a message that arrives in many pieces to a few copies.
    const size_t capacity = std::max({bytes, 2 * capacity_, initial_capacity_});
    // Not value-initialised: only bytes written by Commit() or Append() are read.
    std::unique_ptr<char[]> grown = std::make_unique_for_overwrite<char[]>(capacity);
    if (live > 0) std::memcpy(grown.get(), data_.get() + begin_, live);
    data_ = std::move(grown);
    capacity_ = capacity;
  }
  begin_ = 0;
  end_ = live;
}

void FrameReader::Free() {
  data_.reset();
  capacity_ = 0;
}

}  // namespace framing
}  // namespace taskrt
