// Fork-join jobs over every scheduler, with oneTBB's task_group as a
// competitor and plain serial code as the floor:
//   fork_join_fib30     fib(30), every call with n >= 2 forks *both*
//                       recursive calls and waits (no cutoff)
//   spawn_1m_outside    1,000,000 empty tasks spawned from outside the pool,
//                       then waited for
//   chained_spawn_100k  a chain of 100,000 tasks, each spawning the next
//                       from inside the pool
// Rows are "<scheduler>(<workers>)"; oneTBB runs in a task_arena of the same
// concurrency (its arena counts the calling thread as one of its threads).

#include <atomic>
#include <memory>
#include <new>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "backends/registry.h"
#include "benchmark/benchmark.h"
#include "benchmarks/job_registry.h"
#include "benchmarks/runtime_counters.h"
#include "core/backend.h"
#include "core/task_group.h"
#include "oneapi/tbb/global_control.h"
#include "oneapi/tbb/task_arena.h"
#include "oneapi/tbb/task_group.h"

namespace taskrt {
namespace {

constexpr int kFibN = 30;
constexpr int kFibExpected = 832040;
constexpr int kOutsideSpawns = 1000000;
constexpr int kChainLength = 100000;

struct SchedulerSpec {
  const SchedulerDescriptor* descriptor;
  size_t workers;
};

int SerialFib(int n) { return n < 2 ? n : SerialFib(n - 1) + SerialFib(n - 2); }

int ForkingFib(Scheduler& scheduler, int n) {
  if (n < 2) return n;
  int a = 0;
  int b = 0;
  TaskGroup group(scheduler);
  group.Spawn([&] { a = ForkingFib(scheduler, n - 1); }).IgnoreError();
  group.Spawn([&] { b = ForkingFib(scheduler, n - 2); }).IgnoreError();
  group.Wait();
  return a + b;
}

int TbbFib(int n) {
  if (n < 2) return n;
  int a = 0;
  int b = 0;
  tbb::task_group group;
  group.run([&] { a = TbbFib(n - 1); });
  group.run([&] { b = TbbFib(n - 2); });
  group.wait();
  return a + b;
}

std::unique_ptr<Scheduler> Make(benchmark::State& state, const SchedulerSpec& spec) {
  absl::StatusOr<std::unique_ptr<Scheduler>> scheduler =
      spec.descriptor->create(BackendOptions{.workers = static_cast<int>(spec.workers)});
  if (!scheduler.ok()) {
    state.SkipWithError(scheduler.status().ToString().c_str());
    return nullptr;
  }
  return *std::move(scheduler);
}

void Fib(benchmark::State& state, const SchedulerSpec& spec) {
  std::unique_ptr<Scheduler> scheduler = Make(state, spec);
  if (scheduler == nullptr) return;
  const SchedulerMetrics before = scheduler->metrics();
  for (auto _ : state) {
    int result = 0;
    TaskGroup root(*scheduler);
    root.Spawn([&] { result = ForkingFib(*scheduler, kFibN); }).IgnoreError();
    root.Wait();
    if (result != kFibExpected) state.SkipWithError("wrong fib result");
  }
  bench::ReportSchedulerMetrics(state, *scheduler, before);
}

// Runs `body` in a oneTBB arena of `threads`, then joins oneTBB's worker
// threads: left alone they keep spinning after the job and would steal CPU
// from whichever benchmark runs next.
template <typename Body>
void WithTbbArena(int threads, Body body) {
  tbb::task_scheduler_handle handle{tbb::attach{}};
  {
    tbb::task_arena arena(threads);
    body(arena);
  }
  tbb::finalize(handle, std::nothrow);
}

void FibTbb(benchmark::State& state, int threads) {
  WithTbbArena(threads, [&](tbb::task_arena& arena) {
    for (auto _ : state) {
      int result = arena.execute([] { return TbbFib(kFibN); });
      if (result != kFibExpected) state.SkipWithError("wrong fib result");
    }
  });
}

void FibSerial(benchmark::State& state) {
  for (auto _ : state) {
    int n = kFibN;
    benchmark::DoNotOptimize(n);
    int result = SerialFib(n);
    benchmark::DoNotOptimize(result);
  }
}

void SpawnOutside(benchmark::State& state, const SchedulerSpec& spec) {
  std::unique_ptr<Scheduler> scheduler = Make(state, spec);
  if (scheduler == nullptr) return;
  const SchedulerMetrics before = scheduler->metrics();
  for (auto _ : state) {
    std::atomic<int> ran{0};
    TaskGroup group(*scheduler);
    for (int i = 0; i < kOutsideSpawns; ++i) {
      group.Spawn([&ran] { ran.fetch_add(1, std::memory_order_relaxed); }).IgnoreError();
    }
    group.Wait();
    if (ran.load() != kOutsideSpawns) state.SkipWithError("lost tasks");
  }
  bench::ReportSchedulerMetrics(state, *scheduler, before);
}

void SpawnOutsideTbb(benchmark::State& state, int threads) {
  WithTbbArena(threads, [&](tbb::task_arena& arena) {
    for (auto _ : state) {
      std::atomic<int> ran{0};
      arena.execute([&] {
        tbb::task_group group;
        for (int i = 0; i < kOutsideSpawns; ++i) {
          group.run([&ran] { ran.fetch_add(1, std::memory_order_relaxed); });
        }
        group.wait();
      });
      if (ran.load() != kOutsideSpawns) state.SkipWithError("lost tasks");
    }
  });
}

void ChainLink(TaskGroup& group, int remaining) {
  if (remaining == 0) return;
  group.Spawn([&group, remaining] { ChainLink(group, remaining - 1); }).IgnoreError();
}

void ChainedSpawn(benchmark::State& state, const SchedulerSpec& spec) {
  std::unique_ptr<Scheduler> scheduler = Make(state, spec);
  if (scheduler == nullptr) return;
  const SchedulerMetrics before = scheduler->metrics();
  for (auto _ : state) {
    TaskGroup group(*scheduler);
    ChainLink(group, kChainLength);
    group.Wait();
  }
  bench::ReportSchedulerMetrics(state, *scheduler, before);
}

void TbbChainLink(tbb::task_group& group, int remaining) {
  if (remaining == 0) return;
  group.run([&group, remaining] { TbbChainLink(group, remaining - 1); });
}

void ChainedSpawnTbb(benchmark::State& state, int threads) {
  WithTbbArena(threads, [&](tbb::task_arena& arena) {
    for (auto _ : state) {
      arena.execute([] {
        tbb::task_group group;
        TbbChainLink(group, kChainLength);
        group.wait();
      });
    }
  });
}

void Register() {
  // Every scheduler that runs as many workers as asked, on one and two.
  static const auto* specs = [] {
    auto* specs = new std::vector<SchedulerSpec>;
    for (const SchedulerDescriptor* descriptor : SchedulersWith({.honours_worker_count = true})) {
      for (size_t workers : {1, 2}) specs->push_back({descriptor, workers});
    }
    return specs;
  }();
  auto row = [](const std::string& job, const std::string& backend) { return job + "/" + backend; };
  auto label = [](const SchedulerSpec& spec) {
    return std::string(spec.descriptor->name) + "(" + std::to_string(spec.workers) + ")";
  };
  for (const SchedulerSpec& spec : *specs) {
    bench::AddJob(row("fork_join_fib30", label(spec)),
                  [&spec](benchmark::State& s) { Fib(s, spec); })
        ->UseRealTime()
        ->Unit(benchmark::kMillisecond)
        ->Iterations(bench::Iterations(2));
    if (spec.workers == 1) continue;  // the two jobs below compare 2 workers
    bench::AddJob(row("spawn_1m_outside", label(spec)),
                  [&spec](benchmark::State& s) { SpawnOutside(s, spec); })
        ->UseRealTime()
        ->Unit(benchmark::kMillisecond)
        ->Iterations(bench::Iterations(1));
    bench::AddJob(row("chained_spawn_100k", label(spec)),
                  [&spec](benchmark::State& s) { ChainedSpawn(s, spec); })
        ->UseRealTime()
        ->Unit(benchmark::kMillisecond)
        ->Iterations(bench::Iterations(3));
  }
  for (int threads : {1, 2}) {
    const std::string tbb = "oneTBB(" + std::to_string(threads) + ")";
    bench::AddJob(row("fork_join_fib30", tbb),
                  [threads](benchmark::State& s) { FibTbb(s, threads); })
        ->UseRealTime()
        ->Unit(benchmark::kMillisecond)
        ->Iterations(bench::Iterations(2));
  }
  bench::AddJob("spawn_1m_outside/oneTBB(2)", [](benchmark::State& s) { SpawnOutsideTbb(s, 2); })
      ->UseRealTime()
      ->Unit(benchmark::kMillisecond)
      ->Iterations(bench::Iterations(1));
  bench::AddJob("chained_spawn_100k/oneTBB(2)", [](benchmark::State& s) { ChainedSpawnTbb(s, 2); })
      ->UseRealTime()
      ->Unit(benchmark::kMillisecond)
      ->Iterations(bench::Iterations(3));
  bench::AddJob("fork_join_fib30/raw_serial", FibSerial)
      ->UseRealTime()
      ->Unit(benchmark::kMillisecond)
      ->Iterations(bench::Iterations(2));
}

TASKRT_BENCHMARK_JOBS(Register);

}  // namespace
}  // namespace taskrt
