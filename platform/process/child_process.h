#ifndef TASKRT_PLATFORM_PROCESS_CHILD_PROCESS_H_
#define TASKRT_PLATFORM_PROCESS_CHILD_PROCESS_H_

// A child process that never outlives this one: worker processes started by
// tests and benchmarks.
//
// Start() forks and execs argv[0] (a path) with the arguments as given. The
// child is killed (SIGKILL) when the thread that started it ends, however
// it ends (PR_SET_PDEATHSIG): start children from a thread that lives as
// long as they should (a test's or a benchmark's main thread). Its standard
// error goes to `stderr_path` when one is given (created or truncated),
// else it is this process's.
//
// Destroying a ChildProcess that still runs stops it (SIGTERM) and reaps it.
// Stop() does that and returns the wait status, for callers that check how
// the child ended; Kill() is SIGKILL, as a machine that dies.
//
// Thread safety: one thread at a time per object.

#include <sys/types.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace taskrt {

class ChildProcess {
 public:
  // kInvalidArgument for an empty argv; a system error when fork fails. An
  // executable that cannot run makes the child exit with status 127.
  static absl::StatusOr<std::unique_ptr<ChildProcess>> Start(std::vector<std::string> argv,
                                                            const std::string& stderr_path = "");

  ~ChildProcess();
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  // -1 once reaped.
  pid_t pid() const { return pid_; }

  // Sends `signal` without waiting (no-op once reaped), so that several
  // children can be stopped at once before each is reaped.
  void Signal(int signal);
  // Waits for the child to end and reaps it; its wait status (0 if it was
  // already reaped).
  int Wait();
  // As Wait() if the child has ended; nullopt, without waiting, while it
  // runs.
  std::optional<int> TryWait();
  // SIGTERM, then Wait().
  int Stop();
  // SIGKILL, then Wait().
  void Kill();

 private:
  explicit ChildProcess(pid_t pid) : pid_(pid) {}
  pid_t pid_;
};

}  // namespace taskrt

#endif  // TASKRT_PLATFORM_PROCESS_CHILD_PROCESS_H_
