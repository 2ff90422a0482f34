// The conformance suite on cooperative x io_uring channel x epoll. The
// cooperative scheduler has one thread: the suite runs once, as "Workers1".
// Where the kernel refuses io_uring, every test skips and says why.

#include "channels/io_uring/io_uring_channel.h"
#include "event_loops/epoll/epoll_loop.h"
#include "schedulers/cooperative/cooperative.h"
#include "tests/conformance/conformance.h"

int main(int argc, char** argv) {
  taskrt::conformance::Backends backends;
  backends.make_scheduler = [](size_t) { return taskrt::NewCooperativeScheduler(); };
  backends.make_channels = [] { return taskrt::NewIoUringChannelFactory(); };
  backends.make_loop = [] { return taskrt::NewEpollLoop(); };
  backends.worker_counts = {1};
  return taskrt::conformance::RunConformanceSuite(argc, argv, std::move(backends));
}
