// The conformance suite on thread_pool x io_uring channel x epoll. Where the
// kernel refuses io_uring, every test skips and says why.

#include "channels/io_uring/io_uring_channel.h"
#include "event_loops/epoll/epoll_loop.h"
#include "schedulers/thread_pool/thread_pool.h"
#include "tests/conformance/conformance.h"

int main(int argc, char** argv) {
  taskrt::conformance::Backends backends;
  backends.make_scheduler = [](size_t workers) { return taskrt::NewThreadPool(workers); };
  backends.make_channels = [] { return taskrt::NewIoUringChannelFactory(); };
  backends.make_loop = [] { return taskrt::NewEpollLoop(); };
  return taskrt::conformance::RunConformanceSuite(argc, argv, std::move(backends));
}
