#ifndef TASKRT_SCHEDULERS_NATS_WORKERS_TEST_WORKER_H_
#define TASKRT_SCHEDULERS_NATS_WORKERS_TEST_WORKER_H_

// Worker processes for tests: the test binary started again in worker mode,
// so that a worker has the same entries registered as the owner.
//
// StartTestWorker starts this executable with `arguments` and SIGTERM
// blocked in it; RunTestWorker, the worker mode's main, unblocks SIGTERM
// once its handler is in place. A stop sent as soon as the worker exists
// therefore waits for the handler instead of killing the worker, and a
// worker ends with 0 on SIGTERM only if RunWorker returned OK: a test that
// checks the exit status sees a sanitizer's report in a worker too.

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "platform/process/child_process.h"

namespace taskrt {

// Starts this executable (/proc/self/exe) with `arguments` after its name,
// SIGTERM blocked.
absl::StatusOr<std::unique_ptr<ChildProcess>> StartTestWorker(std::vector<std::string> arguments);

struct TestWorkerOptions {
  std::string url;        // the broker's
  std::string scheduler;  // the local scheduler entries run on, by name
  int slots = 4;
  absl::Duration ack_wait = absl::ZeroDuration();  // zero: the queue's default; checked as RunWorker checks it
};

// Worker mode: runs jobs until SIGTERM. Returns the process's exit status:
// 0 once stopped with RunWorker OK, 1 when RunWorker failed, 2 when the
// scheduler cannot be made; a failure is printed on stderr.
int RunTestWorker(const TestWorkerOptions& options);

}  // namespace taskrt

#endif  // TASKRT_SCHEDULERS_NATS_WORKERS_TEST_WORKER_H_
