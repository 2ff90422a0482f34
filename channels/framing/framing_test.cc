// The framing kit alone: frames written by AppendFrame() and fed to a
// FrameReader in every way the channel backends feed it.

#include "channels/framing/framing.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "core/channel.h"
#include "core/errors.h"
#include "gtest/gtest.h"

namespace taskrt::framing {
namespace {

constexpr size_t kMax = 1 << 20;
constexpr size_t kInitial = 64;

std::string Frame(const std::string& message) {
  std::string wire;
  AppendFrame(wire, absl::MakeConstSpan(message));
  return wire;
}

std::string Frames(const std::vector<std::string>& messages) {
  std::string wire;
  for (const std::string& message : messages) AppendFrame(wire, absl::MakeConstSpan(message));
  return wire;
}

// Feeds `wire` through Space() and Commit(), as a recv() would, at most
// `chunk` bytes per call.
void Receive(FrameReader& reader, std::string_view wire, size_t chunk) {
  while (!wire.empty()) {
    absl::Span<char> space = reader.Space();
    ASSERT_GT(space.size(), 0u);
    const size_t count = std::min({space.size(), chunk, wire.size()});
    std::memcpy(space.data(), wire.data(), count);
    reader.Commit(count);
    wire.remove_prefix(count);
  }
}

// Takes the front message whole, or fails the test.
std::string TakeWhole(FrameReader& reader) {
  absl::StatusOr<size_t> length = reader.Front();
  EXPECT_TRUE(length.ok()) << length.status();
  if (!length.ok()) return "<none>";
  std::string out(*length, '\0');
  reader.Take(absl::MakeSpan(out), *length);
  return out;
}

std::string Pattern(size_t length, char seed) {
  std::string out(length, '\0');
  for (size_t i = 0; i < length; ++i) out[i] = static_cast<char>(seed + i * 7);
  return out;
}

TEST(Framing, HeaderIsTheHostEndianLength) {
  const Header header = EncodeHeader(0x01020304);
  uint32_t length;
  std::memcpy(&length, header.bytes, kHeaderSize);
  EXPECT_EQ(length, 0x01020304u);
  EXPECT_EQ(Frame("abc"), std::string(EncodeHeader(3).bytes, kHeaderSize) + "abc");
}

TEST(Framing, AppendFrameSkipsWhatAShortWriteSent) {
  const std::string message = "payload";
  const std::string whole = Frame(message);
  for (size_t skip = 0; skip <= whole.size(); ++skip) {
    std::vector<char> rest;
    AppendFrame(rest, absl::MakeConstSpan(message), skip);
    EXPECT_EQ(std::string(rest.begin(), rest.end()), whole.substr(skip)) << "skip " << skip;
  }
}

TEST(Framing, WholeMessageThroughSpaceAndCommit) {
  FrameReader reader(kMax, kInitial);
  EXPECT_TRUE(IsWouldBlock(reader.Front().status()));
  Receive(reader, Frame("hello"), 1 << 20);
  EXPECT_TRUE(reader.HasMessage());
  EXPECT_EQ(TakeWhole(reader), "hello");
  EXPECT_EQ(reader.buffered(), 0u);
  EXPECT_TRUE(IsWouldBlock(reader.Front().status()));
}

TEST(Framing, WholeMessageThroughAppend) {
  FrameReader reader(kMax, kInitial);
  const std::string wire = Frame("hello");
  reader.Append(wire.data(), wire.size());
  EXPECT_EQ(TakeWhole(reader), "hello");
}

// Every split of a stream of three messages into two pieces, by both ways
// in: nothing comes out until a message is whole, and then exactly it.
TEST(Framing, MessagesSplitAtEveryByteBoundary) {
  const std::vector<std::string> messages = {"first message", "", Pattern(100, 'a')};
  const std::string wire = Frames(messages);
  for (bool append : {false, true}) {
    for (size_t split = 0; split <= wire.size(); ++split) {
      SCOPED_TRACE(testing::Message() << (append ? "Append" : "Space") << ", split " << split);
      FrameReader reader(kMax, kInitial);
      std::vector<std::string> got;
      for (std::string_view piece : {std::string_view(wire).substr(0, split),
                                      std::string_view(wire).substr(split)}) {
        if (append) {
          reader.Append(piece.data(), piece.size());
        } else {
          Receive(reader, piece, piece.size());
        }
        while (reader.Front().ok()) got.push_back(TakeWhole(reader));
        EXPECT_TRUE(IsWouldBlock(reader.Front().status()));
      }
      EXPECT_EQ(got, messages);
      EXPECT_EQ(reader.buffered(), 0u);
    }
  }
}

TEST(Framing, OneByteAtATime) {
  const std::vector<std::string> messages = {"a", Pattern(300, 'x'), "", "last"};
  const std::string wire = Frames(messages);
  FrameReader reader(kMax, kInitial);
  std::vector<std::string> got;
  for (char byte : wire) {
    EXPECT_FALSE(reader.HasMessage());
    Receive(reader, std::string_view(&byte, 1), 1);
    while (reader.HasMessage()) got.push_back(TakeWhole(reader));
  }
  EXPECT_EQ(got, messages);
}

TEST(Framing, SeveralMessagesInOneChunk) {
  const std::vector<std::string> messages = {"one", "two", "three", Pattern(40, 'q')};
  FrameReader reader(kMax, kInitial);
  Receive(reader, Frames(messages), 1 << 20);
  for (const std::string& message : messages) EXPECT_EQ(TakeWhole(reader), message);
  EXPECT_TRUE(IsWouldBlock(reader.Front().status()));
}

TEST(Framing, ZeroLengthMessagesAreMessages) {
  FrameReader reader(kMax, kInitial);
  Receive(reader, Frames({"", "", "x", ""}), 1 << 20);
  for (const char* expected : {"", "", "x", ""}) {
    absl::StatusOr<size_t> length = reader.Front();
    ASSERT_TRUE(length.ok()) << length.status();
    EXPECT_EQ(*length, std::strlen(expected));
    char out[1] = {'?'};
    reader.Take(absl::MakeSpan(out, *length), *length);
    if (*length == 1) {
      EXPECT_EQ(out[0], 'x');
    }
  }
  EXPECT_TRUE(IsWouldBlock(reader.Front().status()));
  EXPECT_EQ(reader.buffered(), 0u);
}

TEST(Framing, TruncationCopiesThePrefixAndKeepsTheStreamInStep) {
  FrameReader reader(kMax, kInitial);
  Receive(reader, Frames({"0123456789", "next", "and the last"}), 1 << 20);
  char small[4];
  absl::StatusOr<size_t> length = reader.Front();
  ASSERT_TRUE(length.ok()) << length.status();
  EXPECT_EQ(*length, 10u);  // the full length, larger than the buffer
  reader.Take(absl::MakeSpan(small), *length);
  EXPECT_EQ(std::string(small, 4), "0123");
  // A zero-size destination drops the whole message.
  length = reader.Front();
  ASSERT_TRUE(length.ok()) << length.status();
  EXPECT_EQ(*length, 4u);
  reader.Take(absl::Span<char>(), *length);
  EXPECT_EQ(TakeWhole(reader), "and the last");
}

TEST(Framing, AnnouncedLengthOverTheMaximumIsDataLoss) {
  FrameReader reader(/*max_message_size=*/16, kInitial);
  Receive(reader, Frame("just right: 16 b") + Frame(Pattern(17, 'o')), 1 << 20);
  EXPECT_EQ(TakeWhole(reader), "just right: 16 b");
  // Known from the header alone, before the payload arrives...
  FrameReader early(/*max_message_size=*/16, kInitial);
  const Header header = EncodeHeader(1000);
  early.Append(header.bytes, kHeaderSize);
  for (FrameReader* broken : {&reader, &early}) {
    absl::StatusOr<size_t> length = broken->Front();
    EXPECT_EQ(length.status().code(), absl::StatusCode::kDataLoss) << length.status();
    EXPECT_NE(length.status().message().find("over the channel's maximum of 16 bytes"),
              std::string::npos)
        << length.status();
    // ...and for good: the stream cannot be resynchronised.
    EXPECT_EQ(broken->Front().status().code(), absl::StatusCode::kDataLoss);
  }
  // Space() asks for no more than the maximum however large the header says.
  EXPECT_LT(early.Space().size() + early.buffered(), 1000u);
}

TEST(Framing, EndOfStreamDrainedOrInTheMiddleOfAMessage) {
  FrameReader reader(kMax, kInitial);
  EXPECT_EQ(reader.EndOfStream().code(), absl::StatusCode::kOutOfRange);

  const std::string wire = Frame("twelve bytes");  // 16 bytes on the wire
  for (size_t arrived : {size_t{1}, size_t{3}, size_t{4}, size_t{10}}) {
    FrameReader partial(kMax, kInitial);
    Receive(partial, std::string_view(wire).substr(0, arrived), 1 << 20);
    EXPECT_TRUE(IsWouldBlock(partial.Front().status()));
    const absl::Status end = partial.EndOfStream();
    EXPECT_EQ(end.code(), absl::StatusCode::kDataLoss) << end;
    const size_t announced = arrived < kHeaderSize ? kHeaderSize : wire.size();
    EXPECT_NE(end.message().find("(" + std::to_string(arrived) + " bytes of " +
                                 std::to_string(announced) + " arrived)"),
              std::string::npos)
        << end;
  }
}

TEST(Framing, BufferGrowsForALargeMessageAndShrinksOnceDrained) {
  FrameReader reader(kMax, kInitial);
  const std::string large = Pattern(FrameReader::kShrinkAbove + 1000, 'L');
  Receive(reader, Frame(large) + Frame("small"), 4096);
  EXPECT_GT(reader.capacity(), FrameReader::kShrinkAbove);
  EXPECT_EQ(TakeWhole(reader), large);
  EXPECT_GT(reader.capacity(), FrameReader::kShrinkAbove);  // "small" is still buffered
  EXPECT_EQ(TakeWhole(reader), "small");
  EXPECT_EQ(reader.capacity(), 0u);  // drained: the large buffer is gone
  Receive(reader, Frame("again"), 1 << 20);
  EXPECT_EQ(reader.capacity(), kInitial);
  EXPECT_EQ(TakeWhole(reader), "again");
}

TEST(Framing, AppendInPiecesKeepsUnreadBytes) {
  FrameReader reader(kMax, kInitial);
  const std::vector<std::string> messages = {Pattern(50, 'a'), Pattern(5000, 'b'),
                                             Pattern(70, 'c')};
  const std::string wire = Frames(messages);
  std::vector<std::string> got;
  for (size_t offset = 0; offset < wire.size(); offset += 33) {
    const size_t count = std::min<size_t>(33, wire.size() - offset);
    reader.Append(wire.data() + offset, count);
    while (reader.Front().ok()) got.push_back(TakeWhole(reader));
  }
  EXPECT_EQ(got, messages);
  EXPECT_LE(reader.capacity(), FrameReader::kShrinkAbove);  // small enough to keep
  EXPECT_GE(reader.capacity(), 5000u);
}

TEST(Framing, ClearDropsEverythingAndFreesTheBuffer) {
  FrameReader reader(kMax, kInitial);
  Receive(reader, Frame("dropped") + "\x01", 1 << 20);
  reader.Clear();
  EXPECT_EQ(reader.buffered(), 0u);
  EXPECT_EQ(reader.capacity(), 0u);
  EXPECT_EQ(reader.EndOfStream().code(), absl::StatusCode::kOutOfRange);
  Receive(reader, Frame("kept"), 1 << 20);
  EXPECT_EQ(TakeWhole(reader), "kept");
}

TEST(Framing, StreamSocketPairIsConnectedAndNonBlocking) {
  ChannelOptions options;
  options.max_message_size = kMaxMessageSize;
  absl::StatusOr<std::array<int, 2>> fds = NewStreamSocketPair("test channel", options);
  ASSERT_TRUE(fds.ok()) << fds.status();
  for (int fd : *fds) EXPECT_NE(fcntl(fd, F_GETFL) & O_NONBLOCK, 0);
  for (int fd : *fds) EXPECT_NE(fcntl(fd, F_GETFD) & FD_CLOEXEC, 0);
  const std::string wire = Frame("across");
  ASSERT_EQ(send((*fds)[0], wire.data(), wire.size(), 0), static_cast<ssize_t>(wire.size()));
  FrameReader reader(kMaxMessageSize, kInitial);
  absl::Span<char> space = reader.Space();
  const ssize_t got = recv((*fds)[1], space.data(), space.size(), 0);
  ASSERT_GT(got, 0) << std::strerror(errno);
  reader.Commit(static_cast<size_t>(got));
  EXPECT_EQ(TakeWhole(reader), "across");
  char byte;
  EXPECT_EQ(recv((*fds)[1], &byte, 1, 0), -1);  // nothing more, and no waiting for it
  EXPECT_EQ(errno, EAGAIN);
  close((*fds)[0]);
  close((*fds)[1]);
}

TEST(Framing, StreamSocketPairRefusesAMaximumBeyondTheHeader) {
  ChannelOptions options;
  options.max_message_size = kMaxMessageSize + 1;
  absl::StatusOr<std::array<int, 2>> fds = NewStreamSocketPair("test channel", options);
  EXPECT_EQ(fds.status().code(), absl::StatusCode::kInvalidArgument) << fds.status();
  EXPECT_EQ(fds.status().message().substr(0, 13), "test channel:");
}

TEST(Framing, SendErrnoErrorTellsAClosedPeerFromOtherErrors) {
  EXPECT_EQ(SendErrnoError("channel send", EPIPE).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(SendErrnoError("channel send", ECONNRESET).code(),
            absl::StatusCode::kFailedPrecondition);
  const absl::Status other = SendErrnoError("channel send: io_uring send", ENOMEM);
  EXPECT_NE(other.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(other.message().substr(0, 27), "channel send: io_uring send");
}

}  // namespace
}  // namespace taskrt::framing
