#ifndef TASKRT_BACKENDS_REGISTRY_H_
#define TASKRT_BACKENDS_REGISTRY_H_

// The registered backends: the one list that flags, usage texts, the Kore
// facade, tests, fuzzers and benchmarks read. A backend joins by adding its
// descriptor (core/backend.h) to registry.cc and its name to backends.bzl,
// which generates the conformance matrix; a test checks the two agree.
//
// Lookups by name return kInvalidArgument listing the known names; a
// backend the kernel refuses (io_uring under seccomp) is the backend's own
// kUnavailable.

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "core/backend.h"
#include "core/channel.h"
#include "core/event_loop.h"
#include "core/scheduler.h"

namespace taskrt {

// In registration order. Schedulers() are those whose units run in this
// process: every closure, every combination of the conformance matrix and
// the report. RemoteSchedulers() run named entries in other processes
// (SchedulerCapabilities::runs_named_entries_elsewhere) and take no
// closure; they are found by name like the others (FindScheduler,
// NewSchedulerNamed, NewBackends), and listed in BackendUsage().
const std::vector<const SchedulerDescriptor*>& Schedulers();
const std::vector<const SchedulerDescriptor*>& RemoteSchedulers();
const std::vector<const ChannelDescriptor*>& Channels();
const std::vector<const EventLoopDescriptor*>& EventLoops();

std::vector<std::string> SchedulerNames();
std::vector<std::string> ChannelNames();
std::vector<std::string> LoopNames();

absl::StatusOr<const SchedulerDescriptor*> FindScheduler(absl::string_view name);
absl::StatusOr<const ChannelDescriptor*> FindChannel(absl::string_view name);
absl::StatusOr<const EventLoopDescriptor*> FindLoop(absl::string_view name);

// The registered schedulers that have every capability set in `wanted`.
std::vector<const SchedulerDescriptor*> SchedulersWith(const SchedulerCapabilities& wanted);

// Creates a scheduler with `wanted` capabilities: the first registered one
// that has them; kNotFound if none does.
absl::StatusOr<std::unique_ptr<Scheduler>> NewSchedulerWith(const SchedulerCapabilities& wanted,
                                                            const BackendOptions& options = {});

// `workers` is ignored by schedulers that do not honour a worker count.
absl::StatusOr<std::unique_ptr<Scheduler>> NewSchedulerNamed(absl::string_view name, int workers);
absl::StatusOr<std::unique_ptr<ChannelFactory>> NewChannelFactoryNamed(absl::string_view name);
absl::StatusOr<std::unique_ptr<EventLoop>> NewLoopNamed(absl::string_view name);

// One scheduler x channel x loop combination.
struct Combination {
  const SchedulerDescriptor* scheduler;
  const ChannelDescriptor* channel;
  const EventLoopDescriptor* loop;
  std::string name() const;  // "<scheduler>_<channel>_<loop>"
};

// Every combination of the registered backends, schedulers outermost.
std::vector<Combination> Combinations();

// What a caller that names no backend gets: Kore's own arrangement, a
// thread pool of two workers, its socket wire format and epoll.
struct DefaultBackends {
  absl::string_view scheduler;
  absl::string_view channel;
  absl::string_view loop;
  int workers;
};
const DefaultBackends& Defaults();

// Lines for a usage text: each kind's names with their summaries.
std::string BackendUsage();

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
