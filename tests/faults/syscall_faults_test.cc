// The shim itself: it faults only MSG_DONTWAIT calls, injects every kind of
// fault, and a caller that retries as the channel does loses nothing.

#include "tests/faults/syscall_faults.h"

#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>

#include "gtest/gtest.h"

namespace taskrt::faults {
namespace {

class SocketPair {
 public:
  explicit SocketPair(int type) {
    EXPECT_EQ(socketpair(AF_UNIX, type, 0, fds_), 0) << std::strerror(errno);
  }
  ~SocketPair() {
    close(fds_[0]);
    close(fds_[1]);
  }
  int a() const { return fds_[0]; }
  int b() const { return fds_[1]; }

 private:
  int fds_[2] = {-1, -1};
};

TEST(SyscallFaults, CallsWithoutDontwaitPassThrough) {
  SocketPair pair(SOCK_STREAM);
  const FaultCounts before = Counts();
  char message[] = "0123456789";
  for (int i = 0; i < 500; ++i) {
    iovec part{message, sizeof message};
    msghdr msg{};
    msg.msg_iov = &part;
    msg.msg_iovlen = 1;
    ASSERT_EQ(sendmsg(pair.a(), &msg, MSG_NOSIGNAL), static_cast<ssize_t>(sizeof message));
    ASSERT_EQ(send(pair.a(), message, sizeof message, MSG_NOSIGNAL),
              static_cast<ssize_t>(sizeof message));
    char buffer[2 * sizeof message];
    ASSERT_EQ(recv(pair.b(), buffer, sizeof buffer, MSG_WAITALL),
              static_cast<ssize_t>(sizeof buffer));
  }
  EXPECT_EQ(Counts().calls, before.calls) << "a blocking call was seen by the shim";
}

// Moves a byte stream through a non-blocking pair on one thread, retrying as
// a socket channel does (EINTR: again; EAGAIN: later; short: the rest
// later), through sendmsg with two iovecs, send and recv.
TEST(SyscallFaults, InjectsEveryKindAndARetryingCallerLosesNothing) {
  SocketPair pair(SOCK_STREAM | SOCK_NONBLOCK);
  std::string stream(1 << 20, '\0');
  for (size_t i = 0; i < stream.size(); ++i) stream[i] = static_cast<char>(i * 131 + i / 251);
  std::string received;
  received.reserve(stream.size());
  const FaultCounts before = Counts();

  size_t sent = 0;
  bool use_sendmsg = true;
  for (int rounds = 0; received.size() < stream.size(); ++rounds) {
    ASSERT_LT(rounds, 10'000'000) << "no progress";  // a hang guard
    if (sent < stream.size()) {
      const size_t chunk = std::min<size_t>(300, stream.size() - sent);
      ssize_t n;
      if (use_sendmsg) {
        const size_t first = chunk / 3;
        iovec parts[2] = {{stream.data() + sent, first},
                          {stream.data() + sent + first, chunk - first}};
        msghdr msg{};
        msg.msg_iov = parts;
        msg.msg_iovlen = 2;
        n = sendmsg(pair.a(), &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
      } else {
        n = send(pair.a(), stream.data() + sent, chunk, MSG_NOSIGNAL | MSG_DONTWAIT);
      }
      if (n < 0) {
        ASSERT_TRUE(errno == EINTR || errno == EAGAIN) << std::strerror(errno);
      } else {
        ASSERT_GT(n, 0);
        ASSERT_LE(static_cast<size_t>(n), chunk);
        sent += static_cast<size_t>(n);
        use_sendmsg = !use_sendmsg;
      }
    }
    char buffer[700];
    const ssize_t got = recv(pair.b(), buffer, sizeof buffer, MSG_DONTWAIT);
    if (got < 0) {
      ASSERT_TRUE(errno == EINTR || errno == EAGAIN) << std::strerror(errno);
    } else {
      ASSERT_GT(got, 0) << "the peer is open: 0 would be end of stream";
      received.append(buffer, static_cast<size_t>(got));
    }
  }

  ASSERT_TRUE(received == stream) << "bytes lost, duplicated or reordered";
  const FaultCounts after = Counts();
  EXPECT_GT(after.calls, before.calls);
  EXPECT_GT(after.eintr, before.eintr);
  EXPECT_GT(after.eagain, before.eagain);
  EXPECT_GT(after.short_write, before.short_write);
  EXPECT_GT(after.short_read, before.short_read);
  std::printf("%s\n", Describe(after).c_str());
}

TEST(SyscallFaults, DescribeSaysEveryCount) {
  FaultCounts counts;
  counts.calls = 100;
  counts.eintr = 1;
  counts.eagain = 2;
  counts.short_write = 3;
  counts.short_read = 4;
  EXPECT_EQ(Describe(counts),
            "faults injected: 10 (eintr=1, eagain=2, short_write=3, short_read=4) over 100 calls");
}

}  // namespace
}  // namespace taskrt::faults
