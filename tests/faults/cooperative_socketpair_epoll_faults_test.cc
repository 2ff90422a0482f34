// The conformance suite's channel, task, event-loop and blocking groups on
// cooperative x socketpair x epoll, with the channel's system calls failing
// at random (tests/faults/syscall_faults.h). One thread: "Workers1" only.

#include "channels/socketpair/socketpair_channel.h"
#include "event_loops/epoll/epoll_loop.h"
#include "schedulers/cooperative/cooperative.h"
#include "tests/conformance/conformance.h"
#include "tests/faults/syscall_faults.h"

int main(int argc, char** argv) {
  taskrt::conformance::Backends backends;
  backends.make_scheduler = [](size_t) { return taskrt::NewCooperativeScheduler(); };
  backends.make_channels = []() -> absl::StatusOr<std::unique_ptr<taskrt::ChannelFactory>> {
    return taskrt::NewSocketpairChannelFactory();
  };
  backends.make_loop = [] { return taskrt::NewEpollLoop(); };
  backends.worker_counts = {1};
  return taskrt::faults::RequireFaultsInjected(
      taskrt::conformance::RunConformanceSuite(argc, argv, std::move(backends)));
}
