#include "backends/registry.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "channels/io_uring/io_uring_channel.h"
#include "channels/memory/memory_channel.h"
#include "channels/socketpair/socketpair_channel.h"
#include "event_loops/epoll/epoll_loop.h"
#include "event_loops/io_uring/io_uring_loop.h"
#include "schedulers/cooperative/cooperative.h"
#include "schedulers/thread_pool/thread_pool.h"
#include "schedulers/work_stealing/work_stealing.h"

namespace taskrt {
namespace {

absl::Status Unknown(absl::string_view kind, absl::string_view name,
                     const std::vector<std::string>& known) {
  return absl::InvalidArgumentError(absl::StrCat("unknown ", kind, " \"", name,
                                                 "\" (known: ", absl::StrJoin(known, ", "), ")"));
}

}  // namespace

const std::vector<std::string>& SchedulerNames() {
  static const auto* names = new std::vector<std::string>{"thread_pool", "work_stealing", "cooperative"};
  return *names;
}
const std::vector<std::string>& ChannelNames() {
  static const auto* names = new std::vector<std::string>{"socketpair", "memory", "io_uring"};
  return *names;
}
const std::vector<std::string>& LoopNames() {
  static const auto* names = new std::vector<std::string>{"epoll", "io_uring"};
  return *names;
}

absl::StatusOr<std::unique_ptr<Scheduler>> NewSchedulerNamed(absl::string_view name, int workers) {
  if (name == "cooperative") return NewCooperativeScheduler();
  if (workers <= 0) {
    return absl::InvalidArgumentError(absl::StrCat("scheduler \"", name, "\" needs at least one worker, got ", workers));
  }
  if (name == "thread_pool") return NewThreadPool(workers);
  if (name == "work_stealing") return NewWorkStealingPool(workers);
  return Unknown("scheduler", name, SchedulerNames());
}

absl::StatusOr<std::unique_ptr<ChannelFactory>> NewChannelFactoryNamed(absl::string_view name) {
  if (name == "socketpair") return NewSocketpairChannelFactory();
  if (name == "memory") return NewMemoryChannelFactory();
  if (name == "io_uring") return NewIoUringChannelFactory();
  return Unknown("channel", name, ChannelNames());
}

absl::StatusOr<std::unique_ptr<EventLoop>> NewLoopNamed(absl::string_view name) {
  if (name == "epoll") return NewEpollLoop();
  if (name == "io_uring") return NewIoUringLoop();
  return Unknown("loop", name, LoopNames());
}

absl::StatusOr<Backends> NewBackends(absl::string_view scheduler, absl::string_view channel,
                                     absl::string_view loop, int workers) {
  Backends backends;
  absl::StatusOr<std::unique_ptr<Scheduler>> made_scheduler = NewSchedulerNamed(scheduler, workers);
  if (!made_scheduler.ok()) return made_scheduler.status();
  absl::StatusOr<std::unique_ptr<ChannelFactory>> made_channels = NewChannelFactoryNamed(channel);
  if (!made_channels.ok()) return made_channels.status();
  absl::StatusOr<std::unique_ptr<EventLoop>> made_loop = NewLoopNamed(loop);
  if (!made_loop.ok()) return made_loop.status();
  backends.scheduler = *std::move(made_scheduler);
  backends.channels = *std::move(made_channels);
  backends.loop = *std::move(made_loop);
  backends.name = absl::StrCat(scheduler, "_", channel, "_", loop);
  return backends;
}

}  // namespace taskrt
