#ifndef TASKRT_BACKENDS_REGISTRY_H_
#define TASKRT_BACKENDS_REGISTRY_H_

// The runtime's backends by name, for command-line flags and for the tests,
// fuzzers and benchmarks that run over every backend: the one list of them.
//
//   schedulers  thread_pool, work_stealing, cooperative
//   channels    socketpair, memory, io_uring
//   loops       epoll, io_uring
//
// An unknown name is kInvalidArgument listing the known ones; a backend the
// kernel refuses (io_uring under seccomp) is the backend's kUnavailable.

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "core/channel.h"
#include "core/event_loop.h"
#include "core/scheduler.h"

namespace taskrt {

const std::vector<std::string>& SchedulerNames();
const std::vector<std::string>& ChannelNames();
const std::vector<std::string>& LoopNames();

// `workers` is ignored by the cooperative scheduler (one thread).
absl::StatusOr<std::unique_ptr<Scheduler>> NewSchedulerNamed(absl::string_view name, int workers);
absl::StatusOr<std::unique_ptr<ChannelFactory>> NewChannelFactoryNamed(absl::string_view name);
absl::StatusOr<std::unique_ptr<EventLoop>> NewLoopNamed(absl::string_view name);

// The three together, owned; what a server or a test needs to run tasks.
// Members are destroyed scheduler first: its shutdown waits for every entry,
// which may still use its channel while it finishes a cancelled job.
struct Backends {
  std::unique_ptr<EventLoop> loop;
  std::unique_ptr<ChannelFactory> channels;
  std::unique_ptr<Scheduler> scheduler;
  std::string name;  // "<scheduler>_<channel>_<loop>"
};
absl::StatusOr<Backends> NewBackends(absl::string_view scheduler, absl::string_view channel,
                                     absl::string_view loop, int workers);

}  // namespace taskrt

#endif  // TASKRT_BACKENDS_REGISTRY_H_
