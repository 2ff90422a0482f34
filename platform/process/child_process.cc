#include "platform/process/child_process.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>

#include "absl/status/status.h"
#include "core/errors.h"

namespace taskrt {

absl::StatusOr<std::unique_ptr<ChildProcess>> ChildProcess::Start(std::vector<std::string> argv,
                                                                const std::string& stderr_path) {
  if (argv.empty()) return absl::InvalidArgumentError("ChildProcess::Start: no program");
  // Everything the child needs is built before fork(): after it, in a
  // process with other threads, only async-signal-safe calls are allowed.
  std::vector<char*> pointers;
  for (std::string& argument : argv) pointers.push_back(argument.data());
  pointers.push_back(nullptr);
  const pid_t parent = getpid();
  const pid_t pid = fork();
  if (pid < 0) return ErrnoError("ChildProcess::Start: fork", errno);
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(127);  // the parent died before prctl
    if (!stderr_path.empty()) {
      const int output = open(stderr_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      if (output >= 0) dup2(output, STDERR_FILENO);
    }
    execv(pointers[0], pointers.data());
    _exit(127);
  }
  return std::unique_ptr<ChildProcess>(new ChildProcess(pid));
}

ChildProcess::~ChildProcess() {
  if (pid_ > 0) Stop();
}

void ChildProcess::Signal(int signal) {
  if (pid_ > 0) kill(pid_, signal);
}

int ChildProcess::Wait() {
  if (pid_ <= 0) return 0;
  int status = 0;
  while (waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
  }
  pid_ = -1;
  return status;
}

std::optional<int> ChildProcess::TryWait() {
  if (pid_ <= 0) return 0;
  int status = 0;
  pid_t reaped;
  while ((reaped = waitpid(pid_, &status, WNOHANG)) < 0 && errno == EINTR) {
  }
  if (reaped == 0) return std::nullopt;
  pid_ = -1;
  return status;
}

int ChildProcess::Stop() {
  Signal(SIGTERM);
  return Wait();
}

void ChildProcess::Kill() {
  Signal(SIGKILL);
  Wait();
}

}  // namespace taskrt
