// The http_front binary end to end: started as a user starts it, stopped
// with SIGTERM while a job runs. Its exit line must count that job as
// cancelled (the counters are read after the connections closed and the
// entries saw the cancel, not before).

#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
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

TEST(HttpFrontBinary, TheExitLineCountsTheJobCancelledAtShutdown) {
  int out[2];
  ASSERT_EQ(pipe(out), 0);
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    dup2(out[1], STDOUT_FILENO);
    close(out[0]);
    close(out[1]);
    execl(kBinary, kBinary, "--listen=127.0.0.1:0", static_cast<char*>(nullptr));
    _exit(127);
  }
  close(out[1]);
  FILE* output = fdopen(out[0], "r");
  ASSERT_NE(output, nullptr);
  char line[512];
  ASSERT_NE(fgets(line, sizeof line, output), nullptr) << "the server printed nothing";
  // "http_front: listening on http://127.0.0.1:PORT/ (...)"
  const std::string listening = line;
  const size_t colon = listening.find(':', listening.find("127.0.0.1"));
  ASSERT_NE(colon, std::string::npos) << listening;
  int port = 0;
  ASSERT_TRUE(absl::SimpleAtoi(listening.substr(colon + 1, listening.find('/', colon) - colon - 1), &port))
      << listening;

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

  ASSERT_EQ(kill(pid, SIGTERM), 0);
  std::string last;
  while (fgets(line, sizeof line, output) != nullptr) last = line;
  fclose(output);
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  close(job);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "status " << status;
  EXPECT_TRUE(absl::StrContains(last, "(1 tasks, 1 cancelled)")) << last;
}

}  // namespace
