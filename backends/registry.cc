#include "backends/registry.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "channels/io_uring/io_uring_channel.h"
#include "channels/memory/memory_channel.h"
#include "channels/nats/nats_channel.h"
#include "channels/socketpair/socketpair_channel.h"
#include "event_loops/epoll/epoll_loop.h"
#include "event_loops/io_uring/io_uring_loop.h"
#include "schedulers/cooperative/cooperative.h"
#include "schedulers/nats_workers/nats_workers.h"
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

const std::vector<const SchedulerDescriptor*>& RemoteSchedulers() {
  static const auto* list = new std::vector<const SchedulerDescriptor*>{
      &NatsWorkersDescriptor(),
  };
  return *list;
}

const std::vector<const ChannelDescriptor*>& Channels() {
  static const auto* list = new std::vector<const ChannelDescriptor*>{
      &SocketpairChannelDescriptor(),
      &MemoryChannelDescriptor(),
      &IoUringChannelDescriptor(),
      &NatsChannelDescriptor(),
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

template <typename Descriptor>
auto NewNamed(const std::vector<const Descriptor*>& list, absl::string_view kind,
              absl::string_view name, const BackendOptions& options)
    -> decltype(list.front()->create(options)) {
  absl::StatusOr<const Descriptor*> found = Find(list, kind, name);
  if (!found.ok()) return found.status();
  return (*found)->create(options);
}

bool Has(const SchedulerCapabilities& have, const SchedulerCapabilities& wanted) {
  return (!wanted.single_thread_stackful_tasks || have.single_thread_stackful_tasks) &&
         (!wanted.honours_worker_count || have.honours_worker_count) &&
         (!wanted.runs_named_entries_elsewhere || have.runs_named_entries_elsewhere);
}

// Every scheduler, local ones first: what a name is looked up in.
const std::vector<const SchedulerDescriptor*>& AllSchedulers() {
  static const auto* list = [] {
    auto* all = new std::vector<const SchedulerDescriptor*>(Schedulers());
    all->insert(all->end(), RemoteSchedulers().begin(), RemoteSchedulers().end());
    return all;
  }();
  return *list;
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
  return Find(AllSchedulers(), "scheduler", name);
}
absl::StatusOr<const ChannelDescriptor*> FindChannel(absl::string_view name) {
  return Find(Channels(), "channel", name);
}
absl::StatusOr<const EventLoopDescriptor*> FindLoop(absl::string_view name) {
  return Find(EventLoops(), "loop", name);
}

std::vector<const SchedulerDescriptor*> SchedulersWith(const SchedulerCapabilities& wanted) {
  std::vector<const SchedulerDescriptor*> found;
  for (const SchedulerDescriptor* descriptor : AllSchedulers()) {
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
  return NewNamed(AllSchedulers(), "scheduler", name, BackendOptions{.workers = workers});
}

absl::StatusOr<std::unique_ptr<ChannelFactory>> NewChannelFactoryNamed(absl::string_view name) {
  return NewNamed(Channels(), "channel", name, BackendOptions{});
}

absl::StatusOr<std::unique_ptr<EventLoop>> NewLoopNamed(absl::string_view name) {
  return NewNamed(EventLoops(), "loop", name, BackendOptions{});
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
  AppendUsage(out, "schedulers running named entries in other processes", RemoteSchedulers());
  AppendUsage(out, "channels", Channels());
  AppendUsage(out, "event loops", EventLoops());
  return out;
}

absl::StatusOr<Backends> NewBackends(absl::string_view scheduler, absl::string_view channel,
                                     absl::string_view loop, int workers) {
  absl::StatusOr<const SchedulerDescriptor*> scheduler_descriptor = FindScheduler(scheduler);
  if (!scheduler_descriptor.ok()) return scheduler_descriptor.status();
  absl::StatusOr<const ChannelDescriptor*> channel_descriptor = FindChannel(channel);
  if (!channel_descriptor.ok()) return channel_descriptor.status();
  absl::StatusOr<const EventLoopDescriptor*> loop_descriptor = FindLoop(loop);
  if (!loop_descriptor.ok()) return loop_descriptor.status();
  const Combination combination{*scheduler_descriptor, *channel_descriptor, *loop_descriptor};

  absl::StatusOr<std::unique_ptr<Scheduler>> made_scheduler =
      combination.scheduler->create(BackendOptions{.workers = workers});
  if (!made_scheduler.ok()) return made_scheduler.status();
  absl::StatusOr<std::unique_ptr<ChannelFactory>> made_channels =
      combination.channel->create(BackendOptions{});
  if (!made_channels.ok()) return made_channels.status();
  absl::StatusOr<std::unique_ptr<EventLoop>> made_loop = combination.loop->create(BackendOptions{});
  if (!made_loop.ok()) return made_loop.status();

  Backends backends;
  backends.scheduler = *std::move(made_scheduler);
  backends.channels = *std::move(made_channels);
  backends.loop = *std::move(made_loop);
  backends.name = combination.name();
  return backends;
}

}  // namespace taskrt
