// The conformance suite's channel, task, event-loop and blocking groups on
// thread_pool x socketpair x epoll, with the channel's system calls failing
// at random (tests/faults/syscall_faults.h).

#include "channels/socketpair/socketpair_channel.h"
#include "event_loops/epoll/epoll_loop.h"
#include "schedulers/thread_pool/thread_pool.h"
#include "tests/conformance/conformance.h"
#include "tests/faults/syscall_faults.h"

int main(int argc, char** argv) {
  taskrt::conformance::Backends backends;
  backends.make_scheduler = [](size_t workers) { return taskrt::NewThreadPool(workers); };
  backends.make_channels = []() -> absl::StatusOr<std::unique_ptr<taskrt::ChannelFactory>> {
    return taskrt::NewSocketpairChannelFactory();
  };
  backends.make_loop = [] { return taskrt::NewEpollLoop(); };
  return taskrt::faults::RequireFaultsInjected(
      taskrt::conformance::RunConformanceSuite(argc, argv, std::move(backends)));
}
