// The conformance suite on thread_pool x socketpair x io_uring loop. Where
// the kernel refuses io_uring, every test skips and says why.

#include "channels/socketpair/socketpair_channel.h"
#include "event_loops/io_uring/io_uring_loop.h"
#include "schedulers/thread_pool/thread_pool.h"
#include "tests/conformance/conformance.h"

int main(int argc, char** argv) {
  taskrt::conformance::Backends backends;
  backends.make_scheduler = [](size_t workers) { return taskrt::NewThreadPool(workers); };
  backends.make_channels = []() -> absl::StatusOr<std::unique_ptr<taskrt::ChannelFactory>> {
    return taskrt::NewSocketpairChannelFactory();
  };
  backends.make_loop = [] { return taskrt::NewIoUringLoop(); };
  return taskrt::conformance::RunConformanceSuite(argc, argv, std::move(backends));
}
