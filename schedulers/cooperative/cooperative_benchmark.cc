// Stackful tasks on the cooperative scheduler, beside Boost.Fiber's rows
// (benchmarks/boost_fiber.cc) and plain baselines measured in the same run;
// linked into //benchmarks:compare:
//   yield_switch            two tasks on one thread, both yielding; one
//                           iteration = one yield by the measuring task and
//                           the other task's yield back (A -> B -> A).
//                           raw_context_switch is the floor: two bare
//                           FiberContext switches (thread -> fiber -> thread).
//   spawn_join              spawn one empty stackful task and wait for it,
//                           from inside a task; raw_std_thread is a thread
//                           per task, for scale
//   same_thread_ping_pong   one round trip between two tasks on the same
//                           thread over a pair of each registered channel,
//                           both tasks running the same relay loop (Relay
//                           below)
//   suspended_100k          100,000 tasks that each suspend (Parker::Park),
//                           then are all woken; reports the resident memory
//                           they added while suspended (counter rss_MiB) and
//                           the time to spawn, suspend and finish them all.
//                           Stacks are 64 KiB without guard pages: Linux's
//                           default vm.max_map_count (65530) allows about
//                           32,000 guarded stacks per process.
// The measuring loop runs inside a task of the scheduler under test; the
// benchmark thread waits. Times are real time.

#include "schedulers/cooperative/cooperative.h"

#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "backends/registry.h"
#include "benchmark/benchmark.h"
#include "benchmarks/job_registry.h"
#include "core/backend.h"
#include "core/channel.h"
#include "core/execution_context.h"
#include "core/task_group.h"
#include "schedulers/cooperative/fiber.h"
#include "schedulers/cooperative/stack.h"

namespace taskrt {
namespace {

// Runs `body` as a task of a fresh cooperative scheduler and waits for it.
bool RunInTask(benchmark::State& state, const CooperativeOptions& options,
               const std::function<void(Scheduler&)>& body) {
  absl::StatusOr<std::unique_ptr<Scheduler>> scheduler = NewCooperativeScheduler(options);
  if (!scheduler.ok()) {
    state.SkipWithError(scheduler.status().ToString().c_str());
    return false;
  }
  Parker done;
  Scheduler& s = **scheduler;
  if (!s.Schedule([&] {
          body(s);
          done.Unpark();
        }).ok()) {
    state.SkipWithError("schedule refused");
    return false;
  }
  done.Park();
  return s.Shutdown().ok();
}

void YieldSwitchCooperative(benchmark::State& state) {
  RunInTask(state, {}, [&](Scheduler& scheduler) {
    bool stop = false;  // both tasks run on one thread
    Parker other_done;
    (void)scheduler.Schedule([&] {
      while (!stop) Yield();
      other_done.Unpark();
    });
    Yield();  // let the other task start
    for (auto _ : state) Yield();
    stop = true;
    other_done.Park();
  });
}

struct BareSwitch {
  FiberContext* thread = nullptr;
  FiberContext* fiber = nullptr;
  bool stop = false;
  static void Run(void* arg) {
    auto* self = static_cast<BareSwitch*>(arg);
    while (!self->stop) FiberContext::Switch(*self->fiber, *self->thread);
    FiberContext::SwitchForLast(*self->fiber, *self->thread);
  }
};

void YieldSwitchBare(benchmark::State& state) {
  absl::StatusOr<StackPool> pool = StackPool::Create({});
  absl::StatusOr<Stack> stack = pool.ok() ? pool->Acquire() : pool.status();
  if (!stack.ok()) {
    state.SkipWithError(stack.status().ToString().c_str());
    return;
  }
  BareSwitch bare;
  FiberContext thread;
  FiberContext fiber(*stack, &BareSwitch::Run, &bare);
  bare.thread = &thread;
  bare.fiber = &fiber;
  for (auto _ : state) FiberContext::Switch(thread, fiber);
  bare.stop = true;
  FiberContext::Switch(thread, fiber);
  pool->Release(*stack);
}

void SpawnJoinCooperative(benchmark::State& state) {
  RunInTask(state, {}, [&](Scheduler& scheduler) {
    for (auto _ : state) {
      TaskGroup group(scheduler);
      (void)group.Spawn([] {});
      group.Wait();
    }
  });
}

void SpawnJoinStdThread(benchmark::State& state) {
  for (auto _ : state) {
    std::thread thread([] {});
    thread.join();
  }
}

// One side of a ping-pong: `trips` times, send `value` and receive the
// answer into it. Both tasks run this same loop (the echoing one after a
// first receive), as Boost.Fiber's two fibers do in boost_fiber.cc.
[[gnu::noinline]] bool Relay(ChannelEnd& end, int& value, int64_t trips) {
  auto buffer = absl::MakeSpan(reinterpret_cast<char*>(&value), sizeof value);
  for (int64_t i = 0; i < trips; ++i) {
    if (!Send(end, buffer).ok() || !Receive(end, buffer).ok()) return false;
  }
  return true;
}

void SameThreadPingPong(benchmark::State& state, const ChannelDescriptor* channel) {
  absl::StatusOr<std::unique_ptr<ChannelFactory>> channels = channel->create(BackendOptions{});
  if (!channels.ok()) {
    state.SkipWithError(channels.status().ToString().c_str());
    return;
  }
  absl::StatusOr<ChannelPair> pair = (*channels)->CreatePair(ChannelOptions{});
  if (!pair.ok()) {
    state.SkipWithError(pair.status().ToString().c_str());
    return;
  }
  const int64_t trips = state.max_iterations;
  RunInTask(state, {}, [&](Scheduler& scheduler) {
    Parker echo_done;
    (void)scheduler.Schedule([&] {
      int value = 0;
      auto buffer = absl::MakeSpan(reinterpret_cast<char*>(&value), sizeof value);
      // The first ping, then trips - 1 answers and pings, then the last answer.
      if (Receive(*pair->task_end, buffer).ok() && Relay(*pair->task_end, value, trips - 1)) {
        (void)Send(*pair->task_end, buffer);
      }
      echo_done.Unpark();
    });
    int value = 1;
    while (state.KeepRunningBatch(trips)) {
      if (!Relay(*pair->owner_end, value, trips) || value != 1) {
        state.SkipWithError("ping-pong failed");
        break;
      }
    }
    echo_done.Park();
  });
}

size_t ResidentBytes() {
  long pages_total = 0;
  long pages_resident = 0;
  if (FILE* statm = std::fopen("/proc/self/statm", "r")) {
    if (std::fscanf(statm, "%ld %ld", &pages_total, &pages_resident) != 2) pages_resident = 0;
    std::fclose(statm);
  }
  return static_cast<size_t>(pages_resident) * static_cast<size_t>(sysconf(_SC_PAGESIZE));
}

void Suspended100k(benchmark::State& state) {
  constexpr int kTasks = 100000;
  CooperativeOptions options;
  options.stack.size = 64 * 1024;
  options.stack.guard_page = false;
  options.stack.max_cached = 0;  // measure live tasks, not a warm cache
  double added_mib = 0;
  for (auto _ : state) {
    std::vector<Parker> parkers(kTasks);
    std::atomic<int> suspended{0};
    size_t before = 0;
    size_t during = 0;
    RunInTask(state, options, [&](Scheduler& scheduler) {
      before = ResidentBytes();
      for (int i = 0; i < kTasks; ++i) {
        (void)scheduler.Schedule([&, i] {
          suspended.fetch_add(1, std::memory_order_relaxed);
          parkers[i].Park();
        });
      }
      while (suspended.load(std::memory_order_relaxed) < kTasks) Yield();
      during = ResidentBytes();
      for (Parker& parker : parkers) parker.Unpark();
    });
    added_mib = static_cast<double>(during - before) / (1024.0 * 1024.0);
  }
  state.counters["rss_MiB"] = added_mib;
  state.counters["bytes_per_task"] = added_mib * 1024 * 1024 / kTasks;
}

void Register() {
  bench::AddJob("yield_switch/cooperative", YieldSwitchCooperative)
      ->UseRealTime()
      ->Iterations(bench::Iterations(1000000));
  bench::AddJob("yield_switch/raw_context_switch", YieldSwitchBare)
      ->UseRealTime()
      ->Iterations(bench::Iterations(1000000));
  bench::AddJob("spawn_join/cooperative", SpawnJoinCooperative)
      ->UseRealTime()
      ->Iterations(bench::Iterations(200000));
  bench::AddJob("spawn_join/raw_std_thread", SpawnJoinStdThread)
      ->UseRealTime()
      ->Iterations(bench::Iterations(2000));
  for (const ChannelDescriptor* channel : Channels()) {
    bench::AddJob(absl::StrCat("same_thread_ping_pong/cooperative+", channel->name),
                  SameThreadPingPong, channel)
        ->UseRealTime()
        ->Iterations(bench::Iterations(20000));
  }
  bench::AddJob("suspended_100k/cooperative", Suspended100k)
      ->UseRealTime()
      ->Unit(benchmark::kMillisecond)
      ->Iterations(bench::Iterations(1));
}

TASKRT_BENCHMARK_JOBS(Register);

}  // namespace
}  // namespace taskrt
