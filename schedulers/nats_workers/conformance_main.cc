// main() of //schedulers/nats_workers:conformance_<scheduler>_<loop>_test:
// the conformance suite's named-task group (tests/conformance) with this
// backend as the scheduler, against a broker of the run's own and two
// worker processes. A worker is this binary again, started with
// --nats_worker=<url>; it runs entries on --worker_scheduler and has the
// group's entries registered, as the owner has. The owner's loop is
// --event_loop. A worker that does not end cleanly on SIGTERM (a
// sanitizer's report, say) fails the run.

#include <signal.h>
#include <sys/wait.h>

#include <cstdio>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "backends/registry.h"
#include "platform/nats/broker.h"
#include "platform/process/child_process.h"
#include "schedulers/nats_workers/nats_workers.h"
#include "schedulers/nats_workers/test_worker.h"
#include "tests/conformance/conformance.h"

namespace taskrt {
namespace {

constexpr char kWorkerFlag[] = "--nats_worker=";
constexpr char kWorkerSchedulerFlag[] = "--worker_scheduler=";
constexpr char kLoopFlag[] = "--event_loop=";
constexpr int kWorkers = 2;
constexpr int kSlotsPerWorker = 4;

int Main(int argc, char** argv) {
  std::string url;
  std::string worker_scheduler;
  std::string loop_name;
  std::vector<char*> rest;
  for (int i = 0; i < argc; ++i) {
    const absl::string_view argument = argv[i];
    if (i > 0 && absl::StartsWith(argument, kWorkerFlag)) {
      url = std::string(argument.substr(std::strlen(kWorkerFlag)));
    } else if (i > 0 && absl::StartsWith(argument, kWorkerSchedulerFlag)) {
      worker_scheduler = std::string(argument.substr(std::strlen(kWorkerSchedulerFlag)));
    } else if (i > 0 && absl::StartsWith(argument, kLoopFlag)) {
      loop_name = std::string(argument.substr(std::strlen(kLoopFlag)));
    } else {
      rest.push_back(argv[i]);
    }
  }
  if (!url.empty()) {
    return RunTestWorker({.url = url, .scheduler = worker_scheduler, .slots = kSlotsPerWorker});
  }

  absl::StatusOr<const SchedulerDescriptor*> on_workers = FindScheduler(worker_scheduler);
  absl::StatusOr<const EventLoopDescriptor*> loop = FindLoop(loop_name);
  absl::Status found = on_workers.status();
  found.Update(loop.status());
  if (!found.ok()) {
    std::fprintf(stderr, "nats_workers conformance: %s\n(give %s and %s)\n",
                 found.ToString().c_str(), kWorkerSchedulerFlag, kLoopFlag);
    return 2;
  }

  // Without a broker every test skips with the reason (the factory's).
  absl::StatusOr<std::unique_ptr<nats_platform::LocalBroker>> broker =
      nats_platform::LocalBroker::Start();
  std::vector<std::unique_ptr<ChildProcess>> workers;
  if (broker.ok()) {
    for (int i = 0; i < kWorkers; ++i) {
      absl::StatusOr<std::unique_ptr<ChildProcess>> worker =
          StartTestWorker({absl::StrCat(kWorkerFlag, (*broker)->url()),
                           absl::StrCat(kWorkerSchedulerFlag, worker_scheduler)});
      if (!worker.ok()) {
        std::fprintf(stderr, "nats_workers conformance: %s\n", worker.status().ToString().c_str());
        return 1;
      }
      workers.push_back(*std::move(worker));
    }
    std::printf("[ workers  ] %d processes of %d slots, entries on %s\n", kWorkers,
                kSlotsPerWorker, worker_scheduler.c_str());
  } else {
    std::printf("[ workers  ] none: %s\n", broker.status().ToString().c_str());
  }

  // A worker that ended fails every test from then on, saying so, instead
  // of leaving its jobs to the other one or to a hang guard.
  std::string worker_ended;
  conformance::Factories factories;
  factories.make_scheduler =
      [&](size_t) -> absl::StatusOr<std::unique_ptr<Scheduler>> {
    if (!broker.ok()) return broker.status();
    for (size_t i = 0; i < workers.size() && worker_ended.empty(); ++i) {
      if (const std::optional<int> status = workers[i]->TryWait(); status.has_value()) {
        worker_ended = absl::StrCat("worker ", i, " ended with wait status ", *status,
                                    " (its output is above)");
      }
    }
    if (!worker_ended.empty()) return absl::InternalError(worker_ended);
    NatsWorkersOptions options;
    options.url = (*broker)->url();
    return NewNatsWorkersScheduler(options);
  };
  const EventLoopDescriptor* owner_loop = *loop;
  factories.make_loop = [owner_loop] { return owner_loop->create(BackendOptions{}); };
  factories.worker_counts = {1};
  const int rest_count = static_cast<int>(rest.size());
  rest.push_back(nullptr);
  int result = conformance::RunConformanceSuite(rest_count, rest.data(), std::move(factories));

  if (!worker_ended.empty()) {
    std::fprintf(stderr, "nats_workers conformance: %s\n", worker_ended.c_str());
    result = 1;
  }
  for (auto& worker : workers) worker->Signal(SIGTERM);
  for (auto& worker : workers) {
    const int status = worker->Wait();
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
      std::fprintf(stderr, "nats_workers conformance: a worker ended with wait status %d\n",
                   status);
      result = 1;
    }
  }
  return result;
}

}  // namespace
}  // namespace taskrt

int main(int argc, char** argv) { return taskrt::Main(argc, argv); }
