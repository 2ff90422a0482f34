#ifndef TASKRT_CHANNELS_FRAMING_FRAMING_H_
#define TASKRT_CHANNELS_FRAMING_FRAMING_H_

// The length-prefix wire format of the channel backends that carry messages
// over a byte stream (a stream socket), and the reassembly of messages out
// of the bytes received. On the wire a message is a 4-byte length in host
// byte order (both ends live in one process), then that many payload bytes;
// a zero-length message is a header alone.
//
// Sending
//   AppendFrame() appends a message's frame, or the part of it a short write
//   left over, to a byte buffer; EncodeHeader() gives the header alone, for
//   a gather write of header and payload. A backend checks the message
//   against its maximum first (core/channel.h). NewStreamSocketPair() is
//   the factory's half: it refuses a maximum beyond the 32-bit length.
//
// Receiving
//   A FrameReader holds the bytes received and not yet handed out, and cuts
//   one whole message at a time from them, keeping core/channel.h's rules:
//     - Front() returns the length of the message at the front once all of
//       it has arrived, WouldBlock() while some of it is still to come;
//     - Take() copies the prefix of that message that fits the destination
//       and drops the rest of it, so the next Front() is the next message:
//       a short destination never puts the stream out of step;
//     - a header announcing more than the maximum is kDataLoss, for that
//       call and every later one (the stream cannot be resynchronised);
//     - once the peer has closed, EndOfStream() says what a receive reports:
//       kOutOfRange when nothing is left, kDataLoss when part of a message
//       arrived ("x bytes of y").
//   Bytes come in either through Space() and Commit() (a recv() straight
//   into the buffer) or through Append() (a copy from elsewhere, such as a
//   kernel-provided buffer).
//
// Memory
//   The buffer is allocated on first use at the initial capacity the owner
//   chooses, grows to hold the largest message in flight, and is freed when
//   it drains after growing beyond kShrinkAbove, so a burst of large
//   messages does not pin its memory. Beyond that nothing allocates:
//   Append() and Space() allocate only to grow the buffer, Front() only for
//   an error's message.
//
// Cost
//   Front(), Take(), Append(), Space() and Commit() are inline; the slow
//   halves (growing, shrinking, error messages) are out of line. A message
//   is copied once into the buffer and once out of it.
//
// Thread safety
//   None. A reader belongs to one channel end, whose calls never overlap
//   (core/channel.h).

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "core/channel.h"
#include "core/errors.h"

namespace taskrt {
namespace framing {

inline constexpr size_t kHeaderSize = sizeof(uint32_t);
// The largest length the header can carry.
inline constexpr size_t kMaxMessageSize = std::numeric_limits<uint32_t>::max();

struct Header {
  char bytes[kHeaderSize];
};

// The header of a message of `size` bytes; size <= kMaxMessageSize.
inline Header EncodeHeader(size_t size) {
  const uint32_t length = static_cast<uint32_t>(size);
  Header header;
  std::memcpy(header.bytes, &length, kHeaderSize);
  return header;
}

// Appends the frame of `message` (header, then payload) to `wire`, without
// its first `skip` bytes (those a short write already sent). `Bytes` is a
// contiguous byte container with insert(): std::string, std::vector<char>.
template <typename Bytes>
void AppendFrame(Bytes& wire, absl::Span<const char> message, size_t skip = 0) {
  const Header header = EncodeHeader(message.size());
  if (skip < kHeaderSize) wire.insert(wire.end(), header.bytes + skip, header.bytes + kHeaderSize);
  const size_t payload_skip = skip > kHeaderSize ? skip - kHeaderSize : 0;
  wire.insert(wire.end(), message.data() + payload_skip, message.data() + message.size());
}

// The connected pair of sockets under a new channel of `options`: AF_UNIX
// stream sockets, non-blocking and close-on-exec, both owned by the caller.
// kInvalidArgument when options.max_message_size does not fit the header;
// the system's error otherwise. Messages start with `channel`, the
// backend's label.
absl::StatusOr<std::array<int, 2>> NewStreamSocketPair(absl::string_view channel,
                                                       const ChannelOptions& options);

// The status of a send that failed on the stream socket with errno
// `error_number`: the peer's close (EPIPE, ECONNRESET) is kFailedPrecondition
// as core/channel.h says; anything else names `operation` and the error.
absl::Status SendErrnoError(absl::string_view operation, int error_number);

class FrameReader {
 public:
  // A buffer that drained above this many bytes is freed.
  static constexpr size_t kShrinkAbove = 256 * 1024;

  // Accepts messages of at most `max_message_size` bytes (at most
  // kMaxMessageSize); the buffer starts at `initial_capacity` bytes (> 0).
  FrameReader(size_t max_message_size, size_t initial_capacity)
      : max_message_size_(max_message_size), initial_capacity_(initial_capacity) {}
  FrameReader(const FrameReader&) = delete;
  FrameReader& operator=(const FrameReader&) = delete;

  // The length of the message at the front once all of it is buffered;
  // WouldBlock() while some of it is still to come; kDataLoss when its
  // header announces more than the maximum.
  absl::StatusOr<size_t> Front() const {
    const size_t available = end_ - begin_;
    if (available < kHeaderSize) return WouldBlock();
    const size_t length = FrontLength();
    if (length > max_message_size_) [[unlikely]] return OversizedError(length);
    if (available - kHeaderSize < length) return WouldBlock();
    return length;
  }

  // Hands out the front message, whose length `length` Front() returned:
  // copies the prefix that fits `out` and drops the rest of that message.
  void Take(absl::Span<char> out, size_t length) {
    const size_t copied = std::min(length, out.size());
    if (copied > 0) std::memcpy(out.data(), data_.get() + begin_ + kHeaderSize, copied);
    begin_ += kHeaderSize + length;
    if (begin_ == end_) {
      begin_ = end_ = 0;
      if (capacity_ > kShrinkAbove) [[unlikely]] Free();
    }
  }

  // True when the message at the front is buffered whole, whatever the
  // length it announces (Front() judges that).
  bool HasMessage() const {
    const size_t available = end_ - begin_;
    return available >= kHeaderSize && available - kHeaderSize >= FrontLength();
  }

  // Bytes buffered and not yet handed out.
  size_t buffered() const { return end_ - begin_; }
  // The buffer's size; 0 while none is allocated.
  size_t capacity() const { return capacity_; }

  // What a receive reports once the peer has closed and Front() returned
  // WouldBlock(): kOutOfRange when nothing is buffered (closed and
  // drained), kDataLoss when part of a message is.
  absl::Status EndOfStream() const;

  // Free space after the buffered bytes, large enough that the rest of the
  // front message (or its header) fits, for a recv() to fill; Commit() then
  // adds the `count` bytes written at its start.
  absl::Span<char> Space() {
    const size_t needed = Needed();
    if (capacity_ - begin_ < needed || end_ == capacity_) [[unlikely]] MakeRoom(needed);
    return absl::MakeSpan(data_.get() + end_, capacity_ - end_);
  }
  void Commit(size_t count) { end_ += count; }

  // Appends a copy of `size` bytes at `data`.
  void Append(const char* data, size_t size) {
    if (size == 0) return;
    if (capacity_ - end_ < size) [[unlikely]] MakeRoom(end_ - begin_ + size);
    std::memcpy(data_.get() + end_, data, size);
    end_ += size;
  }

  // Drops everything buffered and frees the buffer.
  void Clear() {
    begin_ = end_ = 0;
    Free();
  }

 private:
  // The length the front header announces; at least kHeaderSize buffered.
  size_t FrontLength() const {
    uint32_t length;
    std::memcpy(&length, data_.get() + begin_, kHeaderSize);
    return length;
  }
  // The bytes the front message takes, header included, as far as is known:
  // the header alone until it has arrived.
  size_t Needed() const {
    if (end_ - begin_ < kHeaderSize) return kHeaderSize;
    return kHeaderSize + std::min(FrontLength(), max_message_size_);
  }

  absl::Status OversizedError(size_t length) const;
  // Moves the buffered bytes to the buffer's start, and grows the buffer
  // if `bytes` would not fit from there with some space free.
  void MakeRoom(size_t bytes);
  void Free();

  const size_t max_message_size_;
  const size_t initial_capacity_;
  // Buffered bytes: data_[begin_, end_).
  std::unique_ptr<char[]> data_;
  size_t capacity_ = 0;
  size_t begin_ = 0;
  size_t end_ = 0;
};

}  // namespace framing
}  // namespace taskrt

#endif  // TASKRT_CHANNELS_FRAMING_FRAMING_H_
