#ifndef TASKRT_PLATFORM_NATS_BROKER_H_
#define TASKRT_PLATFORM_NATS_BROKER_H_

// Where the NATS backends find a broker, and a nats-server of the process's
// own for tests, benchmarks and a one-machine setup.
//
// BrokerUrl()
//   $TASKRT_NATS_URL when it is set (a deployment's broker, e.g.
//   nats://10.0.0.5:4222); otherwise the URL of a LocalBroker this process
//   starts at the first call and keeps until it exits. Every caller in the
//   process shares that one broker.
//
// LocalBroker
//   Runs nats-server (Debian's nats-server package) as a child process,
//   listening on 127.0.0.1 (a free port unless one is asked for), with
//   JetStream storing in a directory (its own temporary one, removed by
//   Stop, unless one is given: a restart on the same port and directory
//   finds the streams as they were), and waits until it reports itself
//   ready. The child is killed when the process dies, however it dies
//   (PR_SET_PDEATHSIG, bound to a thread the broker owns for its whole
//   life), so a crashed test leaves no server behind. Stop() or destroying
//   the object stops it (SIGTERM) and reaps it.
//
// Errors: kUnavailable when nats-server is not installed or does not start
// (the message carries the end of its output); system errors for fork and
// pipe.
//
// Thread safety: BrokerUrl() may be called from any thread. A LocalBroker's
// calls must not overlap.

#include <sys/types.h>

#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "core/mutex.h"

namespace taskrt::nats_platform {

// The environment variable naming the broker every NATS backend uses.
inline constexpr char kBrokerUrlVariable[] = "TASKRT_NATS_URL";

absl::StatusOr<std::string> BrokerUrl();

// The nats-server executable: the first found on $PATH, then in /usr/sbin
// and /usr/local/sbin (Debian installs it in /usr/sbin, which a plain
// user's or a test's PATH often lacks). kUnavailable when there is none.
absl::StatusOr<std::string> FindNatsServer();

struct LocalBrokerOptions {
  int port = 0;           // 0: a free one
  std::string store_dir;  // empty: a temporary directory of its own
};

class LocalBroker {
 public:
  static absl::StatusOr<std::unique_ptr<LocalBroker>> Start(LocalBrokerOptions options = {});

  ~LocalBroker();
  LocalBroker(const LocalBroker&) = delete;
  LocalBroker& operator=(const LocalBroker&) = delete;

  // nats://127.0.0.1:<port>
  const std::string& url() const { return url_; }
  // The port it listens on.
  int port() const { return port_; }
  const std::string& store_dir() const { return store_dir_; }
  pid_t pid() const { return pid_; }

  // Stops the server (SIGTERM) and reaps it; the URL then refuses
  // connections. Idempotent.
  void Stop();

 private:
  LocalBroker() = default;
  // Runs on watcher_: starts the child, reads its output to the end,
  // reaps it.
  void Watch(std::vector<std::string> arguments, int output_read, int output_write);

  Mutex mutex_;
  CondVar changed_;
  bool started_ ABSL_GUARDED_BY(mutex_) = false;  // ready, or failed to start
  bool exited_ ABSL_GUARDED_BY(mutex_) = false;
  bool stopping_ ABSL_GUARDED_BY(mutex_) = false;
  absl::Status start_status_ ABSL_GUARDED_BY(mutex_);
  std::string output_tail_ ABSL_GUARDED_BY(mutex_);  // the end of its output
  // Written by the watcher under mutex_ before Start() returns, read after.
  std::string url_;
  int port_ = 0;
  pid_t pid_ = -1;
  std::string store_dir_;
  bool own_store_dir_ = false;  // removed by Stop
  std::thread watcher_;
};

}  // namespace taskrt::nats_platform

#endif  // TASKRT_PLATFORM_NATS_BROKER_H_
