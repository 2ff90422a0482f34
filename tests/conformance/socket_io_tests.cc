// Conformance group: the socket I/O of the EventLoop contract
// (core/event_loop.h, "Socket I/O"), written as a user of a socket API
// writes it: echo servers, large and queued sends, peers that go away,
// cancellation, and the loop destroyed with operations under way.

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstddef>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "core/event_loop.h"
#include "gtest/gtest.h"
#include "tests/conformance/conformance.h"

namespace taskrt::conformance {
namespace {

// Bytes whose position shows in their value, so a reordered, repeated or
// lost chunk changes the stream.
std::string Pattern(size_t size, char seed) {
  std::string bytes(size, '\0');
  for (size_t i = 0; i < size; ++i) {
    bytes[i] = static_cast<char>(seed + static_cast<char>(i % 251) + static_cast<char>(i / 251));
  }
  return bytes;
}

// Counts SIGPIPE while alive; restores the previous disposition after.
class SigpipeCounter {
 public:
  SigpipeCounter() {
    count_.store(0);
    struct sigaction action {};
    action.sa_handler = [](int) { count_.fetch_add(1); };
    sigemptyset(&action.sa_mask);
    sigaction(SIGPIPE, &action, &previous_);
  }
  ~SigpipeCounter() { sigaction(SIGPIPE, &previous_, nullptr); }
  int count() const { return count_.load(); }

 private:
  static inline std::atomic<int> count_{0};
  struct sigaction previous_ {};
};

// What a ReceiveEach saw: the bytes, the ends of stream and the errors.
struct Received {
  std::string bytes;
  std::string before_end;  // the bytes when the end of the stream came
  int ends = 0;
  int errors = 0;
  int calls = 0;
  absl::Status error;
  bool over() const { return ends + errors > 0; }
};

// Also checks that the callback runs on the loop thread.
ReceiveCallback Collect(EventLoop& loop, Received& into) {
  return [&loop, &into](absl::StatusOr<absl::Span<const char>> data) {
    EXPECT_TRUE(loop.IsLoopThread());
    ++into.calls;
    if (!data.ok()) {
      ++into.errors;
      into.error = data.status();
    } else if (data->empty()) {
      ++into.ends;
      into.before_end = into.bytes;
    } else {
      into.bytes.append(data->data(), data->size());
    }
  };
}

class SocketIoConformance : public ConformanceTest {
 protected:
  void SetUp() override {
    ConformanceTest::SetUp();
    if (IsSkipped() || HasFatalFailure()) return;
    ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, pair_), 0);
  }
  void TearDown() override {
    // The loop goes first: the fds must outlive their operations.
    loop_.reset();
    for (int fd : pair_) {
      if (fd >= 0) close(fd);
    }
    for (int fd : extra_fds_) close(fd);
    ConformanceTest::TearDown();
  }

  // Another connected socketpair, closed at TearDown.
  std::pair<int, int> ExtraPair() {
    int fds[2] = {-1, -1};
    EXPECT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds), 0);
    extra_fds_.push_back(fds[0]);
    extra_fds_.push_back(fds[1]);
    return {fds[0], fds[1]};
  }

  // A listening TCP socket on 127.0.0.1, non-blocking; its port in `port`.
  int Listen(uint16_t& port, bool non_blocking = true) {
    const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | (non_blocking ? SOCK_NONBLOCK : 0), 0);
    EXPECT_GE(fd, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address), 0);
    EXPECT_EQ(listen(fd, 512), 0);
    socklen_t length = sizeof address;
    EXPECT_EQ(getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length), 0);
    port = ntohs(address.sin_port);
    extra_fds_.push_back(fd);
    return fd;
  }

  // A blocking client connected to 127.0.0.1:`port` (loopback connects
  // complete in the kernel, within the listener's backlog).
  int Connect(uint16_t port) {
    const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    EXPECT_GE(fd, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    address.sin_port = htons(port);
    EXPECT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address), 0)
        << strerror(errno);
    return fd;
  }

  // Runs the loop until a marker posted now has run and then RunOnce(0)
  // a few more times: whatever was ready when the marker was posted has had
  // its turns.
  void PumpAFewTimes() {
    bool marker = false;
    ASSERT_TRUE(loop_->Post([&] { marker = true; }).ok());
    ASSERT_TRUE(PumpUntil([&] { return marker; }));
    for (int i = 0; i < 3; ++i) ASSERT_TRUE(loop_->RunOnce(absl::ZeroDuration()).ok());
  }

  int pair_[2] = {-1, -1};
  std::vector<int> extra_fds_;
};

TEST_P(SocketIoConformance, EchoOverASocketpair) {
  // Server side: echo what arrives; client side: send messages, collect.
  int pending_echoes = 0;
  Received server;
  absl::StatusOr<IoId> echo = loop_->ReceiveEach(pair_[0], [&](auto data) {
    if (!data.ok() || data->empty()) {
      ++server.ends;
      return;
    }
    ++pending_echoes;
    ASSERT_TRUE(loop_->SendAll(pair_[0], std::string(data->data(), data->size()),
                               [&](absl::Status status) {
                                 EXPECT_TRUE(status.ok()) << status;
                                 --pending_echoes;
                               })
                    .ok());
  });
  ASSERT_TRUE(echo.ok()) << echo.status();
  Received client;
  ASSERT_TRUE(loop_->ReceiveEach(pair_[1], Collect(*loop_, client)).ok());
  std::string sent;
  int sends_done = 0;
  for (int i = 0; i < 100; ++i) {
    std::string message = absl::StrCat("message ", i, ";");
    sent += message;
    ASSERT_TRUE(loop_->SendAll(pair_[1], std::move(message), [&, i](absl::Status status) {
      EXPECT_TRUE(status.ok()) << status;
      EXPECT_EQ(sends_done, i) << "sends on one fd complete in order";
      ++sends_done;
    }).ok());
  }
  ASSERT_TRUE(PumpUntil([&] { return client.bytes.size() >= sent.size() || client.over(); }));
  EXPECT_EQ(client.bytes, sent);
  EXPECT_EQ(sends_done, 100);
  // The client shuts its side: the server sees the end of the stream once.
  ASSERT_EQ(shutdown(pair_[1], SHUT_WR), 0);
  ASSERT_TRUE(PumpUntil([&] { return server.ends == 1 && pending_echoes == 0; }));
  EXPECT_EQ(loop_->CancelIo(*echo).code(), absl::StatusCode::kNotFound)
      << "an ended operation is not cancellable";
}

TEST_P(SocketIoConformance, EchoOverLoopbackTcpWithManyConnections) {
  constexpr int kConnections = 200;
  uint16_t port = 0;
  const int listener = Listen(port);

  // The server: per connection, echo and close once the client has shut
  // down its side and every echo is written.
  struct Connection {
    int fd;
    int pending = 0;
    bool ended = false;
  };
  absl::flat_hash_map<int, std::unique_ptr<Connection>> connections;
  int accepted = 0;
  int closed = 0;
  auto close_if_done = [&](Connection& connection) {
    if (!connection.ended || connection.pending > 0) return;
    close(connection.fd);
    ++closed;
  };
  absl::StatusOr<IoId> acceptor = loop_->AcceptEach(listener, [&](absl::StatusOr<int> fd) {
    ASSERT_TRUE(fd.ok()) << fd.status();
    ++accepted;
    const int flags = fcntl(*fd, F_GETFL);
    EXPECT_NE(flags & O_NONBLOCK, 0) << "accepted fds are non-blocking";
    EXPECT_NE(fcntl(*fd, F_GETFD) & FD_CLOEXEC, 0) << "accepted fds are close-on-exec";
    auto owned = std::make_unique<Connection>();
    Connection* connection = owned.get();
    connection->fd = *fd;
    connections[*fd] = std::move(owned);
    absl::StatusOr<IoId> receive = loop_->ReceiveEach(*fd, [&, connection](auto data) {
      if (!data.ok() || data->empty()) {
        EXPECT_TRUE(data.ok()) << data.status();
        EXPECT_FALSE(connection->ended) << "the end of the stream comes once";
        connection->ended = true;
        close_if_done(*connection);
        return;
      }
      ++connection->pending;
      ASSERT_TRUE(loop_->SendAll(connection->fd, std::string(data->data(), data->size()),
                                 [&, connection](absl::Status status) {
                                   EXPECT_TRUE(status.ok()) << status;
                                   --connection->pending;
                                   close_if_done(*connection);
                                 })
                      .ok());
    });
    ASSERT_TRUE(receive.ok()) << receive.status();
  });
  ASSERT_TRUE(acceptor.ok()) << acceptor.status();

  // The clients, on the same loop: each sends its own bytes, shuts down
  // its side once they are echoed, and waits for the server's close.
  std::vector<int> clients;
  std::vector<std::string> expected;
  std::vector<Received> received(kConnections);
  for (int i = 0; i < kConnections; ++i) {
    const int fd = Connect(port);
    clients.push_back(fd);
    extra_fds_.push_back(fd);
    expected.push_back(Pattern(1000 + 97 * i, static_cast<char>(i)));
    ASSERT_TRUE(loop_->ReceiveEach(fd, [&, i](auto data) {
      Collect(*loop_, received[i])(data);
      if (data.ok() && !data->empty() && received[i].bytes.size() == expected[i].size()) {
        EXPECT_EQ(shutdown(clients[i], SHUT_WR), 0);
      }
    }).ok());
    ASSERT_TRUE(loop_->SendAll(fd, expected[i], [](absl::Status status) {
      EXPECT_TRUE(status.ok()) << status;
    }).ok());
  }
  ASSERT_TRUE(PumpUntil([&] {
    for (const Received& r : received) {
      if (!r.over()) return false;
    }
    return closed == kConnections;
  }));
  EXPECT_EQ(accepted, kConnections);
  for (int i = 0; i < kConnections; ++i) {
    EXPECT_EQ(received[i].bytes, expected[i]) << "connection " << i;
    EXPECT_EQ(received[i].ends, 1) << "connection " << i;
    EXPECT_EQ(received[i].errors, 0) << received[i].error;
  }
  EXPECT_TRUE(loop_->CancelIo(*acceptor).ok());
  EXPECT_EQ(loop_->CancelIo(*acceptor).code(), absl::StatusCode::kNotFound);
}

TEST_P(SocketIoConformance, LargeAndQueuedSendsArriveIntactAndInOrder) {
  // More than a socket buffer holds: the loop must continue partial writes.
  const std::vector<std::string> sends = {Pattern(1 << 20, 'a'), Pattern(100'000, 'b'),
                                          "small", Pattern(1 << 20, 'c'), ""};
  std::string all;
  std::vector<int> completed;
  for (size_t i = 0; i < sends.size(); ++i) {
    all += sends[i];
    ASSERT_TRUE(loop_->SendAll(pair_[0], sends[i], [&, i](absl::Status status) {
      EXPECT_TRUE(status.ok()) << status;
      completed.push_back(static_cast<int>(i));
    }).ok());
  }
  Received received;
  ASSERT_TRUE(loop_->ReceiveEach(pair_[1], Collect(*loop_, received)).ok());
  ASSERT_TRUE(PumpUntil([&] {
    return completed.size() == sends.size() && received.bytes.size() >= all.size();
  }));
  EXPECT_EQ(completed, (std::vector<int>{0, 1, 2, 3, 4}));
  ASSERT_EQ(received.bytes.size(), all.size());
  EXPECT_TRUE(received.bytes == all) << "bytes reordered, repeated or lost";
  EXPECT_EQ(received.errors, 0) << received.error;
}

// Both ends send more than the socket buffers hold to each other at once,
// each also receiving on the same fd: neither direction may stall the
// other.
TEST_P(SocketIoConformance, FullDuplexLargeTransfersOnOneFd) {
  const std::string to_b = Pattern(2 << 20, 'x');
  const std::string to_a = Pattern(3 << 20, 'y');
  Received at_a;
  Received at_b;
  int sent = 0;
  auto count_sent = [&](absl::Status status) {
    EXPECT_TRUE(status.ok()) << status;
    ++sent;
  };
  ASSERT_TRUE(loop_->SendAll(pair_[0], to_b, count_sent).ok());
  ASSERT_TRUE(loop_->SendAll(pair_[1], to_a, count_sent).ok());
  ASSERT_TRUE(loop_->ReceiveEach(pair_[0], Collect(*loop_, at_a)).ok());
  ASSERT_TRUE(loop_->ReceiveEach(pair_[1], Collect(*loop_, at_b)).ok());
  ASSERT_TRUE(PumpUntil([&] {
    return sent == 2 && at_a.bytes.size() >= to_a.size() && at_b.bytes.size() >= to_b.size();
  }));
  EXPECT_TRUE(at_a.bytes == to_a);
  EXPECT_TRUE(at_b.bytes == to_b);
  EXPECT_EQ(at_a.errors + at_b.errors, 0);
}

TEST_P(SocketIoConformance, PeerClosedMidSendIsAnErrorWithoutSigpipe) {
  SigpipeCounter sigpipes;
  // The peer reads the first chunk, then goes away.
  absl::Status sent_status;
  bool sent = false;
  ASSERT_TRUE(loop_->SendAll(pair_[0], Pattern(8 << 20, 'z'), [&](absl::Status status) {
    sent_status = status;
    sent = true;
  }).ok());
  IoId receive = 0;
  int peer_calls = 0;
  absl::StatusOr<IoId> started = loop_->ReceiveEach(pair_[1], [&](auto data) {
    ++peer_calls;
    ASSERT_TRUE(data.ok() && !data->empty());
    EXPECT_TRUE(loop_->CancelIo(receive).ok());
    close(pair_[1]);
    pair_[1] = -1;
  });
  ASSERT_TRUE(started.ok()) << started.status();
  receive = *started;
  ASSERT_TRUE(PumpUntil([&] { return sent; }));
  EXPECT_FALSE(sent_status.ok());
  EXPECT_TRUE(absl::StrContains(sent_status.message(), "send")) << sent_status;
  EXPECT_EQ(peer_calls, 1);
  EXPECT_EQ(sigpipes.count(), 0);
  // A send on the broken socket fails the same way.
  absl::Status again;
  bool again_done = false;
  ASSERT_TRUE(loop_->SendAll(pair_[0], "more", [&](absl::Status status) {
    again = status;
    again_done = true;
  }).ok());
  ASSERT_TRUE(PumpUntil([&] { return again_done; }));
  EXPECT_FALSE(again.ok());
  EXPECT_EQ(sigpipes.count(), 0);
}

TEST_P(SocketIoConformance, EndOfStreamIsOneEmptySpanAfterTheData) {
  ASSERT_EQ(write(pair_[1], "abc", 3), 3);
  Received received;
  absl::StatusOr<IoId> id = loop_->ReceiveEach(pair_[0], Collect(*loop_, received));
  ASSERT_TRUE(id.ok()) << id.status();
  ASSERT_TRUE(PumpUntil([&] { return received.bytes == "abc"; }));
  EXPECT_EQ(received.ends, 0) << "the peer is still there";
  ASSERT_EQ(write(pair_[1], "de", 2), 2);
  ASSERT_EQ(shutdown(pair_[1], SHUT_WR), 0);
  ASSERT_TRUE(PumpUntil([&] { return received.over(); }));
  PumpAFewTimes();
  EXPECT_EQ(received.ends, 1);
  EXPECT_EQ(received.errors, 0) << received.error;
  EXPECT_EQ(received.before_end, "abcde") << "every byte comes before the end";
  const int calls = received.calls;
  PumpAFewTimes();
  EXPECT_EQ(received.calls, calls) << "nothing after the end";
  EXPECT_EQ(loop_->CancelIo(*id).code(), absl::StatusCode::kNotFound);
}

TEST_P(SocketIoConformance, CancelFromInsideItsOwnCallbackStopsIt) {
  int calls = 0;
  IoId id = 0;
  absl::StatusOr<IoId> started = loop_->ReceiveEach(pair_[0], [&](auto data) {
    ++calls;
    EXPECT_TRUE(data.ok());
    EXPECT_TRUE(loop_->CancelIo(id).ok());
    EXPECT_EQ(loop_->CancelIo(id).code(), absl::StatusCode::kNotFound) << "cancelled already";
  });
  ASSERT_TRUE(started.ok()) << started.status();
  id = *started;
  ASSERT_EQ(write(pair_[1], "a", 1), 1);
  ASSERT_TRUE(PumpUntil([&] { return calls == 1; }));
  // More data and the end of the stream: a live receive would see them. A
  // new receive on the same fd sees the end, so the loop has been round.
  ASSERT_EQ(write(pair_[1], "b", 1), 1);
  ASSERT_EQ(shutdown(pair_[1], SHUT_WR), 0);
  Received after;
  ASSERT_TRUE(loop_->ReceiveEach(pair_[0], Collect(*loop_, after)).ok());
  ASSERT_TRUE(PumpUntil([&] { return after.over(); }));
  PumpAFewTimes();
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(after.ends, 1);
}

TEST_P(SocketIoConformance, CancelFromOutsideStopsEveryKind) {
  ASSERT_TRUE(loop_->RunOnce(absl::ZeroDuration()).ok()) << "binds the loop to this thread";
  uint16_t port = 0;
  const int listener = Listen(port);
  const auto [send_end, receive_end] = ExtraPair();
  const int sends[2] = {send_end, receive_end};
  int old_calls = 0;
  absl::StatusOr<IoId> accept = loop_->AcceptEach(listener, [&](auto fd) {
    ++old_calls;
    if (fd.ok()) close(*fd);
  });
  ASSERT_TRUE(accept.ok()) << accept.status();
  absl::StatusOr<IoId> receive = loop_->ReceiveEach(pair_[0], [&](auto) { ++old_calls; });
  ASSERT_TRUE(receive.ok()) << receive.status();
  // Three queued sends; the middle one is cancelled while the first is
  // under way.
  const std::string first = Pattern(1 << 20, 'f');
  std::vector<int> completed;
  ASSERT_TRUE(loop_->SendAll(sends[0], first, [&](absl::Status s) {
    EXPECT_TRUE(s.ok()) << s;
    completed.push_back(0);
  }).ok());
  absl::StatusOr<IoId> middle =
      loop_->SendAll(sends[0], "MIDDLE", [&](absl::Status) { ++old_calls; });
  ASSERT_TRUE(middle.ok()) << middle.status();
  ASSERT_TRUE(loop_->SendAll(sends[0], "last", [&](absl::Status s) {
    EXPECT_TRUE(s.ok()) << s;
    completed.push_back(2);
  }).ok());
  // The operations start: they wait in the kernel or on readiness.
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(loop_->RunOnce(absl::ZeroDuration()).ok());

  EXPECT_TRUE(loop_->CancelIo(*accept).ok());
  EXPECT_TRUE(loop_->CancelIo(*receive).ok());
  EXPECT_TRUE(loop_->CancelIo(*middle).ok());
  for (IoId id : {*accept, *receive, *middle}) {
    EXPECT_EQ(loop_->CancelIo(id).code(), absl::StatusCode::kNotFound);
  }

  // What arrives from now on is left for new operations.
  const int client = Connect(port);
  extra_fds_.push_back(client);
  ASSERT_EQ(write(pair_[1], "x", 1), 1);
  ASSERT_EQ(shutdown(pair_[1], SHUT_WR), 0);
  int accepted = 0;
  absl::StatusOr<IoId> new_accept = loop_->AcceptEach(listener, [&](auto fd) {
    ASSERT_TRUE(fd.ok()) << fd.status();
    ++accepted;
    close(*fd);
  });
  ASSERT_TRUE(new_accept.ok()) << new_accept.status();
  Received after_cancel;
  ASSERT_TRUE(loop_->ReceiveEach(pair_[0], Collect(*loop_, after_cancel)).ok());
  Received sent;
  ASSERT_TRUE(loop_->ReceiveEach(sends[1], Collect(*loop_, sent)).ok());
  ASSERT_TRUE(PumpUntil([&] {
    return accepted == 1 && completed.size() == 2 && after_cancel.over() &&
           sent.bytes.size() >= first.size() + 4;
  }));
  PumpAFewTimes();
  EXPECT_EQ(old_calls, 0);
  EXPECT_EQ(accepted, 1);
  EXPECT_EQ(after_cancel.bytes, "x");
  EXPECT_EQ(after_cancel.ends, 1);
  EXPECT_EQ(completed, (std::vector<int>{0, 2}));
  EXPECT_TRUE(sent.bytes == first + "last") << "the cancelled send wrote nothing";
  EXPECT_TRUE(loop_->CancelIo(*new_accept).ok());
}

TEST_P(SocketIoConformance, CallbacksRunOnTheLoopThreadNeverInsideTheStartingCall) {
  // Everything is ready at once: data to read, room to write, a connection
  // to accept. No callback may run before its starting call returns.
  ASSERT_EQ(write(pair_[1], "ready", 5), 5);
  uint16_t port = 0;
  const int listener = Listen(port);
  const int client = Connect(port);
  extra_fds_.push_back(client);
  bool in_call = true;
  int calls = 0;
  auto check = [&] {
    EXPECT_FALSE(in_call) << "a callback ran inside its starting call";
    EXPECT_TRUE(loop_->IsLoopThread());
    ++calls;
  };
  absl::StatusOr<IoId> receive = loop_->ReceiveEach(pair_[0], [&](auto) { check(); });
  absl::StatusOr<IoId> send = loop_->SendAll(pair_[1], "", [&](absl::Status status) {
    EXPECT_TRUE(status.ok()) << status;
    check();
  });
  absl::StatusOr<IoId> accept = loop_->AcceptEach(listener, [&](absl::StatusOr<int> fd) {
    check();
    if (fd.ok()) close(*fd);
  });
  in_call = false;
  ASSERT_TRUE(receive.ok() && send.ok() && accept.ok());
  EXPECT_EQ(calls, 0);
  ASSERT_TRUE(PumpUntil([&] { return calls == 3; }));
  // The send has ended: its id is spent. The others are live.
  EXPECT_EQ(loop_->CancelIo(*send).code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(loop_->CancelIo(*receive).ok());
  EXPECT_TRUE(loop_->CancelIo(*accept).ok());
}

TEST_P(SocketIoConformance, EachKindCanBeCancelledFromInsideItsOwnCallback) {
  uint16_t port = 0;
  const int listener = Listen(port);
  IoId accept_id = 0;
  int accepts = 0;
  absl::StatusOr<IoId> accept = loop_->AcceptEach(listener, [&](absl::StatusOr<int> fd) {
    ++accepts;
    ASSERT_TRUE(fd.ok()) << fd.status();
    close(*fd);
    EXPECT_TRUE(loop_->CancelIo(accept_id).ok());
  });
  ASSERT_TRUE(accept.ok()) << accept.status();
  accept_id = *accept;
  IoId send_id = 0;
  int sends = 0;
  absl::StatusOr<IoId> send = loop_->SendAll(pair_[0], "x", [&](absl::Status status) {
    ++sends;
    EXPECT_TRUE(status.ok()) << status;
    EXPECT_EQ(loop_->CancelIo(send_id).code(), absl::StatusCode::kNotFound)
        << "a send whose callback runs has ended";
  });
  ASSERT_TRUE(send.ok()) << send.status();
  send_id = *send;
  // Two connections at once: the second is not delivered to the cancelled
  // accept (the loop may have taken and closed it; then it ends at once).
  const int first = Connect(port);
  const int second = Connect(port);
  extra_fds_.push_back(first);
  extra_fds_.push_back(second);
  ASSERT_TRUE(PumpUntil([&] { return accepts == 1 && sends == 1; }));
  PumpAFewTimes();
  EXPECT_EQ(accepts, 1);
  EXPECT_EQ(sends, 1);
}

TEST_P(SocketIoConformance, BadArgumentsAreRefusedWithAMessage) {
  auto on_data = [](absl::StatusOr<absl::Span<const char>>) {};
  auto on_sent = [](absl::Status) {};
  auto on_accept = [](absl::StatusOr<int>) {};
  auto expect = [](const absl::Status& status, absl::StatusCode code, absl::string_view words) {
    EXPECT_EQ(status.code(), code) << status;
    EXPECT_TRUE(absl::StrContains(status.message(), words)) << status;
  };
  using absl::StatusCode;
  expect(loop_->ReceiveEach(-1, on_data).status(), StatusCode::kInvalidArgument,
         "bad file descriptor");
  expect(loop_->SendAll(-1, "x", on_sent).status(), StatusCode::kInvalidArgument,
         "bad file descriptor");
  expect(loop_->AcceptEach(-1, on_accept).status(), StatusCode::kInvalidArgument,
         "bad file descriptor");
  // A number that was an fd and is closed now.
  const int closed_fd = dup(pair_[0]);
  ASSERT_GE(closed_fd, 0);
  close(closed_fd);
  expect(loop_->ReceiveEach(closed_fd, on_data).status(), StatusCode::kInvalidArgument,
         "bad file descriptor");
  const int not_socket = eventfd(0, EFD_CLOEXEC);
  ASSERT_GE(not_socket, 0);
  extra_fds_.push_back(not_socket);
  expect(loop_->ReceiveEach(not_socket, on_data).status(), StatusCode::kInvalidArgument,
         "not a socket");
  expect(loop_->SendAll(not_socket, "x", on_sent).status(), StatusCode::kInvalidArgument,
         "not a socket");
  expect(loop_->AcceptEach(not_socket, on_accept).status(), StatusCode::kInvalidArgument,
         "not a socket");
  expect(loop_->ReceiveEach(pair_[0], nullptr).status(), StatusCode::kInvalidArgument,
         "empty callback");
  expect(loop_->SendAll(pair_[0], "x", nullptr).status(), StatusCode::kInvalidArgument,
         "empty callback");
  expect(loop_->AcceptEach(pair_[0], nullptr).status(), StatusCode::kInvalidArgument,
         "empty callback");
  expect(loop_->AcceptEach(pair_[0], on_accept).status(), StatusCode::kInvalidArgument,
         "not listening");
  uint16_t port = 0;
  expect(loop_->AcceptEach(Listen(port, /*non_blocking=*/false), on_accept).status(),
         StatusCode::kInvalidArgument, "blocking");
  expect(loop_->CancelIo(0), StatusCode::kNotFound, "unknown");
  expect(loop_->CancelIo(987654), StatusCode::kNotFound, "unknown");
  // One receive per fd at a time.
  absl::StatusOr<IoId> first = loop_->ReceiveEach(pair_[0], on_data);
  ASSERT_TRUE(first.ok()) << first.status();
  expect(loop_->ReceiveEach(pair_[0], on_data).status(), StatusCode::kFailedPrecondition,
         "ReceiveEach");
  EXPECT_TRUE(loop_->CancelIo(*first).ok());
  // A refused call started nothing: the fd is free for a new receive.
  absl::StatusOr<IoId> second = loop_->ReceiveEach(pair_[0], on_data);
  EXPECT_TRUE(second.ok()) << second.status();
}

TEST_P(SocketIoConformance, OtherThreadsAreRefused) {
  ASSERT_TRUE(loop_->RunOnce(absl::ZeroDuration()).ok()) << "binds the loop to this thread";
  absl::Status receive, send, accept, cancel;
  std::thread other([&] {
    receive = loop_->ReceiveEach(pair_[0], [](auto) {}).status();
    send = loop_->SendAll(pair_[0], "x", [](absl::Status) {}).status();
    accept = loop_->AcceptEach(pair_[0], [](auto) {}).status();
    cancel = loop_->CancelIo(1);
  });
  other.join();
  for (const absl::Status& status : {receive, send, accept, cancel}) {
    EXPECT_EQ(status.code(), absl::StatusCode::kPermissionDenied) << status;
    EXPECT_TRUE(absl::StrContains(status.message(), "loop thread")) << status;
  }
  // Nothing was started: the peer's byte is there to read.
  ASSERT_EQ(write(pair_[1], "y", 1), 1);
  PumpAFewTimes();
  char byte = 0;
  EXPECT_EQ(read(pair_[0], &byte, 1), 1);
  EXPECT_EQ(byte, 'y');
}

TEST_P(SocketIoConformance, TheFirstCallClaimsTheLoopThread) {
  absl::StatusOr<std::unique_ptr<EventLoop>> made = NewLoop();
  ASSERT_TRUE(made.ok()) << made.status();
  std::unique_ptr<EventLoop> loop = std::move(*made);
  // Before the loop has run: this thread becomes its thread.
  Received received;
  ASSERT_TRUE(loop->ReceiveEach(pair_[0], Collect(*loop, received)).ok());
  EXPECT_TRUE(loop->IsLoopThread());
  absl::Status other_run;
  std::thread other([&] { other_run = loop->RunOnce(absl::ZeroDuration()).status(); });
  other.join();
  EXPECT_EQ(other_run.code(), absl::StatusCode::kPermissionDenied) << other_run;
  ASSERT_EQ(write(pair_[1], "first", 5), 5);
  for (int i = 0; i < 100000 && received.bytes != "first"; ++i) {
    ASSERT_TRUE(loop->RunOnce(absl::Milliseconds(10)).ok());
  }
  EXPECT_EQ(received.bytes, "first");
}

// The way other threads do socket I/O: post the call to the loop thread.
TEST_P(SocketIoConformance, OtherThreadsStartOperationsThroughPost) {
  std::thread loop_thread([&] { EXPECT_TRUE(loop_->Run().ok()); });
  const std::string message = Pattern(300'000, 'p');
  Notification sent;
  Notification received_all;
  std::string received;  // the loop thread's until received_all
  ASSERT_TRUE(loop_->Post([&] {
    ASSERT_TRUE(loop_->ReceiveEach(pair_[1], [&](absl::StatusOr<absl::Span<const char>> data) {
      ASSERT_TRUE(data.ok()) << data.status();
      received.append(data->data(), data->size());
      if (received.size() == message.size()) received_all.Notify();
    }).ok());
    ASSERT_TRUE(loop_->SendAll(pair_[0], message, [&](absl::Status status) {
      EXPECT_TRUE(status.ok()) << status;
      sent.Notify();
    }).ok());
  }).ok());
  EXPECT_TRUE(sent.WaitForNotification());
  EXPECT_TRUE(received_all.WaitForNotification());
  loop_->Stop();
  loop_thread.join();
  EXPECT_TRUE(received == message);
}

TEST_P(SocketIoConformance, DestroyingTheLoopFreesPendingOperationsWithoutCallingThem) {
  absl::StatusOr<std::unique_ptr<EventLoop>> made = NewLoop();
  ASSERT_TRUE(made.ok()) << made.status();
  std::unique_ptr<EventLoop> loop = std::move(*made);
  uint16_t port = 0;
  const int listener = Listen(port);
  const auto [send_end, receive_end] = ExtraPair();
  const int sends[2] = {send_end, receive_end};
  auto token = std::make_shared<int>(0);
  int calls = 0;
  ASSERT_TRUE(loop->AcceptEach(listener, [&, token](auto) { ++calls; }).ok());
  ASSERT_TRUE(loop->ReceiveEach(pair_[0], [&, token](auto) { ++calls; }).ok());
  // More than the socket holds, and nobody reads: the send is under way
  // when the loop goes.
  ASSERT_TRUE(loop->SendAll(sends[0], Pattern(4 << 20, 'd'), [&, token](absl::Status) {
    ++calls;
  }).ok());
  ASSERT_TRUE(loop->SendAll(sends[0], "queued", [&, token](absl::Status) { ++calls; }).ok());
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(loop->RunOnce(absl::ZeroDuration()).ok());
  EXPECT_GT(token.use_count(), 1) << "the operations hold their callbacks";
  // A send sits in the kernel until the loop goes; the receive's peer
  // writes nothing; nobody connects.
  loop.reset();
  EXPECT_EQ(calls, 0);
  EXPECT_EQ(token.use_count(), 1) << "every callback destroyed with the loop";
}

// PauseReceive / ResumeReceive: back-pressure that loses nothing.

TEST_P(SocketIoConformance, APausedReceiveHoldsWhatArrivesAndDeliversItOnResumeInOrder) {
  Received received;
  absl::StatusOr<IoId> id = loop_->ReceiveEach(pair_[0], Collect(*loop_, received));
  ASSERT_TRUE(id.ok()) << id.status();
  ASSERT_EQ(write(pair_[1], "head;", 5), 5);
  ASSERT_TRUE(PumpUntil([&] { return received.bytes == "head;"; }));
  ASSERT_TRUE(loop_->PauseReceive(*id).ok());
  EXPECT_TRUE(loop_->PauseReceive(*id).ok()) << "pausing a paused receive changes nothing";
  // The peer keeps sending while the receive is paused, in several writes
  // (each a completion a receive ahead of the pause may take).
  std::string expected = "head;";
  for (int i = 0; i < 20; ++i) {
    const std::string chunk = Pattern(3000 + 7 * i, static_cast<char>('A' + i));
    ASSERT_EQ(write(pair_[1], chunk.data(), chunk.size()), static_cast<ssize_t>(chunk.size()));
    expected += chunk;
    if (i % 5 == 0) PumpAFewTimes();
  }
  PumpAFewTimes();
  const int calls = received.calls;
  EXPECT_EQ(received.bytes, "head;") << "a callback ran while paused";
  ASSERT_TRUE(loop_->ResumeReceive(*id).ok());
  EXPECT_EQ(received.calls, calls) << "the held bytes came inside ResumeReceive";
  // Bytes sent after the resume come after the held ones.
  ASSERT_EQ(write(pair_[1], "tail", 4), 4);
  expected += "tail";
  ASSERT_TRUE(PumpUntil([&] { return received.bytes.size() >= expected.size(); }));
  EXPECT_TRUE(received.bytes == expected) << "bytes reordered, repeated or lost";
  EXPECT_TRUE(loop_->ResumeReceive(*id).ok()) << "resuming a live receive changes nothing";
  ASSERT_EQ(shutdown(pair_[1], SHUT_WR), 0);
  ASSERT_TRUE(PumpUntil([&] { return received.over(); }));
  EXPECT_EQ(received.ends, 1);
  EXPECT_EQ(received.errors, 0) << received.error;
  EXPECT_EQ(received.bytes.size(), expected.size());
}

TEST_P(SocketIoConformance, TheEndOfTheStreamWhilePausedComesAfterTheHeldBytes) {
  Received received;
  absl::StatusOr<IoId> id = loop_->ReceiveEach(pair_[0], Collect(*loop_, received));
  ASSERT_TRUE(id.ok()) << id.status();
  ASSERT_TRUE(loop_->PauseReceive(*id).ok()) << "a receive may be paused before it saw anything";
  ASSERT_EQ(write(pair_[1], "xyz", 3), 3);
  ASSERT_EQ(shutdown(pair_[1], SHUT_WR), 0);
  PumpAFewTimes();
  EXPECT_EQ(received.calls, 0);
  EXPECT_TRUE(loop_->PauseReceive(*id).ok()) << "a paused receive is under way, its end unseen";
  ASSERT_TRUE(loop_->ResumeReceive(*id).ok());
  ASSERT_TRUE(PumpUntil([&] { return received.over(); }));
  PumpAFewTimes();
  EXPECT_EQ(received.before_end, "xyz");
  EXPECT_EQ(received.ends, 1);
  EXPECT_EQ(loop_->PauseReceive(*id).code(), absl::StatusCode::kNotFound) << "ended";
  EXPECT_EQ(loop_->ResumeReceive(*id).code(), absl::StatusCode::kNotFound) << "ended";
}

// The way a server applies back-pressure: each callback pauses its own
// receive, and the resume comes later from posted work. Every byte arrives
// once, in order, and no callback runs while paused.
TEST_P(SocketIoConformance, PausedAndResumedAtEveryChunkTheStreamStaysWhole) {
  const std::string message = Pattern(1 << 20, 's');
  bool sent = false;
  ASSERT_TRUE(loop_->SendAll(pair_[1], message, [&](absl::Status status) {
    EXPECT_TRUE(status.ok()) << status;
    EXPECT_EQ(shutdown(pair_[1], SHUT_WR), 0);
    sent = true;
  }).ok());
  Received received;
  bool paused = false;
  int calls_while_paused = 0;
  int resumes = 0;
  IoId id = 0;
  absl::StatusOr<IoId> started = loop_->ReceiveEach(pair_[0], [&](auto data) {
    if (paused) ++calls_while_paused;
    Collect(*loop_, received)(data);
    if (!data.ok() || data->empty()) return;
    ASSERT_TRUE(loop_->PauseReceive(id).ok());
    paused = true;
    ASSERT_TRUE(loop_->Post([&] {
      paused = false;
      ++resumes;
      EXPECT_TRUE(loop_->ResumeReceive(id).ok());
    }).ok());
  });
  ASSERT_TRUE(started.ok()) << started.status();
  id = *started;
  ASSERT_TRUE(PumpUntil([&] { return sent && received.over(); }));
  EXPECT_EQ(calls_while_paused, 0);
  EXPECT_GT(resumes, 1);
  EXPECT_EQ(received.ends, 1);
  EXPECT_EQ(received.errors, 0) << received.error;
  ASSERT_EQ(received.bytes.size(), message.size());
  EXPECT_TRUE(received.bytes == message) << "bytes reordered, repeated or lost";
}

TEST_P(SocketIoConformance, PauseAndResumeOfAnythingButALiveReceiveAreRefused) {
  using absl::StatusCode;
  EXPECT_EQ(loop_->PauseReceive(0).code(), StatusCode::kNotFound);
  EXPECT_EQ(loop_->ResumeReceive(987654).code(), StatusCode::kNotFound);
  uint16_t port = 0;
  const int listener = Listen(port);
  absl::StatusOr<IoId> accept = loop_->AcceptEach(listener, [](absl::StatusOr<int> fd) {
    if (fd.ok()) close(*fd);
  });
  ASSERT_TRUE(accept.ok()) << accept.status();
  absl::StatusOr<IoId> send = loop_->SendAll(pair_[1], Pattern(4 << 20, 'q'), [](absl::Status) {});
  ASSERT_TRUE(send.ok()) << send.status();
  for (IoId id : {*accept, *send}) {
    for (const absl::Status& status : {loop_->PauseReceive(id), loop_->ResumeReceive(id)}) {
      EXPECT_EQ(status.code(), StatusCode::kInvalidArgument) << status;
      EXPECT_TRUE(absl::StrContains(status.message(), "not a ReceiveEach")) << status;
    }
  }
  absl::StatusOr<IoId> receive = loop_->ReceiveEach(pair_[0], [](auto) {});
  ASSERT_TRUE(receive.ok()) << receive.status();
  ASSERT_TRUE(loop_->PauseReceive(*receive).ok());
  EXPECT_TRUE(loop_->CancelIo(*receive).ok()) << "a paused receive can be cancelled";
  EXPECT_EQ(loop_->ResumeReceive(*receive).code(), StatusCode::kNotFound) << "cancelled";
  EXPECT_EQ(loop_->PauseReceive(*receive).code(), StatusCode::kNotFound) << "cancelled";
  // Other threads are refused, as for every socket call.
  absl::Status pause, resume;
  std::thread other([&] {
    pause = loop_->PauseReceive(*accept);
    resume = loop_->ResumeReceive(*accept);
  });
  other.join();
  for (const absl::Status& status : {pause, resume}) {
    EXPECT_EQ(status.code(), StatusCode::kPermissionDenied) << status;
  }
  EXPECT_TRUE(loop_->CancelIo(*accept).ok());
  EXPECT_TRUE(loop_->CancelIo(*send).ok());
}

TEST_P(SocketIoConformance, CancellingAPausedReceiveFreesItAndLeavesTheRestForTheNext) {
  auto token = std::make_shared<int>(0);
  int calls = 0;
  absl::StatusOr<IoId> id = loop_->ReceiveEach(pair_[0], [&, token](auto) { ++calls; });
  ASSERT_TRUE(id.ok()) << id.status();
  PumpAFewTimes();  // armed: a completion backend receives ahead
  ASSERT_TRUE(loop_->PauseReceive(*id).ok());
  const std::string sent = Pattern(50'000, 'c');
  ASSERT_EQ(write(pair_[1], sent.data(), sent.size()), static_cast<ssize_t>(sent.size()));
  PumpAFewTimes();
  ASSERT_TRUE(loop_->CancelIo(*id).ok());
  PumpAFewTimes();
  EXPECT_EQ(calls, 0);
  EXPECT_EQ(token.use_count(), 1) << "the callback is freed with what it held";
  ASSERT_EQ(write(pair_[1], "end", 3), 3);
  ASSERT_EQ(shutdown(pair_[1], SHUT_WR), 0);
  // What the cancelled receive held is dropped; the rest is the next
  // receive's, in order.
  Received after;
  ASSERT_TRUE(loop_->ReceiveEach(pair_[0], Collect(*loop_, after)).ok());
  ASSERT_TRUE(PumpUntil([&] { return after.over(); }));
  EXPECT_TRUE(absl::EndsWith(sent + "end", after.bytes)) << "not a suffix of the stream";
  EXPECT_TRUE(absl::EndsWith(after.bytes, "end"));
  EXPECT_EQ(after.ends, 1);
  EXPECT_EQ(calls, 0);
}

TEST_P(SocketIoConformance, DestroyingTheLoopFreesAPausedReceiveAndWhatItHeld) {
  absl::StatusOr<std::unique_ptr<EventLoop>> made = NewLoop();
  ASSERT_TRUE(made.ok()) << made.status();
  std::unique_ptr<EventLoop> loop = std::move(*made);
  auto token = std::make_shared<int>(0);
  int calls = 0;
  absl::StatusOr<IoId> id = loop->ReceiveEach(pair_[0], [&, token](auto) { ++calls; });
  ASSERT_TRUE(id.ok()) << id.status();
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(loop->RunOnce(absl::ZeroDuration()).ok());
  ASSERT_TRUE(loop->PauseReceive(*id).ok());
  ASSERT_EQ(write(pair_[1], "held", 4), 4);
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(loop->RunOnce(absl::ZeroDuration()).ok());
  loop.reset();
  EXPECT_EQ(calls, 0);
  EXPECT_EQ(token.use_count(), 1);
}

INSTANTIATE_TEST_SUITE_P(Conformance, SocketIoConformance, ::testing::ValuesIn(WorkerCounts()),
                         WorkerCountName);

}  // namespace
}  // namespace taskrt::conformance
