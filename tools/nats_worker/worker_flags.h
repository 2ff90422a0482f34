#ifndef TASKRT_TOOLS_NATS_WORKER_WORKER_FLAGS_H_
#define TASKRT_TOOLS_NATS_WORKER_WORKER_FLAGS_H_

// nats_worker's command line, parsed apart from the process so that it can
// be tested: no flag reads the environment or the machine by itself.

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"

namespace taskrt::nats_worker {

inline constexpr char kUsage[] =
    "usage: nats_worker [--url=nats://HOST:PORT] [--slots=N] [--scheduler=NAME]\n"
    "                   [--ack_wait_ms=N]\n"
    "Runs the tasks that owners (tools/http_front --scheduler=nats_workers) queue on a\n"
    "NATS broker with JetStream, until SIGTERM or SIGINT.\n"
    "  --url          the broker every owner and worker shares (default $TASKRT_NATS_URL)\n"
    "  --slots        tasks run at once (default: the number of CPUs)\n"
    "  --scheduler    the local scheduler entries run on (default and the list: below)\n"
    "  --ack_wait_ms  how long the broker waits for a silent worker before it hands its\n"
    "                 task to another; owners and workers must agree (default 30000)\n";

struct WorkerFlags {
  std::string url;
  int slots = 1;
  std::string scheduler;
  int ack_wait_ms = 30'000;
  bool help = false;  // --help or -h: print the usage, run nothing
};

// `args` without the program's name. `env_url` is $TASKRT_NATS_URL (null or
// empty when unset), `cpus` and `default_scheduler` the defaults of --slots
// and --scheduler. kInvalidArgument, saying which argument, for an unknown
// flag, a bad value, or no broker at all.
absl::StatusOr<WorkerFlags> ParseWorkerFlags(absl::Span<const char* const> args,
                                             const char* env_url, int cpus,
                                             absl::string_view default_scheduler);

}  // namespace taskrt::nats_worker

#endif  // TASKRT_TOOLS_NATS_WORKER_WORKER_FLAGS_H_
