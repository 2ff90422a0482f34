// Kore round trip: the owner writes 8 bytes, the task echoes them back, and
// the owner's bound callback receives them on the event loop. One benchmark
// per registered scheduler (two workers where it honours a count), on Kore's
// own channel and loop (the registry's Defaults()); compare against
// round_trip/raw_socketpair (baselines.cc), measured in the same run.

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "backends/registry.h"
#include "benchmark/benchmark.h"
#include "benchmarks/job_registry.h"
#include "core/backend.h"
#include "core/task.h"

namespace taskrt {
namespace {

struct BackendPair {
  std::string name;
  const SchedulerDescriptor* scheduler;
};

void KoreRoundTrip(benchmark::State& state, const BackendPair& backends) {
  absl::StatusOr<std::unique_ptr<Scheduler>> scheduler =
      backends.scheduler->create(BackendOptions{.workers = 2});
  absl::StatusOr<std::unique_ptr<EventLoop>> loop = NewLoopNamed(Defaults().loop);
  absl::StatusOr<std::unique_ptr<ChannelFactory>> made_channels =
      NewChannelFactoryNamed(Defaults().channel);
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
  static const auto* pairs = [] {
    auto* pairs = new std::vector<BackendPair>;
    for (const SchedulerDescriptor* scheduler : Schedulers()) {
      pairs->push_back({absl::StrCat(scheduler->name, "+", Defaults().channel), scheduler});
    }
    return pairs;
  }();
  return *pairs;
}

void Register() {
  for (const BackendPair& pair : Pairs()) {
    bench::AddJob(("round_trip/kore:" + pair.name), [&pair](benchmark::State& state) {
      KoreRoundTrip(state, pair);
    })
        ->UseRealTime()
        ->Iterations(bench::Iterations(10000));
  }
}

TASKRT_BENCHMARK_JOBS(Register);

}  // namespace
}  // namespace taskrt
