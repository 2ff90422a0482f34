// The conformance suite on cooperative x socketpair x io_uring loop: the
// loop waits through the stackful task's context. The cooperative scheduler
// has one thread: the suite runs once, as "Workers1". Where the kernel
// refuses io_uring, every test skips and says why.

#include "channels/socketpair/socketpair_channel.h"
#include "event_loops/io_uring/io_uring_loop.h"
#include "schedulers/cooperative/cooperative.h"
#include "tests/conformance/conformance.h"

int main(int argc, char** argv) {
  taskrt::conformance::Backends backends;
  backends.make_scheduler = [](size_t) { return taskrt::NewCooperativeScheduler(); };
  backends.make_channels = []() -> absl::StatusOr<std::unique_ptr<taskrt::ChannelFactory>> {
    return taskrt::NewSocketpairChannelFactory();
  };
  backends.make_loop = [] { return taskrt::NewIoUringLoop(); };
  backends.worker_counts = {1};
  return taskrt::conformance::RunConformanceSuite(argc, argv, std::move(backends));
}
