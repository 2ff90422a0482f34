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

const std::vector<const SchedulerDescriptor*>& Schedulers() {
  static const auto* list = new std::vector<const SchedulerDescriptor*>{
      &ThreadPoolDescriptor(),
      &WorkStealingDescriptor(),
      &CooperativeDescriptor(),
  };
  return *list;
}

const std::vector<const ChannelDescriptor*>& Channels() {
  static const auto* list = new std::vector<const ChannelDescriptor*>{
      &SocketpairChannelDescriptor(),
      &MemoryChannelDescriptor(),
      &IoUringChannelDescriptor(),
  };
  return *list;
}

const std::vector<const EventLoopDescriptor*>& EventLoops() {
  static const auto* list = new std::vector<const EventLoopDescriptor*>{
      &EpollLoopDescriptor(),
      &IoUringLoopDescriptor(),
  };
  return *list;
}

const DefaultBackends& Defaults() {
  static const DefaultBackends defaults{
      .scheduler = ThreadPoolDescriptor().name,
      .channel = SocketpairChannelDescriptor().name,
      .loop = EpollLoopDescriptor().name,
      .workers = 2,
  };
  return defaults;
}

namespace {

template <typename Descriptor>
std::vector<std::string> NamesOf(const std::vector<const Descriptor*>& list) {
  std::vector<std::string> names;
  for (const Descriptor* descriptor : list) names.emplace_back(descriptor->name);
  return names;
}

template <typename Descriptor>
absl::StatusOr<const Descriptor*> Find(const std::vector<const Descriptor*>& list,
                                       absl::string_view kind, absl::string_view name) {
  for (const Descriptor* descriptor : list) {
    if (descriptor->name == name) return descriptor;
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "unknown ", kind, " \"", name, "\" (known: ", absl::StrJoin(NamesOf(list), ", "), ")"));
}

bool Has(const SchedulerCapabilities& have, const SchedulerCapabilities& wanted) {
  return (!wanted.single_thread_stackful_tasks || have.single_thread_stackful_tasks) &&
         (!wanted.honours_worker_count || have.honours_worker_count);
}

template <typename Descriptor>
void AppendUsage(std::string& out, absl::string_view kind,
                 const std::vector<const Descriptor*>& list) {
  absl::StrAppend(&out, "  ", kind, ":\n");
  for (const Descriptor* descriptor : list) {
    absl::StrAppend(&out, "    ", descriptor->name, "  ", descriptor->summary, "\n");
  }
}

}  // namespace

std::vector<std::string> SchedulerNames() { return NamesOf(Schedulers()); }
std::vector<std::string> ChannelNames() { return NamesOf(Channels()); }
std::vector<std::string> LoopNames() { return NamesOf(EventLoops()); }

absl::StatusOr<const SchedulerDescriptor*> FindScheduler(absl::string_view name) {
  return Find(Schedulers(), "scheduler", name);
}
absl::StatusOr<const ChannelDescriptor*> FindChannel(absl::string_view name) {
  return Find(Channels(), "channel", name);
}
absl::StatusOr<const EventLoopDescriptor*> FindLoop(absl::string_view name) {
  return Find(EventLoops(), "loop", name);
}

std::vector<const SchedulerDescriptor*> SchedulersWith(const SchedulerCapabilities& wanted) {
  std::vector<const SchedulerDescriptor*> found;
  for (const SchedulerDescriptor* descriptor : Schedulers()) {
    if (Has(descriptor->capabilities, wanted)) found.push_back(descriptor);
  }
  return found;
}

absl::StatusOr<std::unique_ptr<Scheduler>> NewSchedulerWith(const SchedulerCapabilities& wanted,
                                                            const BackendOptions& options) {
  std::vector<const SchedulerDescriptor*> found = SchedulersWith(wanted);
  if (found.empty()) {
    return absl::NotFoundError("no registered scheduler has the capabilities asked for");
  }
  return found.front()->create(options);
}

absl::StatusOr<std::unique_ptr<Scheduler>> NewSchedulerNamed(absl::string_view name, int workers) {
  absl::StatusOr<const SchedulerDescriptor*> found = FindScheduler(name);
  if (!found.ok()) return found.status();
  return (*found)->create(BackendOptions{.workers = workers});
}

absl::StatusOr<std::unique_ptr<ChannelFactory>> NewChannelFactoryNamed(absl::string_view name) {
  absl::StatusOr<const ChannelDescriptor*> found = FindChannel(name);
  if (!found.ok()) return found.status();
  return (*found)->create(BackendOptions{});
}

absl::StatusOr<std::unique_ptr<EventLoop>> NewLoopNamed(absl::string_view name) {
  absl::StatusOr<const EventLoopDescriptor*> found = FindLoop(name);
  if (!found.ok()) return found.status();
  return (*found)->create(BackendOptions{});
}

std::string Combination::name() const {
  return absl::StrCat(scheduler->name, "_", channel->name, "_", loop->name);
}

std::vector<Combination> Combinations() {
  std::vector<Combination> all;
  for (const SchedulerDescriptor* scheduler : Schedulers()) {
    for (const ChannelDescriptor* channel : Channels()) {
      for (const EventLoopDescriptor* loop : EventLoops()) {
        all.push_back(Combination{scheduler, channel, loop});
      }
    }
  }
  return all;
}

std::string BackendUsage() {
  std::string out;
  AppendUsage(out, "schedulers", Schedulers());
  AppendUsage(out, "channels", Channels());
  AppendUsage(out, "event loops", EventLoops());
  return out;
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
