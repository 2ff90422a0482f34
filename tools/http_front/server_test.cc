// The HTTP front through real sockets on loopback, on every scheduler x
// channel x loop combination: answers, streaming, keep-alive and
// pipelining, and every kind of bad client (malformed, oversized, slow,
// silent, not reading, gone mid-task).

#include "tools/http_front/server.h"

#include <netinet/in.h>
#include <poll.h>
#include <sys/time.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <set>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "backends/registry.h"

namespace taskrt::http {
namespace {

// Only bounds a wait that would otherwise hang the test; nothing is timed.
constexpr int kHangGuardMs = 60'000;

struct Response {
  int status = 0;
  std::vector<std::pair<std::string, std::string>> headers;  // names lower-cased
  std::string body;  // de-chunked
  bool complete = false;

  std::string Header(absl::string_view name) const {
    for (const auto& [key, value] : headers) {
      if (key == name) return value;
    }
    return "";
  }
};

// A blocking loopback client with a hang guard on every wait.
class Client {
 public:
  explicit Client(uint16_t port, int receive_buffer_bytes = 0) {
    fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (receive_buffer_bytes > 0) {
      setsockopt(fd_, SOL_SOCKET, SO_RCVBUF, &receive_buffer_bytes, sizeof receive_buffer_bytes);
    }
    // A send the server never drains fails instead of hanging the test.
    const timeval guard{kHangGuardMs / 1000, 0};
    setsockopt(fd_, SOL_SOCKET, SO_SNDTIMEO, &guard, sizeof guard);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_port = htons(port);
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    connected_ = connect(fd_, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0;
  }
  ~Client() { Close(); }

  bool connected() const { return connected_; }

  void Close() {
    if (fd_ >= 0) close(fd_);
    fd_ = -1;
  }

  // Sends FIN: the client has said all it will, and still reads.
  void ShutdownWrite() { shutdown(fd_, SHUT_WR); }

  // Closes with a reset (SO_LINGER of zero), as a crashed peer does.
  void Reset() {
    const linger abort{1, 0};
    setsockopt(fd_, SOL_SOCKET, SO_LINGER, &abort, sizeof abort);
    Close();
  }

  // False if the server closed or reset the connection meanwhile.
  bool Send(absl::string_view bytes) {
    while (!bytes.empty()) {
      const ssize_t n = send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return false;
      bytes.remove_prefix(static_cast<size_t>(n));
    }
    return true;
  }

  // Reads more bytes into the buffer; false at the end of the stream, on an
  // error, or when the hang guard expires (reported as a failure).
  bool Fill() {
    pollfd p{fd_, POLLIN, 0};
    if (poll(&p, 1, kHangGuardMs) != 1) {
      ADD_FAILURE() << "hang guard: the server sent nothing for " << kHangGuardMs << " ms";
      return false;
    }
    char buffer[16 * 1024];
    const ssize_t n = recv(fd_, buffer, sizeof buffer, 0);
    if (n <= 0) return false;
    buffer_.append(buffer, static_cast<size_t>(n));
    return true;
  }

  // Everything until the server closes.
  std::string ReadToEnd() {
    while (Fill()) {
    }
    std::string all = std::move(buffer_);
    buffer_.clear();
    return all;
  }

  // True if the server closed the connection with nothing more to read.
  bool ClosedByServer() { return ReadToEnd().empty(); }

  // The status line and headers of the next response.
  bool ReadHead(Response& r) {
    size_t end;
    while ((end = buffer_.find("\r\n\r\n")) == std::string::npos) {
      if (!Fill()) return false;
    }
    std::vector<std::string> lines = absl::StrSplit(buffer_.substr(0, end), "\r\n");
    buffer_.erase(0, end + 4);
    std::vector<std::string> status_line = absl::StrSplit(lines[0], absl::MaxSplits(' ', 2));
    if (status_line.size() < 2 || !absl::SimpleAtoi(status_line[1], &r.status)) return false;
    for (size_t i = 1; i < lines.size(); ++i) {
      std::pair<std::string, std::string> kv = absl::StrSplit(lines[i], absl::MaxSplits(':', 1));
      r.headers.emplace_back(absl::AsciiStrToLower(kv.first),
                             std::string(absl::StripAsciiWhitespace(kv.second)));
    }
    return true;
  }

  // ReadHead, waiting at most `wait_ms` for each read: false if no whole
  // head has arrived by then.
  bool ReadHeadWithin(int wait_ms, Response& r) {
    pollfd p{fd_, POLLIN, 0};
    while (buffer_.find("\r\n\r\n") == std::string::npos) {
      if (poll(&p, 1, wait_ms) != 1) return false;
      char buffer[4096];
      const ssize_t n = recv(fd_, buffer, sizeof buffer, 0);
      if (n <= 0) return false;
      buffer_.append(buffer, static_cast<size_t>(n));
    }
    return ReadHead(r);
  }

  bool ReadExactly(size_t n, std::string& out) {
    while (buffer_.size() < n) {
      if (!Fill()) return false;
    }
    out.append(buffer_, 0, n);
    buffer_.erase(0, n);
    return true;
  }

  bool ReadLine(std::string& line) {
    size_t end;
    while ((end = buffer_.find("\r\n")) == std::string::npos) {
      if (!Fill()) return false;
    }
    line = buffer_.substr(0, end);
    buffer_.erase(0, end + 2);
    return true;
  }

  // One whole response: Content-Length or chunked body (none for HEAD).
  Response ReadResponse(bool head_only = false) {
    Response r;
    if (!ReadHead(r)) return r;
    if (head_only) {
      r.complete = true;
      return r;
    }
    if (r.Header("transfer-encoding") == "chunked") {
      while (true) {
        std::string size_line;
        size_t size = 0;
        if (!ReadLine(size_line) || !absl::SimpleHexAtoi(size_line, &size)) return r;
        std::string crlf;
        if (size == 0) {
          r.complete = ReadExactly(2, crlf) && crlf == "\r\n";
          return r;
        }
        if (!ReadExactly(size, r.body) || !ReadExactly(2, crlf) || crlf != "\r\n") return r;
      }
    }
    size_t length = 0;
    if (!absl::SimpleAtoi(r.Header("content-length"), &length)) return r;
    r.complete = ReadExactly(length, r.body);
    return r;
  }

 private:
  int fd_ = -1;
  bool connected_ = false;
  std::string buffer_;
};

std::string Get(absl::string_view target, absl::string_view extra_headers = "") {
  return absl::StrCat("GET ", target, " HTTP/1.1\r\nHost: test\r\n", extra_headers, "\r\n");
}

class HttpFront : public ::testing::TestWithParam<std::tuple<std::string, std::string, std::string>> {
 protected:
  void SetUp() override {
    const auto& [scheduler, channel, loop] = GetParam();
    absl::StatusOr<Backends> made = NewBackends(scheduler, channel, loop, 2);
    if (absl::IsUnavailable(made.status())) GTEST_SKIP() << "backend unavailable: " << made.status();
    ASSERT_TRUE(made.ok()) << made.status();
    backends_ = *std::move(made);
  }

  void StartServer(ServerOptions options = {}) {
    options.listen = "127.0.0.1:0";
    TaskEnvironment env{backends_.scheduler.get(), backends_.channels.get(), backends_.loop.get(), {}};
    absl::StatusOr<std::unique_ptr<Server>> server = Server::Start(options, env);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    loop_thread_ = std::thread([this] { EXPECT_TRUE(backends_.loop->Run().ok()); });
  }

  void TearDown() override {
    if (loop_thread_.joinable()) {
      backends_.loop->Stop();
      loop_thread_.join();
    }
    server_.reset();
  }

  uint16_t port() const { return server_->port(); }

  Backends backends_;
  std::unique_ptr<Server> server_;
  std::thread loop_thread_;
};

TEST_P(HttpFront, AnswersAJobWithItsResult) {
  StartServer();
  Client client(port());
  ASSERT_TRUE(client.Send(Get("/primes?below=100000")));
  Response r = client.ReadResponse();
  ASSERT_TRUE(r.complete);
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, "9592\n");

  ASSERT_TRUE(client.Send(Get("/hash?mib=0")));
  r = client.ReadResponse();
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, "cbf29ce484222325\n");  // FNV-1a 64 of nothing: the offset basis
  client.Close();
  ASSERT_TRUE(server_->WaitForIdle(absl::Milliseconds(kHangGuardMs)));
  const ServerStats stats = server_->stats();
  EXPECT_EQ(stats.tasks_started, 2u);
  EXPECT_EQ(stats.responses_2xx, 2u);
  EXPECT_EQ(stats.tasks_cancelled, 0u);
}

// The value of the sample `name{labels}` (labels as written, or empty) in a
// Prometheus text exposition, or -1 if absent.
double Sample(const std::string& exposition, absl::string_view name, absl::string_view labels = "") {
  const std::string key =
      labels.empty() ? absl::StrCat(name, " ") : absl::StrCat(name, "{", labels, "} ");
  for (absl::string_view line : absl::StrSplit(exposition, '\n')) {
    if (absl::StartsWith(line, key)) {
      double value = -1;
      if (absl::SimpleAtod(line.substr(key.size()), &value)) return value;
    }
  }
  return -1;
}

TEST_P(HttpFront, MetricsArePrometheusTextWithTheServersAndTheSchedulersCounts) {
  StartServer();
  Client client(port());
  ASSERT_TRUE(client.Send(Get("/primes?below=1000")));
  Response r = client.ReadResponse();
  ASSERT_EQ(r.status, 200);
  ASSERT_TRUE(client.Send(Get("/nowhere")));
  ASSERT_EQ(client.ReadResponse().status, 404);
  ASSERT_TRUE(client.Send(Get("/metrics")));
  r = client.ReadResponse();
  ASSERT_TRUE(r.complete);
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.Header("content-type"), "text/plain; version=0.0.4; charset=utf-8");
  // The format: every line a comment (HELP or TYPE, before the family's
  // samples) or "name[{labels}] value"; the body ends with a newline.
  ASSERT_FALSE(r.body.empty());
  EXPECT_EQ(r.body.back(), '\n');
  std::set<std::string> typed;
  for (absl::string_view line : absl::StrSplit(absl::StripSuffix(r.body, "\n"), '\n')) {
    ASSERT_FALSE(line.empty());
    if (absl::StartsWith(line, "# TYPE ")) {
      std::vector<std::string> words = absl::StrSplit(line, ' ');
      ASSERT_EQ(words.size(), 4u) << line;
      EXPECT_TRUE(words[3] == "counter" || words[3] == "gauge") << line;
      typed.insert(words[2]);
      continue;
    }
    if (absl::StartsWith(line, "# HELP ")) continue;
    const size_t name_end = line.find_first_of("{ ");
    ASSERT_NE(name_end, absl::string_view::npos) << line;
    const std::string name(line.substr(0, name_end));
    EXPECT_TRUE(typed.count(name)) << "a sample before its TYPE line: " << line;
    for (char ch : name) EXPECT_TRUE(absl::ascii_isalnum(ch) || ch == '_' || ch == ':') << line;
    double value;
    EXPECT_TRUE(absl::SimpleAtod(line.substr(line.rfind(' ') + 1), &value)) << line;
  }
  // The two requests before this one, answered 2xx and 4xx; this one is
  // parsed, not yet answered.
  EXPECT_EQ(Sample(r.body, "taskrt_http_requests_total"), 3);
  EXPECT_EQ(Sample(r.body, "taskrt_http_responses_total", "code=\"2xx\""), 1);
  EXPECT_EQ(Sample(r.body, "taskrt_http_responses_total", "code=\"4xx\""), 1);
  EXPECT_EQ(Sample(r.body, "taskrt_http_tasks_started_total"), 1);
  // The job was answered: its entry returned before the answer went out.
  EXPECT_EQ(Sample(r.body, "taskrt_http_tasks_finished_total"), 1);
  EXPECT_EQ(Sample(r.body, "taskrt_http_connections_open"), 1);
  // The scheduler ran the one task entry: at least one unit started.
  const std::string scheduler =
      absl::StrCat("scheduler=\"", backends_.scheduler->name(), "\"");
  EXPECT_GE(Sample(r.body, "taskrt_scheduler_units_started_total", scheduler), 1);
  EXPECT_GE(Sample(r.body, "taskrt_scheduler_spawned_total",
                   absl::StrCat(scheduler, ",from=\"outside\"")),
            0);
  EXPECT_GE(Sample(r.body, "taskrt_scheduler_parks_total", scheduler), 0);
  // The loop has iterated for each of the requests it read.
  const std::string loop = absl::StrCat("loop=\"", backends_.loop->name(), "\"");
  EXPECT_GE(Sample(r.body, "taskrt_loop_iterations_total", loop), 1);
  EXPECT_GE(Sample(r.body, "taskrt_loop_callbacks_total", loop), 1);
  // HEAD: the headers alone.
  ASSERT_TRUE(client.Send("HEAD /metrics HTTP/1.1\r\nHost: test\r\n\r\n" + Get("/metrics")));
  const Response head = client.ReadResponse(/*head_only=*/true);
  EXPECT_EQ(head.status, 200);
  EXPECT_EQ(head.Header("content-type"), "text/plain; version=0.0.4; charset=utf-8");
  // The connection stays in step: the next answer is the next request's,
  // which counts both scrapes and the HEAD before it.
  r = client.ReadResponse();
  ASSERT_TRUE(r.complete);
  EXPECT_EQ(Sample(r.body, "taskrt_http_requests_total"), 5);
  client.Close();
  ASSERT_TRUE(server_->WaitForIdle(absl::Milliseconds(kHangGuardMs)));
}

TEST_P(HttpFront, TheInlineBaselineGivesTheSameAnswersWithoutATask) {
  ServerOptions options;
  options.run_jobs_inline = true;
  StartServer(options);
  Client client(port());
  ASSERT_TRUE(client.Send(Get("/primes?below=100000") + Get("/hash?mib=0")));
  EXPECT_EQ(client.ReadResponse().body, "9592\n");
  EXPECT_EQ(client.ReadResponse().body, "cbf29ce484222325\n");
  EXPECT_EQ(server_->stats().tasks_started, 0u);
}

TEST_P(HttpFront, StreamsEveryProgressMessageAsAChunk) {
  StartServer();
  Client client(port());
  // 10^6 numbers are 4 sieve segments of 256 Ki: one progress message each.
  ASSERT_TRUE(client.Send(Get("/primes?below=1000000&stream=1")));
  Response r = client.ReadResponse();
  ASSERT_TRUE(r.complete);
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.Header("transfer-encoding"), "chunked");
  EXPECT_EQ(r.body, "progress 1/4\nprogress 2/4\nprogress 3/4\nprogress 4/4\nresult 78498\n");
}

TEST_P(HttpFront, ServesKeepAliveAndPipelinedRequestsInOrder) {
  StartServer();
  Client client(port());
  ASSERT_TRUE(client.Send(Get("/primes?below=10") + Get("/primes?below=100") + Get("/nowhere") +
                          Get("/primes?below=1000")));
  for (const char* expected : std::vector<const char*>{"4\n", "25\n", nullptr, "168\n"}) {
    Response r = client.ReadResponse();
    ASSERT_TRUE(r.complete);
    if (expected == nullptr) {
      EXPECT_EQ(r.status, 404);
    } else {
      EXPECT_EQ(r.status, 200);
      EXPECT_EQ(r.body, expected);
    }
  }
  // HEAD: the same headers, no body, and the connection stays usable.
  ASSERT_TRUE(client.Send("HEAD /primes?below=10 HTTP/1.1\r\nHost: t\r\n\r\n" + Get("/primes?below=20")));
  Response head = client.ReadResponse(/*head_only=*/true);
  EXPECT_EQ(head.status, 200);
  EXPECT_EQ(head.Header("content-length"), "2");
  Response after = client.ReadResponse();
  EXPECT_EQ(after.body, "8\n");
}

TEST_P(HttpFront, ClosesAfterTheResponseWhenAsked) {
  StartServer();
  Client client(port());
  ASSERT_TRUE(client.Send(Get("/primes?below=10", "Connection: close\r\n")));
  Response r = client.ReadResponse();
  EXPECT_EQ(r.body, "4\n");
  EXPECT_EQ(r.Header("connection"), "close");
  EXPECT_TRUE(client.ClosedByServer());

  Client old(port());
  ASSERT_TRUE(old.Send("GET /primes?below=10 HTTP/1.0\r\n\r\n"));
  EXPECT_EQ(old.ReadResponse().body, "4\n");
  EXPECT_TRUE(old.ClosedByServer());
}

TEST_P(HttpFront, MalformedRequestsGet400AndAClose) {
  StartServer();
  for (const char* bad : {"GARBAGE\r\n\r\n", "GET / HTTP/1.1\nHost: x\n\n", "GET / HTTP/1.1\r\n\r\n",
                          "GET / HTTP/9.9\r\nHost: x\r\n\r\n", "GET / HTTP/1.1\r\nNo colon\r\n\r\n",
                          "\x16\x03\x01\x02\x01\x01\x01\x01\xfc\x03\x03\r\n\r\n"}) {
    Client client(port());
    ASSERT_TRUE(client.Send(bad));
    Response r = client.ReadResponse();
    EXPECT_EQ(r.status, 400) << absl::CEscape(bad);
    EXPECT_FALSE(r.body.empty());
    EXPECT_TRUE(client.ClosedByServer()) << absl::CEscape(bad);
  }
  ASSERT_TRUE(server_->WaitForIdle(absl::Milliseconds(kHangGuardMs)));
  EXPECT_EQ(server_->stats().tasks_started, 0u);
}

TEST_P(HttpFront, OversizedHeadsGet431AndAClose) {
  ServerOptions options;
  options.max_header_bytes = 1024;
  StartServer(options);
  // Complete but too long, and too long with no end in sight.
  for (const std::string& bad : {Get("/", "X-Big: " + std::string(2000, 'a') + "\r\n"),
                                 "GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + std::string(100'000, 'b')}) {
    Client client(port());
    client.Send(bad);  // may fail part-way: the server answers and closes early
    Response r = client.ReadResponse();
    EXPECT_EQ(r.status, 431);
    client.ReadToEnd();  // the close (or a reset, if bytes were left unread)
  }
}

TEST_P(HttpFront, BadMethodsBodiesPathsAndQueriesGet4xx) {
  StartServer();
  Client client(port());
  const std::vector<std::pair<std::string, int>> cases = {
      {"POST /primes?below=10 HTTP/1.1\r\nHost: t\r\n\r\n", 405},
      {Get("/primes"), 400},
      {Get("/primes?below=ten"), 400},
      {Get("/primes?below=-5"), 400},
      {Get("/primes?below=99999999999999999999999"), 400},
      {Get("/primes?below=2000000001"), 400},
      {Get("/hash?mib=4097"), 400},
      {Get("/primes?below=10&stream=2"), 400},
      {Get("/primes?below=10&colour=red"), 400},
      {Get("/etc/passwd"), 404},
  };
  for (const auto& [request, status] : cases) {
    ASSERT_TRUE(client.Send(request));
    Response r = client.ReadResponse();
    ASSERT_TRUE(r.complete) << request;
    EXPECT_EQ(r.status, status) << request;
    EXPECT_FALSE(r.body.empty()) << request;
  }
  // A body is refused and ends the connection: its bytes cannot be skipped safely.
  ASSERT_TRUE(client.Send("GET /primes?below=10 HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\n\r\nabcd"));
  EXPECT_EQ(client.ReadResponse().status, 413);
  client.ReadToEnd();
  ASSERT_TRUE(server_->WaitForIdle(absl::Milliseconds(kHangGuardMs)));
  EXPECT_EQ(server_->stats().tasks_started, 0u);
  EXPECT_EQ(server_->stats().responses_4xx, cases.size() + 1);
}

// Each timeout test sets the other timeout beyond the hang guard, so that
// however slowly this test runs, only the timeout under test can act.
TEST_P(HttpFront, AClientThatStopsMidRequestGets408) {
  ServerOptions options;
  options.request_timeout = absl::Milliseconds(100);
  options.idle_timeout = absl::Minutes(10);
  StartServer(options);
  Client client(port());
  ASSERT_TRUE(client.Send(Get("/primes?below=10")));
  EXPECT_EQ(client.ReadResponse().body, "4\n");
  ASSERT_TRUE(client.Send("GET /primes?below=10 HTTP/1.1\r\nHo"));
  Response r = client.ReadResponse();
  EXPECT_EQ(r.status, 408);
  EXPECT_TRUE(client.ClosedByServer());
}

TEST_P(HttpFront, AnIdleConnectionIsClosed) {
  ServerOptions options;
  options.idle_timeout = absl::Milliseconds(100);
  options.request_timeout = absl::Minutes(10);
  StartServer(options);
  Client silent(port());
  EXPECT_TRUE(silent.ClosedByServer());
  ASSERT_TRUE(server_->WaitForIdle(absl::Milliseconds(kHangGuardMs)));
}

TEST_P(HttpFront, AClientThatReadsNothingIsCutOff) {
  ServerOptions options;
  options.max_pending_output = 16 * 1024;
  options.idle_timeout = absl::Minutes(10);  // beyond the hang guard: only the cap may act
  StartServer(options);
  // Pipelines cheap requests and never reads: the answers (about four times
  // the requests' size) fill both socket buffers, then the server's queue.
  // (No tiny SO_RCVBUF here: below one loopback segment, the kernel prunes
  // and drops, and TCP's retransmission back-off stalls the test for minutes.)
  Client client(port());
  std::string burst;
  for (int i = 0; i < 2000; ++i) burst += Get("/");
  int sent = 0;
  while (sent < 200 && client.Send(burst)) ++sent;
  // The client still holds its socket: only the server can have closed it.
  ASSERT_TRUE(server_->WaitForIdle(absl::Milliseconds(kHangGuardMs)))
      << "the server kept a connection that read nothing (sent " << sent << " bursts)";
  EXPECT_LT(server_->stats().responses_2xx, 200u * 2000u);
}

TEST_P(HttpFront, ADisconnectMidTaskCancelsTheTask) {
  StartServer();
  for (const char* target : {"/primes?below=2000000000&stream=1", "/hash?mib=4096&stream=1"}) {
    Client client(port());
    ASSERT_TRUE(client.Send(Get(target)));
    Response r;
    ASSERT_TRUE(client.ReadHead(r));  // the stream starts once the task runs
    EXPECT_EQ(r.status, 200);
    client.Close();
  }
  // Uncancelled, these jobs would run for minutes (hours under sanitizers).
  ASSERT_TRUE(server_->WaitForIdle(absl::Milliseconds(kHangGuardMs)));
  const ServerStats stats = server_->stats();
  EXPECT_EQ(stats.tasks_started, 2u);
  EXPECT_EQ(stats.tasks_cancelled, 2u);
  EXPECT_EQ(stats.tasks_running, 0u);
}

TEST_P(HttpFront, ServesManyClientsAtOnce) {
  StartServer();
  constexpr int kClients = 64;
  std::vector<std::unique_ptr<Client>> clients;
  for (int i = 0; i < kClients; ++i) {
    clients.push_back(std::make_unique<Client>(port()));
    ASSERT_TRUE(clients.back()->Send(Get(absl::StrCat("/primes?below=", 1000 + i))));
  }
  // pi(1000..1063): 168 up to 1009, where 169 starts, and so on.
  for (int i = 0; i < kClients; ++i) {
    Response r = clients[i]->ReadResponse();
    ASSERT_TRUE(r.complete);
    EXPECT_EQ(r.status, 200);
    uint64_t count = 0;
    ASSERT_TRUE(absl::SimpleAtoi(absl::StripSuffix(r.body, "\n"), &count));
    uint64_t expected = 0;
    for (int n = 2; n < 1000 + i; ++n) {
      bool prime = true;
      for (int d = 2; d * d <= n; ++d) prime &= n % d != 0;
      expected += prime;
    }
    EXPECT_EQ(count, expected) << "below " << 1000 + i;
  }
  clients.clear();
  ASSERT_TRUE(server_->WaitForIdle(absl::Milliseconds(kHangGuardMs)));
  EXPECT_EQ(server_->stats().tasks_started, static_cast<uint64_t>(kClients));
}

TEST_P(HttpFront, StartRefusesBadOptions) {
  TaskEnvironment env{backends_.scheduler.get(), backends_.channels.get(), backends_.loop.get(), {}};
  for (const char* listen : {"localhost:80", "127.0.0.1", "127.0.0.1:99999", "1.2.3:4"}) {
    ServerOptions options;
    options.listen = listen;
    EXPECT_EQ(Server::Start(options, env).status().code(), absl::StatusCode::kInvalidArgument) << listen;
  }
  ServerOptions options;
  options.listen = "127.0.0.1:0";
  EXPECT_EQ(Server::Start(options, TaskEnvironment{}).status().code(), absl::StatusCode::kInvalidArgument);
  absl::StatusOr<std::unique_ptr<Server>> first = Server::Start(options, env);
  ASSERT_TRUE(first.ok()) << first.status();
  options.listen = absl::StrCat("127.0.0.1:", (*first)->port());
  absl::StatusOr<std::unique_ptr<Server>> second = Server::Start(options, env);
  EXPECT_FALSE(second.ok());
  EXPECT_TRUE(absl::StrContains(second.status().message(), "bind")) << second.status();
}

// RFC 9110 8.6 and RFC 9112 3.2: a second Content-Length or Host, or an
// invalid one, is 400 and a close; a body smuggled behind
// "Content-Length: 0" must never be served as a second request.
TEST_P(HttpFront, SmuggledAndAmbiguousRequestsGet400AndAClose) {
  StartServer();
  const std::string smuggled = "GET /primes?below=10 HTTP/1.1\r\nHost: t\r\n\r\n";
  for (const std::string& bad : {
           "GET / HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\nContent-Length: " +
               std::to_string(smuggled.size()) + "\r\n\r\n" + smuggled,
           std::string("GET / HTTP/1.1\r\nHost: t\r\nContent-Length: +0\r\n\r\n"),
           std::string("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"),
           std::string("GET / HTTP/1.1\r\nHost: bad host\r\n\r\n"),
           std::string("GET /primes?below=10&below=100000 HTTP/1.1\r\nHost: t\r\n\r\n"),
       }) {
    Client client(port());
    ASSERT_TRUE(client.Send(bad));
    Response r = client.ReadResponse();
    EXPECT_EQ(r.status, 400) << absl::CEscape(bad);
    EXPECT_TRUE(client.ClosedByServer()) << "anything after the 400: " << absl::CEscape(bad);
  }
  ASSERT_TRUE(server_->WaitForIdle(absl::Milliseconds(kHangGuardMs)));
  EXPECT_EQ(server_->stats().tasks_started, 0u) << "a smuggled job ran";
  EXPECT_EQ(server_->stats().responses_2xx, 0u);
}

// RFC 9112 3.2.2: a server MUST accept the absolute form.
TEST_P(HttpFront, AcceptsTheAbsoluteForm) {
  StartServer();
  Client client(port());
  ASSERT_TRUE(client.Send("GET http://example.com:8080/primes?below=10 HTTP/1.1\r\nHost: t\r\n\r\n"));
  Response r = client.ReadResponse();
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, "4\n");
}

// A client that sends its requests and at once its FIN (shutdown of its
// sending side) still reads: every request gets its answer, then the close.
TEST_P(HttpFront, RequestsFollowedAtOnceByFinAreAnswered) {
  StartServer();
  const std::vector<std::pair<std::string, std::vector<std::string>>> cases = {
      {Get("/"), {""}},
      {Get("/primes?below=10"), {"4\n"}},
      {Get("/primes?below=1000000&stream=1"),
       {"progress 1/4\nprogress 2/4\nprogress 3/4\nprogress 4/4\nresult 78498\n"}},
      {Get("/primes?below=10") + Get("/nowhere") + Get("/hash?mib=0"),
       {"4\n", "", "cbf29ce484222325\n"}},
  };
  for (const auto& [requests, bodies] : cases) {
    Client client(port());
    ASSERT_TRUE(client.Send(requests));
    client.ShutdownWrite();
    for (const std::string& body : bodies) {
      Response r = client.ReadResponse();
      ASSERT_TRUE(r.complete) << absl::CEscape(requests);
      if (!body.empty()) {
        EXPECT_EQ(r.body, body) << absl::CEscape(requests);
      }
    }
    EXPECT_TRUE(client.ClosedByServer()) << absl::CEscape(requests);
  }
  ASSERT_TRUE(server_->WaitForIdle(absl::Milliseconds(kHangGuardMs)));
  EXPECT_EQ(server_->stats().tasks_cancelled, 0u);
}

// After a 400 with the client's input still arriving, the server lingers
// (FIN, then reads and discards) instead of closing with unread bytes, which
// makes the kernel send RST and throw away the answers it still holds. The
// client reads nothing until the server is done with the connection, so the
// answers wait in the server's socket buffer (made big enough for them) when
// it closes.
TEST_P(HttpFront, AnswersQueuedBeforeAnErrorSurviveTheClose) {
  constexpr int kRequests = 2000;  // about 270 KiB of answers
  ServerOptions options;
  options.send_buffer_bytes = 1 << 20;  // the kernel caps it near 400 KiB
  options.linger_timeout = absl::Milliseconds(200);
  StartServer(options);
  Client client(port(), /*receive_buffer_bytes=*/64 * 1024);
  std::string requests;
  for (int i = 0; i < kRequests; ++i) requests += Get("/");
  requests += "BROKEN\r\n\r\n";
  requests += std::string(1 << 20, 'x');  // still arriving when the server closes
  std::thread sender([&client, &requests] { client.Send(requests); });
  ASSERT_TRUE(server_->WaitForIdle(absl::Milliseconds(kHangGuardMs)));  // it closed
  int answered = 0;
  Response r;
  for (; answered < kRequests; ++answered) {
    r = client.ReadResponse();
    if (!r.complete || r.status != 200) break;
  }
  EXPECT_EQ(answered, kRequests) << "answers lost to a reset";
  r = client.ReadResponse();
  EXPECT_EQ(r.status, 400);
  sender.join();
  EXPECT_TRUE(client.ClosedByServer());
}

// Slowloris: a head that trickles in a byte at a time gets 408 once
// request_timeout has passed since its first byte, however often bytes come.
TEST_P(HttpFront, ATricklingHeadGets408FromItsFirstByte) {
  ServerOptions options;
  options.request_timeout = absl::Milliseconds(200);
  options.idle_timeout = absl::Minutes(10);
  StartServer(options);
  Client client(port());
  const std::string head = "GET /primes?below=10 HTTP/1.1\r\nHost: t\r\nX-Slow: ";
  ASSERT_TRUE(client.Send(head));
  // A byte whenever 50 ms pass without an answer, far more often than the
  // timeout: the head never ends. (The attack is made of time; only its
  // pace is set here, and the check is the status.)
  Response r;
  for (int bytes = 0; bytes < 200; ++bytes) {
    if (client.ReadHeadWithin(50, r)) break;
    if (!client.Send("a")) break;  // the server closed
  }
  EXPECT_EQ(r.status, 408) << "the head's clock restarted with each byte";
}

TEST_P(HttpFront, AtTheTaskCapJobsGet503WithRetryAfterAndOthersAreServed) {
  ServerOptions options;
  options.max_tasks = 1;
  StartServer(options);
  Client busy(port());
  ASSERT_TRUE(busy.Send(Get("/primes?below=2000000000&stream=1")));  // runs for minutes
  Response started;
  ASSERT_TRUE(busy.ReadHead(started));  // the stream starts once the task runs
  Client client(port());
  ASSERT_TRUE(client.Send(Get("/primes?below=10")));
  Response r = client.ReadResponse();
  EXPECT_EQ(r.status, 503);
  EXPECT_EQ(r.Header("retry-after"), "1");
  ASSERT_TRUE(client.Send(Get("/stats")));
  EXPECT_EQ(client.ReadResponse().status, 200) << "a request that needs no task";
  busy.Close();  // cancels the long job
  client.Close();
  ASSERT_TRUE(server_->WaitForIdle(absl::Milliseconds(kHangGuardMs)));
  EXPECT_EQ(server_->stats().tasks_refused, 1u);
}

TEST_P(HttpFront, AtTheConnectionCapTheOldestIdleConnectionMakesRoom) {
  ServerOptions options;
  options.max_connections = 2;
  StartServer(options);
  Client oldest(port());
  ASSERT_TRUE(oldest.Send(Get("/")));
  ASSERT_TRUE(oldest.ReadResponse().complete);
  Client busy(port());
  ASSERT_TRUE(busy.Send(Get("/primes?below=2000000000&stream=1")));
  Response started;
  ASSERT_TRUE(busy.ReadHead(started));
  // A third: the idle one goes. (A request with no task: on a scheduler
  // with one thread a job would wait for the busy one.)
  Client third(port());
  ASSERT_TRUE(third.Send(Get("/")));
  EXPECT_EQ(third.ReadResponse().status, 200);
  EXPECT_TRUE(oldest.ClosedByServer());
  // A fourth, with the other two running jobs (each takes seconds): refused
  // with 503.
  ASSERT_TRUE(third.Send(Get("/primes?below=2000000000&stream=1")));
  Response third_started;
  ASSERT_TRUE(third.ReadHead(third_started));
  EXPECT_EQ(third_started.status, 200);
  EXPECT_EQ(started.status, 200);
  Client fourth(port());
  Response refused = fourth.ReadResponse();
  EXPECT_EQ(refused.status, 503);
  EXPECT_TRUE(fourth.ClosedByServer());
  busy.Close();
  third.Close();
  ASSERT_TRUE(server_->WaitForIdle(absl::Milliseconds(kHangGuardMs)));
  const ServerStats stats = server_->stats();
  EXPECT_EQ(stats.connections_evicted, 1u);
  EXPECT_EQ(stats.connections_refused, 1u);
}

// A reader that keeps its answers coming but never lets the server's queue
// drain: the buffer erases what was sent as it goes, so its memory stays
// near the pending bytes, not everything queued since it last drained. The
// client keeps a fixed number of answers outstanding, more than the two
// (small) socket buffers hold, and reads one answer per request it sends.
TEST_P(HttpFront, ASlowReadersOutputBufferStaysNearItsPendingBytes) {
  ServerOptions options;
  options.send_buffer_bytes = 64 * 1024;
  options.max_pending_output = 4 << 20;
  StartServer(options);
  Client client(port(), /*receive_buffer_bytes=*/64 * 1024);
  // About 2.2 MiB of answers outstanding: more than the sockets hold, under
  // the 4 MiB cap; 7.5 MiB of answers in all.
  constexpr int kOutstanding = 16384;
  constexpr int kRequests = 40000;
  std::string first;
  for (int i = 0; i < kOutstanding; ++i) first += Get("/");
  ASSERT_TRUE(client.Send(first));
  uint64_t most = 0;
  for (int i = 0; i < kRequests; ++i) {
    Response r = client.ReadResponse();
    ASSERT_TRUE(r.complete) << "answer " << i;
    ASSERT_TRUE(client.Send(Get("/")));
    if (i % 500 == 0) most = std::max(most, server_->stats().output_buffer_bytes);
  }
  for (int i = 0; i < kOutstanding; ++i) ASSERT_TRUE(client.ReadResponse().complete);
  EXPECT_LE(most, options.max_pending_output) << "the buffer kept what it had sent";
}

// A job, then more pipelined requests than the server holds unparsed
// (64 KiB) while the job runs, then FIN: the server stops receiving at its
// cap and resumes when the job ends, and every request is answered in
// order, once, before the close.
TEST_P(HttpFront, PipelinedPastTheInputCapDuringAJobThenFinAreAllAnsweredInOrder) {
  StartServer();
  constexpr int kPipelined = 4000;  // about 120 KiB of requests
  Client client(port());
  std::string requests = Get("/primes?below=2000000");
  for (int i = 0; i < kPipelined; ++i) {
    requests += Get(i % 64 != 63 ? "/" : absl::StrCat("/primes?below=", 10 + i % 7));
  }
  std::thread sender([&client, &requests] {
    EXPECT_TRUE(client.Send(requests));
    client.ShutdownWrite();
  });
  Response job = client.ReadResponse();
  ASSERT_TRUE(job.complete);
  EXPECT_EQ(job.body, "148933\n");
  int answered = 0;
  for (int i = 0; i < kPipelined; ++i) {
    Response r = client.ReadResponse();
    if (!r.complete || r.status != 200) break;
    if (i % 64 == 63) {
      // The primes below 10..16: 4, 4, 5, 5, 6, 6, 6.
      static constexpr const char* kCounts[] = {"4\n", "4\n", "5\n", "5\n", "6\n", "6\n", "6\n"};
      if (r.body != kCounts[i % 7]) break;
    }
    ++answered;
  }
  sender.join();
  EXPECT_EQ(answered, kPipelined) << "a request lost, repeated or answered out of order";
  EXPECT_TRUE(client.ClosedByServer());
  ASSERT_TRUE(server_->WaitForIdle(absl::Milliseconds(kHangGuardMs)));
  EXPECT_EQ(server_->stats().requests, kPipelined + 1u);
}

// A client that half-closes in the middle of a head: nothing to answer, so
// the server closes, and the partial head is not counted as a request.
TEST_P(HttpFront, AHalfCloseMidHeadIsClosedWithoutAnAnswer) {
  StartServer();
  Client client(port());
  ASSERT_TRUE(client.Send("GET /primes?below=10 HTTP/1.1\r\nHo"));
  client.ShutdownWrite();
  EXPECT_TRUE(client.ClosedByServer());
  ASSERT_TRUE(server_->WaitForIdle(absl::Milliseconds(kHangGuardMs)));
  EXPECT_EQ(server_->stats().requests, 0u);
}

// A client that pipelines, reads nothing, and resets while the server
// still has answers on their way: the connection goes, and the server
// serves the next client.
TEST_P(HttpFront, AResetWhileAnswersAreBeingSentClosesTheConnection) {
  ServerOptions options;
  options.max_pending_output = 64 << 20;  // only the reset may end it
  options.send_buffer_bytes = 32 * 1024;  // no autotuning: the sockets hold little
  StartServer(options);
  {
    Client client(port());
    std::string burst;
    for (int i = 0; i < 4000; ++i) burst += Get("/");
    ASSERT_TRUE(client.Send(burst));
    // The answers (about 580 KiB) outgrow what the sockets take from a
    // reader that reads nothing: output waits in the server from then on.
    const absl::Time guard = absl::Now() + absl::Milliseconds(kHangGuardMs);
    while (server_->stats().output_buffer_bytes == 0 && absl::Now() < guard) {
      std::this_thread::yield();
    }
    ASSERT_GT(server_->stats().output_buffer_bytes, 0u) << "hang guard: no output pending";
    client.Reset();
  }
  ASSERT_TRUE(server_->WaitForIdle(absl::Milliseconds(kHangGuardMs)));
  EXPECT_EQ(server_->stats().output_buffer_bytes, 0u);
  Client next(port());
  ASSERT_TRUE(next.Send(Get("/primes?below=10")));
  EXPECT_EQ(next.ReadResponse().body, "4\n");
}

std::vector<std::tuple<std::string, std::string, std::string>> AllCombinations() {
  std::vector<std::tuple<std::string, std::string, std::string>> all;
  for (const std::string& s : SchedulerNames()) {
    for (const std::string& c : ChannelNames()) {
      for (const std::string& l : LoopNames()) all.emplace_back(s, c, l);
    }
  }
  return all;
}

INSTANTIATE_TEST_SUITE_P(Backends, HttpFront, ::testing::ValuesIn(AllCombinations()),
                         [](const auto& info) {
                           return absl::StrCat(std::get<0>(info.param), "_", std::get<1>(info.param),
                                               "_", std::get<2>(info.param));
                         });

}  // namespace
}  // namespace taskrt::http
