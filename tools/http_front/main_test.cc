// The http_front binary end to end: started as a user starts it, stopped
// with SIGTERM. Its exit line must count a job that ran then as cancelled
// (the counters are read after the connections closed and the entries saw
// the cancel, not before); --trace writes a trace a viewer can read.

#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "core/trace_testing.h"
#include "gtest/gtest.h"

namespace {

constexpr char kBinary[] = "tools/http_front/http_front";

int Connect(int port) {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(static_cast<uint16_t>(port));
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

// One request on a new connection; the whole answer (the server closes).
std::string Fetch(int port, const std::string& target) {
  const int fd = Connect(port);
  if (fd < 0) return "";
  const std::string request =
      absl::StrCat("GET ", target, " HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
  if (send(fd, request.data(), request.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(request.size())) {
    close(fd);
    return "";
  }
  std::string answer;
  char buffer[4096];
  ssize_t n;
  while ((n = recv(fd, buffer, sizeof buffer, 0)) > 0) answer.append(buffer, static_cast<size_t>(n));
  close(fd);
  return answer;
}

// The binary, started with `flags`, its standard output read line by line.
class RunningServer {
 public:
  explicit RunningServer(const std::vector<std::string>& flags) {
    int out[2];
    if (pipe(out) != 0) return;
    pid_ = fork();
    if (pid_ == 0) {
      dup2(out[1], STDOUT_FILENO);
      close(out[0]);
      close(out[1]);
      std::vector<char*> argv = {const_cast<char*>(kBinary)};
      for (const std::string& flag : flags) argv.push_back(const_cast<char*>(flag.c_str()));
      argv.push_back(nullptr);
      execv(kBinary, argv.data());
      _exit(127);
    }
    close(out[1]);
    output_ = fdopen(out[0], "r");
  }
  ~RunningServer() {
    if (output_ != nullptr) fclose(output_);
    if (pid_ > 0 && !waited_) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
  }

  // The port from "http_front: listening on http://127.0.0.1:PORT/ (...)",
  // or 0 when the first line is not that.
  int ReadPort() {
    first_line_ = NextLine();
    const size_t colon = first_line_.find(':', first_line_.find("127.0.0.1"));
    int port = 0;
    if (colon == std::string::npos ||
        !absl::SimpleAtoi(first_line_.substr(colon + 1, first_line_.find('/', colon) - colon - 1),
                          &port)) {
      return 0;
    }
    return port;
  }
  const std::string& first_line() const { return first_line_; }

  // SIGTERM, then every line up to the exit; returns the exit status.
  int Stop(std::vector<std::string>* lines) {
    kill(pid_, SIGTERM);
    return Wait(lines);
  }
  int Wait(std::vector<std::string>* lines) {
    for (std::string line = NextLine(); !line.empty(); line = NextLine()) lines->push_back(line);
    int status = 0;
    waitpid(pid_, &status, 0);
    waited_ = true;
    return status;
  }

 private:
  std::string NextLine() {
    char line[512];
    if (output_ == nullptr || fgets(line, sizeof line, output_) == nullptr) return "";
    return line;
  }

  pid_t pid_ = -1;
  FILE* output_ = nullptr;
  bool waited_ = false;
  std::string first_line_;
};

TEST(HttpFrontBinary, TheExitLineCountsTheJobCancelledAtShutdown) {
  RunningServer server({"--listen=127.0.0.1:0"});
  const int port = server.ReadPort();
  ASSERT_NE(port, 0) << "not the listening line: " << server.first_line();

  // A job that runs for minutes, on a connection kept open.
  const int job = Connect(port);
  ASSERT_GE(job, 0);
  const std::string request = "GET /primes?below=2000000000 HTTP/1.1\r\nHost: t\r\n\r\n";
  ASSERT_EQ(send(job, request.data(), request.size(), MSG_NOSIGNAL), static_cast<ssize_t>(request.size()));
  // Until the server says the task runs (each round is a request; no sleep).
  bool running = false;
  for (int round = 0; round < 100000 && !running; ++round) {
    running = absl::StrContains(Fetch(port, "/stats"), "\"tasks_running\": 1");
  }
  ASSERT_TRUE(running) << "the job's task never started";

  std::vector<std::string> lines;
  const int status = server.Stop(&lines);
  close(job);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "status " << status;
  ASSERT_FALSE(lines.empty());
  EXPECT_TRUE(absl::StrContains(lines.back(), "(1 tasks, 1 cancelled)")) << lines.back();
}

TEST(HttpFrontBinary, TraceWritesTheTasksOfTheRequestsItServed) {
  const std::string path = ::testing::TempDir() + "/http_front_trace.json";
  RunningServer server({"--listen=127.0.0.1:0", "--trace=" + path, "--trace_events=100000"});
  const int port = server.ReadPort();
  ASSERT_NE(port, 0) << "not the listening line: " << server.first_line();
  const std::string answer = Fetch(port, "/primes?below=1000");
  ASSERT_TRUE(absl::StrContains(answer, "200 OK")) << answer;
  std::vector<std::string> lines;
  const int status = server.Stop(&lines);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "status " << status;
  ASSERT_GE(lines.size(), 2u);
  EXPECT_TRUE(absl::StrContains(lines[lines.size() - 2], "wrote the trace " + path))
      << lines[lines.size() - 2];

  using taskrt::trace::testing::EventsOf;
  const nlohmann::json trace = taskrt::trace::testing::ReadTrace(path);
  ASSERT_TRUE(trace.is_object()) << path << " is not JSON";
  // The request's task: spawned, run on a named worker, and its messages to
  // the loop (the answer) sent and received.
  std::vector<nlohmann::json> spawns = EventsOf(trace, "i", "spawn");
  ASSERT_GE(spawns.size(), 1u);
  const uint64_t unit = spawns[0]["args"]["unit"].get<uint64_t>();
  std::vector<nlohmann::json> runs =
      EventsOf(trace, "X", "run", taskrt::trace::testing::OfUnit(unit));
  ASSERT_GE(runs.size(), 1u);
  EXPECT_EQ(taskrt::trace::testing::LaneNames(trace, runs[0]["tid"].get<uint64_t>()).size(), 1u)
      << "no name for the lane the task ran on";
  EXPECT_GE(EventsOf(trace, "s", "message").size(), 1u);
  EXPECT_EQ(EventsOf(trace, "s", "message").size(), EventsOf(trace, "f", "message").size());
}

// Under `bazel run` the binary starts in its runfiles; a relative path is
// the user's, from the directory bazel run was called in.
TEST(HttpFrontBinary, ARelativeTracePathBelongsToTheDirectoryBazelRunWasCalledFrom) {
  const std::string directory = ::testing::TempDir();
  const std::string relative = "relative_trace.json";
  std::remove((directory + "/" + relative).c_str());
  ASSERT_EQ(setenv("BUILD_WORKING_DIRECTORY", directory.c_str(), 1), 0);
  RunningServer server({"--listen=127.0.0.1:0", "--trace=" + relative});
  unsetenv("BUILD_WORKING_DIRECTORY");
  ASSERT_NE(server.ReadPort(), 0) << "not the listening line: " << server.first_line();
  std::vector<std::string> lines;
  const int status = server.Stop(&lines);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "status " << status;
  EXPECT_TRUE(taskrt::trace::testing::ReadTrace(directory + "/" + relative).is_object())
      << "no trace in " << directory;
}

TEST(HttpFrontBinary, ATraceFileThatCannotBeWrittenFailsBeforeItListens) {
  RunningServer server({"--listen=127.0.0.1:0", "--trace=/nonexistent-directory-for-taskrt/t.json"});
  std::vector<std::string> lines;
  const int status = server.Wait(&lines);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 1) << "status " << status;
  EXPECT_TRUE(lines.empty()) << "it printed: " << lines[0];
}

}  // namespace
