#include "schedulers/nats_workers/test_worker.h"

#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <utility>

#include "absl/status/status.h"
#include "backends/registry.h"
#include "schedulers/nats_workers/nats_workers.h"

namespace taskrt {
namespace {

std::atomic<bool> worker_stop{false};

void SetTerminateBlocked(bool blocked, sigset_t* before) {
  sigset_t terminate;
  sigemptyset(&terminate);
  sigaddset(&terminate, SIGTERM);
  pthread_sigmask(blocked ? SIG_BLOCK : SIG_UNBLOCK, &terminate, before);
}

}  // namespace

absl::StatusOr<std::unique_ptr<ChildProcess>> StartTestWorker(std::vector<std::string> arguments) {
  std::string self(4096, '\0');
  const ssize_t length = readlink("/proc/self/exe", self.data(), self.size());
  if (length <= 0 || static_cast<size_t>(length) >= self.size()) {
    return absl::InternalError("test worker: cannot read /proc/self/exe");
  }
  self.resize(static_cast<size_t>(length));
  arguments.insert(arguments.begin(), std::move(self));
  // The child inherits the mask through fork and exec.
  sigset_t before;
  SetTerminateBlocked(true, &before);
  absl::StatusOr<std::unique_ptr<ChildProcess>> child = ChildProcess::Start(std::move(arguments));
  pthread_sigmask(SIG_SETMASK, &before, nullptr);
  return child;
}

int RunTestWorker(const TestWorkerOptions& options) {
  signal(SIGTERM, [](int) { worker_stop.store(true); });
  SetTerminateBlocked(false, nullptr);
  absl::StatusOr<std::unique_ptr<Scheduler>> local =
      NewSchedulerNamed(options.scheduler, options.slots);
  if (!local.ok()) {
    std::fprintf(stderr, "test worker: %s\n", local.status().ToString().c_str());
    return 2;
  }
  NatsWorkerOptions worker;
  worker.queue.url = options.url;
  if (options.ack_wait != absl::ZeroDuration()) worker.queue.ack_wait = options.ack_wait;
  worker.scheduler = local->get();
  worker.slots = options.slots;
  worker.stop = &worker_stop;
  worker.log = stderr;
  const absl::Status status = RunWorker(worker);
  if (!status.ok()) std::fprintf(stderr, "test worker: %s\n", status.ToString().c_str());
  return status.ok() ? 0 : 1;
}

}  // namespace taskrt
