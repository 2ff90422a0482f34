// The conformance suite on thread_pool x memory x epoll.

#include "channels/memory/memory_channel.h"
#include "event_loops/epoll/epoll_loop.h"
#include "schedulers/thread_pool/thread_pool.h"
#include "tests/conformance/conformance.h"

int main(int argc, char** argv) {
  taskrt::conformance::Backends backends;
  backends.make_scheduler = [](size_t workers) { return taskrt::NewThreadPool(workers); };
  backends.make_channels = []() -> absl::StatusOr<std::unique_ptr<taskrt::ChannelFactory>> {
    return taskrt::NewMemoryChannelFactory();
  };
  backends.make_loop = [] { return taskrt::NewEpollLoop(); };
  return taskrt::conformance::RunConformanceSuite(argc, argv, std::move(backends));
}
