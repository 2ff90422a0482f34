#include "platform/nats/broker.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <system_error>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "core/errors.h"

namespace taskrt::nats_platform {
namespace {

// How long a starting server may take to say it is ready.
constexpr auto kStartTimeout = std::chrono::seconds(20);
// How much of the server's output is kept for error messages.
constexpr size_t kOutputTailBytes = 2048;
constexpr absl::string_view kListening = "Listening for client connections on ";
constexpr absl::string_view kReady = "Server is ready";

bool IsExecutable(const std::string& path) { return access(path.c_str(), X_OK) == 0; }

}  // namespace

absl::StatusOr<std::string> FindNatsServer() {
  std::vector<std::string> directories;
  if (const char* path = std::getenv("PATH"); path != nullptr) {
    directories = absl::StrSplit(path, ':', absl::SkipEmpty());
  }
  directories.push_back("/usr/sbin");
  directories.push_back("/usr/local/sbin");
  for (const std::string& directory : directories) {
    std::string candidate = absl::StrCat(directory, "/nats-server");
    if (IsExecutable(candidate)) return candidate;
  }
  return absl::UnavailableError(
      "nats: no broker: nats-server is not on PATH nor in /usr/sbin (Debian package "
      "nats-server; tools/bazel installs it), and TASKRT_NATS_URL is not set");
}

absl::StatusOr<std::string> BrokerUrl() {
  if (const char* url = std::getenv(kBrokerUrlVariable); url != nullptr && *url != '\0') {
    return std::string(url);
  }
  static Mutex mutex;
  static LocalBroker* broker = nullptr;  // lives until the process exits
  MutexLock lock(&mutex);
  if (broker == nullptr) {
    absl::StatusOr<std::unique_ptr<LocalBroker>> started = LocalBroker::Start();
    if (!started.ok()) return started.status();
    broker = started->release();
  }
  return broker->url();
}

absl::StatusOr<std::unique_ptr<LocalBroker>> LocalBroker::Start(LocalBrokerOptions options) {
  absl::StatusOr<std::string> executable = FindNatsServer();
  if (!executable.ok()) return executable.status();
  if (options.port < 0 || options.port > 65535) {
    return absl::InvalidArgumentError(absl::StrCat("nats-server: no such port: ", options.port));
  }
  std::unique_ptr<LocalBroker> broker(new LocalBroker);
  if (options.store_dir.empty()) {
    const char* tmp = std::getenv("TEST_TMPDIR");
    std::string pattern = absl::StrCat(tmp != nullptr && *tmp != '\0' ? tmp : "/tmp", "/taskrt-nats-XXXXXX");
    if (mkdtemp(pattern.data()) == nullptr) return ErrnoError("nats-server: mkdtemp", errno);
    broker->store_dir_ = pattern;
    broker->own_store_dir_ = true;
  } else {
    broker->store_dir_ = options.store_dir;
  }
  int output[2];
  if (pipe2(output, O_CLOEXEC) != 0) return ErrnoError("nats-server: pipe2", errno);
  std::vector<std::string> arguments = {
      *std::move(executable), "-a", "127.0.0.1", "-p",
      options.port == 0 ? std::string("-1") : absl::StrCat(options.port),
      "-js", "-sd", broker->store_dir_};

  // The child is forked on the watcher thread, which lives as long as the
  // child: PR_SET_PDEATHSIG fires when the forking thread ends, so a
  // short-lived caller's thread must not be the one.
  broker->watcher_ =
      std::thread(&LocalBroker::Watch, broker.get(), std::move(arguments), output[0], output[1]);
  absl::Status status;
  {
    MutexLock lock(&broker->mutex_);
    const bool answered = broker->changed_.WaitUntil(
        &broker->mutex_, std::chrono::steady_clock::now() + kStartTimeout,
        [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(broker->mutex_) { return broker->started_; });
    status = answered ? broker->start_status_
                      : absl::UnavailableError(absl::StrCat(
                            "nats-server did not report ready within ",
                            std::chrono::seconds(kStartTimeout).count(),
                            " s; its output: ", broker->output_tail_));
  }
  if (!status.ok()) return status;  // the destructor stops and reaps it
  return broker;
}

void LocalBroker::Watch(std::vector<std::string> arguments, int output_read, int output_write) {
  const pid_t parent = getpid();
  const std::string executable = arguments.front();
  // Everything the child needs is built before fork(): after it, in a
  // process with other threads, only async-signal-safe calls are allowed.
  std::vector<char*> argv;
  for (std::string& argument : arguments) argv.push_back(argument.data());
  argv.push_back(nullptr);

  {
    MutexLock lock(&mutex_);
    if (stopping_) {  // stopped (a start that timed out) before it forked
      start_status_ = absl::UnavailableError("nats-server: stopped before it started");
      started_ = true;
      exited_ = true;
      changed_.SignalAll();
      close(output_read);
      close(output_write);
      return;
    }
  }
  const pid_t child = fork();
  if (child == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(127);  // the parent died before prctl
    dup2(output_write, STDOUT_FILENO);
    dup2(output_write, STDERR_FILENO);
    const int null_input = open("/dev/null", O_RDONLY);
    if (null_input >= 0) dup2(null_input, STDIN_FILENO);
    execv(argv[0], argv.data());
    _exit(127);
  }
  close(output_write);
  {
    MutexLock lock(&mutex_);
    if (child < 0) {
      start_status_ = ErrnoError("nats-server: fork", errno);
      started_ = true;
      exited_ = true;
      changed_.SignalAll();
      close(output_read);
      return;
    }
    pid_ = child;
  }

  // Reads the server's output to its end (the child's exit): the first
  // lines say where it listens and that it is ready; later ones are kept
  // only as a tail for error messages, and reading them keeps the server
  // from blocking on a full pipe.
  std::string line_buffer;
  std::string url;
  char chunk[4096];
  for (;;) {
    const ssize_t n = read(output_read, chunk, sizeof chunk);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    MutexLock lock(&mutex_);
    output_tail_.append(chunk, static_cast<size_t>(n));
    if (output_tail_.size() > kOutputTailBytes) {
      output_tail_.erase(0, output_tail_.size() - kOutputTailBytes);
    }
    if (started_) continue;
    line_buffer.append(chunk, static_cast<size_t>(n));
    size_t newline;
    while (!started_ && (newline = line_buffer.find('\n')) != std::string::npos) {
      absl::string_view line(line_buffer.data(), newline);
      if (const size_t at = line.find(kListening); at != absl::string_view::npos) {
        const absl::string_view address = line.substr(at + kListening.size());
        url = absl::StrCat("nats://", address);
        if (const size_t colon = address.rfind(':'); colon != absl::string_view::npos) {
          if (!absl::SimpleAtoi(address.substr(colon + 1), &port_)) port_ = 0;
        }
      } else if (absl::StrContains(line, kReady) && !url.empty()) {
        url_ = url;
        started_ = true;
        changed_.SignalAll();
      }
      line_buffer.erase(0, newline + 1);
    }
  }
  close(output_read);
  {
    // Its output ends as it exits: from here on Stop() must not signal a
    // process id that the reaping below may free for reuse.
    MutexLock lock(&mutex_);
    exited_ = true;
  }
  int wait_status = 0;
  while (waitpid(child, &wait_status, 0) < 0 && errno == EINTR) {
  }
  MutexLock lock(&mutex_);
  if (!started_) {
    start_status_ = absl::UnavailableError(
        absl::StrCat("nats-server (", executable, ") exited before it was ready; its output: ",
                     output_tail_));
    started_ = true;
  }
  changed_.SignalAll();
}

void LocalBroker::Stop() {
  if (!watcher_.joinable()) return;
  {
    MutexLock lock(&mutex_);
    stopping_ = true;
    if (pid_ > 0 && !exited_) kill(pid_, SIGTERM);
  }
  watcher_.join();
  if (own_store_dir_) {
    std::error_code ignored;  // a leftover temporary directory is no failure
    std::filesystem::remove_all(store_dir_, ignored);
  }
}

LocalBroker::~LocalBroker() { Stop(); }

}  // namespace taskrt::nats_platform
