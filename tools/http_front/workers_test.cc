// The HTTP front on worker processes, as a user runs it: a NATS broker, the
// server on the nats_workers scheduler, and tools/nats_worker processes.
// Every answer must equal the one the default (local) scheduler gives, also
// when the worker running a job is SIGKILLed and another takes the job over.

#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "backends/registry.h"
#include "gtest/gtest.h"
#include "platform/nats/broker.h"
#include "platform/process/child_process.h"
#include "schedulers/nats_workers/nats_workers.h"
#include "tools/http_front/server.h"

namespace taskrt::http {
namespace {

constexpr char kWorkerBinary[] = "tools/nats_worker/nats_worker";
// Short, so that a killed worker's job comes back soon; owner and workers
// are given the same. Not a bound on anything the tests assert.
constexpr int kAckWaitMs = 1000;
// Only bounds a wait that would otherwise hang the test; nothing is timed.
constexpr absl::Duration kHangGuard = absl::Seconds(120);

// A tools/nats_worker process, its standard error in a file.
class Worker {
 public:
  Worker(const std::string& url, const std::string& log_path) : log_path_(log_path) {
    absl::StatusOr<std::unique_ptr<ChildProcess>> child =
        ChildProcess::Start({kWorkerBinary, absl::StrCat("--url=", url),
                             absl::StrCat("--ack_wait_ms=", kAckWaitMs), "--slots=2"},
                            log_path);
    EXPECT_TRUE(child.ok()) << child.status();
    if (child.ok()) child_ = *std::move(child);
  }

  // Stops it as an operator would (SIGTERM): anything but a clean exit (a
  // sanitizer's report, say) fails the test.
  ~Worker() {
    if (child_ == nullptr || child_->pid() <= 0) return;
    const int status = child_->Stop();
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0)
        << "the worker ended with wait status " << status << "; its log:\n" << Log();
  }

  bool started() const { return child_ != nullptr; }

  // SIGKILL, as a machine that dies; returns once it is dead.
  void KillHard() { child_->Kill(); }

  std::string Log() const {
    std::ifstream in(log_path_);
    std::stringstream text;
    text << in.rdbuf();
    return text.str();
  }

 private:
  std::string log_path_;
  std::unique_ptr<ChildProcess> child_;
};

// A server on `backends`, its loop on a thread of its own.
class RunningServer {
 public:
  explicit RunningServer(Backends backends) : backends_(std::move(backends)) {
    ServerOptions options;
    options.listen = "127.0.0.1:0";
    TaskEnvironment env{backends_.scheduler.get(), backends_.channels.get(), backends_.loop.get(), {}};
    absl::StatusOr<std::unique_ptr<Server>> server = Server::Start(options, env);
    EXPECT_TRUE(server.ok()) << server.status();
    if (!server.ok()) return;
    server_ = *std::move(server);
    loop_thread_ = std::thread([this] { EXPECT_TRUE(backends_.loop->Run().ok()); });
  }
  ~RunningServer() {
    if (loop_thread_.joinable()) {
      backends_.loop->Stop();
      loop_thread_.join();
    }
    server_.reset();
  }

  bool ok() const { return server_ != nullptr; }
  Server& server() { return *server_; }
  uint16_t port() const { return server_->port(); }

 private:
  Backends backends_;
  std::unique_ptr<Server> server_;
  std::thread loop_thread_;
};

int Connect(uint16_t port) {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  const timeval guard{absl::ToInt64Seconds(kHangGuard), 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &guard, sizeof guard);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(port);
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

// Sends one request with Connection: close on a new connection.
int SendRequest(uint16_t port, const std::string& target) {
  const int fd = Connect(port);
  if (fd < 0) return -1;
  const std::string request =
      absl::StrCat("GET ", target, " HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
  if (send(fd, request.data(), request.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(request.size())) {
    close(fd);
    return -1;
  }
  return fd;
}

// Reads into `answer` until it contains `text` (true) or the stream ends.
bool ReadUntil(int fd, std::string& answer, absl::string_view text) {
  char buffer[4096];
  while (!absl::StrContains(answer, text)) {
    const ssize_t n = recv(fd, buffer, sizeof buffer, 0);
    if (n <= 0) return false;
    answer.append(buffer, static_cast<size_t>(n));
  }
  return true;
}

// The rest of the answer, until the server closes; closes `fd`.
std::string ReadToEnd(int fd, std::string answer = "") {
  ReadUntil(fd, answer, "\x01never sent\x01");
  close(fd);
  return answer;
}

std::string Fetch(uint16_t port, const std::string& target) {
  const int fd = SendRequest(port, target);
  return fd < 0 ? "" : ReadToEnd(fd);
}

class HttpFrontOnWorkers : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<std::unique_ptr<nats_platform::LocalBroker>> broker =
        nats_platform::LocalBroker::Start();
    if (!broker.ok()) GTEST_SKIP() << "no NATS broker (nats-server) to test with: " << broker.status();
    broker_ = *std::move(broker);

    const DefaultBackends& defaults = Defaults();
    absl::StatusOr<Backends> local = NewBackends(defaults.scheduler, defaults.channel, defaults.loop, 2);
    ASSERT_TRUE(local.ok()) << local.status();
    local_ = std::make_unique<RunningServer>(*std::move(local));
    ASSERT_TRUE(local_->ok());

    // The server as `--scheduler=nats_workers` builds it, with the
    // workers' ack wait.
    Backends remote;
    absl::StatusOr<std::unique_ptr<EventLoop>> loop = NewLoopNamed(defaults.loop);
    ASSERT_TRUE(loop.ok()) << loop.status();
    remote.loop = *std::move(loop);
    NatsWorkersOptions options;
    options.url = broker_->url();
    options.ack_wait = absl::Milliseconds(kAckWaitMs);
    absl::StatusOr<std::unique_ptr<Scheduler>> scheduler = NewNatsWorkersScheduler(options);
    ASSERT_TRUE(scheduler.ok()) << scheduler.status();
    remote.scheduler = *std::move(scheduler);
    remote_ = std::make_unique<RunningServer>(std::move(remote));
    ASSERT_TRUE(remote_->ok());
  }

  void TearDown() override {
    remote_.reset();
    local_.reset();
  }

  std::unique_ptr<Worker> StartWorker() {
    const char* tmp = std::getenv("TEST_TMPDIR");
    const std::string log =
        absl::StrCat(tmp != nullptr ? tmp : "/tmp", "/nats_worker_", ++workers_started_, ".log");
    auto worker = std::make_unique<Worker>(broker_->url(), log);
    EXPECT_TRUE(worker->started());
    return worker;
  }

  std::unique_ptr<nats_platform::LocalBroker> broker_;
  std::unique_ptr<RunningServer> local_;
  std::unique_ptr<RunningServer> remote_;
  int workers_started_ = 0;
};

TEST_F(HttpFrontOnWorkers, AnswersAsTheLocalSchedulerDoes) {
  std::unique_ptr<Worker> worker = StartWorker();
  for (const std::string target :
       {"/primes?below=100000", "/primes?below=100000&stream=1", "/hash?mib=2"}) {
    const std::string expected = Fetch(local_->port(), target);
    ASSERT_TRUE(absl::StartsWith(expected, "HTTP/1.1 200 OK\r\n")) << expected;
    EXPECT_EQ(Fetch(remote_->port(), target), expected) << target;
  }
  EXPECT_TRUE(absl::EndsWith(Fetch(remote_->port(), "/primes?below=100000"), "\r\n\r\n9592\n"));

  ASSERT_TRUE(remote_->server().WaitForIdle(kHangGuard));
  const ServerStats stats = remote_->server().stats();
  EXPECT_EQ(stats.tasks_started, 4u);
  EXPECT_EQ(stats.tasks_finished, 4u);
  EXPECT_EQ(stats.tasks_cancelled, 0u);
  EXPECT_EQ(stats.tasks_running, 0u);
}

TEST_F(HttpFrontOnWorkers, AJobWhoseWorkerIsKilledIsAnsweredByTheNextWorker) {
  // Long enough that the first progress comes well before the end.
  const std::string big = "/hash?mib=256&stream=1";
  const std::string expected = Fetch(local_->port(), big);
  ASSERT_TRUE(absl::StrContains(expected, "result ")) << expected;

  std::unique_ptr<Worker> doomed = StartWorker();
  const int fd = SendRequest(remote_->port(), big);
  ASSERT_GE(fd, 0);
  std::string answer;
  ASSERT_TRUE(ReadUntil(fd, answer, "progress ")) << answer;
  doomed->KillHard();
  std::unique_ptr<Worker> next = StartWorker();
  EXPECT_EQ(ReadToEnd(fd, answer), expected);  // each progress line once, and the result

  // A second request after the kill.
  EXPECT_EQ(Fetch(remote_->port(), "/primes?below=100000"), Fetch(local_->port(), "/primes?below=100000"));

  ASSERT_TRUE(remote_->server().WaitForIdle(kHangGuard));
  const ServerStats stats = remote_->server().stats();
  EXPECT_EQ(stats.tasks_finished, 2u);
  EXPECT_EQ(stats.tasks_cancelled, 0u);
  const std::string log = next->Log();
  EXPECT_TRUE(absl::StrContains(log, "attempt 2 at 'http_front.job'"))
      << "the killed worker's job was not retried on the next; its log:\n" << log;
}

TEST_F(HttpFrontOnWorkers, AClientThatLeavesCancelsItsJobOnTheWorker) {
  std::unique_ptr<Worker> worker = StartWorker();
  const int fd = SendRequest(remote_->port(), "/hash?mib=4096&stream=1");
  ASSERT_GE(fd, 0);
  std::string answer;
  ASSERT_TRUE(ReadUntil(fd, answer, "progress ")) << answer;
  close(fd);
  ASSERT_TRUE(remote_->server().WaitForIdle(kHangGuard));
  const ServerStats stats = remote_->server().stats();
  EXPECT_EQ(stats.tasks_finished, 1u);
  EXPECT_EQ(stats.tasks_cancelled, 1u);
  // The worker is free again: the next job is answered.
  EXPECT_EQ(Fetch(remote_->port(), "/hash?mib=2"), Fetch(local_->port(), "/hash?mib=2"));
}

}  // namespace
}  // namespace taskrt::http
