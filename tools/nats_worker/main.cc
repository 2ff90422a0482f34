// nats_worker: runs the HTTP front's jobs (and any entry it registers) for
// owners on other processes or machines, through a NATS broker.
//
//   nats_worker --url=nats://10.0.0.5:4222 [--slots=N]   (--help for more)
//
// SIGTERM or SIGINT stops it: it finishes taking jobs, and exits 0.

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "backends/registry.h"
#include "core/scheduler.h"
#include "platform/nats/broker.h"
#include "schedulers/nats_workers/nats_workers.h"
#include "tools/http_front/job_entry.h"
#include "tools/nats_worker/worker_flags.h"

namespace {

std::atomic<bool> stop{false};

void OnStopSignal(int) { stop.store(true); }

int Fail(const std::string& message, int code = 1) {
  std::fprintf(stderr, "nats_worker: %s\n", message.c_str());
  return code;
}

}  // namespace

int main(int argc, char** argv) {
  const long cpus = sysconf(_SC_NPROCESSORS_ONLN);
  const std::vector<const char*> args(argv + 1, argv + argc);
  absl::StatusOr<taskrt::nats_worker::WorkerFlags> flags = taskrt::nats_worker::ParseWorkerFlags(
      args,
      std::getenv(taskrt::nats_platform::kBrokerUrlVariable), static_cast<int>(cpus),
      taskrt::Defaults().scheduler);
  if (!flags.ok()) return Fail(std::string(flags.status().message()), 2);
  if (flags->help) {
    std::fputs(taskrt::nats_worker::kUsage, stdout);
    std::printf("Schedulers (default %s):\n", std::string(taskrt::Defaults().scheduler).c_str());
    for (const taskrt::SchedulerDescriptor* scheduler : taskrt::Schedulers()) {
      std::printf("  %-16s %s\n", std::string(scheduler->name).c_str(),
                  std::string(scheduler->summary).c_str());
    }
    return 0;
  }
  absl::StatusOr<const taskrt::SchedulerDescriptor*> found = taskrt::FindScheduler(flags->scheduler);
  if (!found.ok()) return Fail(absl::StrCat("--scheduler: ", found.status().message()), 2);
  if ((*found)->capabilities.runs_named_entries_elsewhere) {
    return Fail(absl::StrCat("--scheduler: ", flags->scheduler,
                             " runs entries in other processes; a worker runs them here"),
                2);
  }
  if (absl::Status registered = taskrt::http::RegisterHttpFrontEntries(); !registered.ok()) {
    return Fail(registered.ToString());
  }
  absl::StatusOr<std::unique_ptr<taskrt::Scheduler>> scheduler =
      taskrt::NewSchedulerNamed(flags->scheduler, flags->slots);
  if (!scheduler.ok()) return Fail(scheduler.status().ToString());

  struct sigaction action = {};
  action.sa_handler = &OnStopSignal;
  sigemptyset(&action.sa_mask);
  sigaction(SIGTERM, &action, nullptr);
  sigaction(SIGINT, &action, nullptr);

  taskrt::NatsWorkerOptions options;
  options.queue.url = flags->url;
  options.queue.ack_wait = absl::Milliseconds(flags->ack_wait_ms);
  options.scheduler = scheduler->get();
  options.slots = flags->slots;
  options.stop = &stop;
  options.log = stderr;
  const absl::Status ran = taskrt::RunWorker(options);
  if (absl::Status shut = (*scheduler)->Shutdown(); !shut.ok() && ran.ok()) {
    return Fail(shut.ToString());
  }
  return ran.ok() ? 0 : Fail(ran.ToString());
}
