// Kore round trip: the owner writes 8 bytes, the task echoes them back, and
// the owner's bound callback receives them on the event loop. One benchmark
// per scheduler x channel pair; compare against round_trip/raw_socketpair
// (baselines.cc), measured in the same run.

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "benchmark/benchmark.h"
#include "benchmarks/job_registry.h"
#include "channels/socketpair/socketpair_channel.h"
#include "core/task.h"
#include "event_loops/epoll/epoll_loop.h"
#include "schedulers/cooperative/cooperative.h"
#include "schedulers/thread_pool/thread_pool.h"
#include "schedulers/work_stealing/work_stealing.h"

namespace taskrt {
namespace {

struct BackendPair {
  std::string name;
  std::function<absl::StatusOr<std::unique_ptr<Scheduler>>()> make_scheduler;
  std::function<absl::StatusOr<std::unique_ptr<ChannelFactory>>()> make_channels;
};

void KoreRoundTrip(benchmark::State& state, const BackendPair& backends) {
  absl::StatusOr<std::unique_ptr<Scheduler>> scheduler = backends.make_scheduler();
  absl::StatusOr<std::unique_ptr<EventLoop>> loop = NewEpollLoop();
  absl::StatusOr<std::unique_ptr<ChannelFactory>> made_channels = backends.make_channels();
  for (const absl::Status& status : {scheduler.status(), loop.status(), made_channels.status()}) {
    if (!status.ok()) {
      state.SkipWithError(status.ToString().c_str());
      return;
    }
  }
  std::unique_ptr<ChannelFactory> channels = *std::move(made_channels);
  absl::StatusOr<std::unique_ptr<Task>> task = Task::Create([](TaskContext& self) {
    uint64_t value;
    while (true) {
      absl::StatusOr<size_t> n = self.Read(absl::MakeSpan(reinterpret_cast<char*>(&value), 8));
      if (!n.ok()) return 0;  // the owner closed: done
      if (!self.Write(absl::MakeConstSpan(reinterpret_cast<const char*>(&value), 8)).ok()) return 1;
    }
  });
  uint64_t echoed = 0;
  bool got_reply = false;
  (*task)
      ->BindCallback([&](Task& t) {
        while (t.TryRead(absl::MakeSpan(reinterpret_cast<char*>(&echoed), 8)).ok())
          got_reply = true;
      })
      .IgnoreError();
  TaskEnvironment env{scheduler->get(), channels.get(), loop->get(), {}};
  if (!(*task)->Run(env).ok()) {
    state.SkipWithError("task did not run");
    return;
  }
  uint64_t value = 0;
  for (auto _ : state) {
    ++value;
    got_reply = false;
    if (!(*task)->Write(absl::MakeConstSpan(reinterpret_cast<const char*>(&value), 8)).ok()) {
      state.SkipWithError("write failed");
      break;
    }
    while (!got_reply) (*loop)->RunOnce(absl::InfiniteDuration()).IgnoreError();
    if (echoed != value) {
      state.SkipWithError("echo mismatch");
      break;
    }
  }
  task->reset();  // closes the channel: the entry's read ends
  (*scheduler)->Shutdown().IgnoreError();
}

const std::vector<BackendPair>& Pairs() {
  static const auto* pairs = new std::vector<BackendPair>{
      {"thread_pool+socketpair", [] { return NewThreadPool(2); }, NewSocketpairChannelFactory},
      {"work_stealing+socketpair", [] { return NewWorkStealingPool(2); },
       NewSocketpairChannelFactory},
      {"cooperative+socketpair", [] { return NewCooperativeScheduler(); },
       NewSocketpairChannelFactory},
  };
  return *pairs;
}

void Register() {
  for (const BackendPair& pair : Pairs()) {
    bench::AddJob(("round_trip/kore:" + pair.name), [&pair](benchmark::State& state) {
      KoreRoundTrip(state, pair);
    })->UseRealTime();
  }
}

TASKRT_BENCHMARK_JOBS(Register);

}  // namespace
}  // namespace taskrt
