// Sleeping inside units, beside Go's time.Sleep (benchmarks/go/sleep.go):
//   sleep_lateness/<scheduler>  one unit sleeps SleepFor(1 ms), 200 times;
//                               one iteration is one sleep and its time is
//                               the lateness past the deadline (monotonic
//                               clock), so the row's time is the mean
//                               lateness. raw_clock_nanosleep is the same on
//                               a plain thread with the kernel's default
//                               timer slack, raw_clock_nanosleep_tight_slack
//                               with the slack the schedulers' threads set
//                               (UseTightTimerSlack): the kernel's floor,
//                               and what the slack costs.
//                               go_time_sleep is time.Sleep(time.Millisecond)
//                               in one goroutine.
//   sleepers_100k/<scheduler>   on each scheduler with stackful tasks: one
//                               iteration starts 100,000 tasks (from a unit,
//                               through a TaskGroup) that each SleepFor(10 ms)
//                               and waits until the last one is back,
//                               spawning included. go_goroutines is 100,000
//                               goroutines with time.Sleep(10 ms) and one
//                               sync.WaitGroup.

#include <time.h>

#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "backends/registry.h"
#include "benchmark/benchmark.h"
#include "benchmarks/go_program.h"
#include "benchmarks/job_registry.h"
#include "core/backend.h"
#include "core/execution_context.h"
#include "core/task_group.h"

namespace taskrt {
namespace {

constexpr int kSleeps = 200;
constexpr absl::Duration kShortSleep = absl::Milliseconds(1);
constexpr int kSleepers = 100000;
constexpr absl::Duration kSleeperSleep = absl::Milliseconds(10);

absl::Duration MonotonicNow() {
  timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  return absl::DurationFromTimespec(now);
}

// Sleeps `count` times through `sleep` (which sleeps kShortSleep) and
// returns each sleep's lateness.
template <typename Sleep>
std::vector<absl::Duration> Latenesses(int64_t count, Sleep sleep) {
  std::vector<absl::Duration> late;
  late.reserve(static_cast<size_t>(count));
  for (int64_t i = 0; i < count; ++i) {
    const absl::Duration start = MonotonicNow();
    sleep();
    late.push_back(MonotonicNow() - start - kShortSleep);
  }
  return late;
}

void ReportLatenesses(benchmark::State& state, const std::vector<absl::Duration>& late) {
  size_t i = 0;
  for (auto _ : state) state.SetIterationTime(absl::ToDoubleSeconds(late[i++ % late.size()]));
}

void RawLateness(benchmark::State& state, bool tight_slack) {
  std::vector<absl::Duration> late;
  // A thread of its own, so the slack it sets stays there.
  std::thread([&] {
    if (tight_slack) UseTightTimerSlack();
    const timespec interval = absl::ToTimespec(kShortSleep);
    late = Latenesses(state.max_iterations,
                      [&] { clock_nanosleep(CLOCK_MONOTONIC, 0, &interval, nullptr); });
  }).join();
  ReportLatenesses(state, late);
}

std::unique_ptr<Scheduler> Make(benchmark::State& state, const SchedulerDescriptor& descriptor) {
  absl::StatusOr<std::unique_ptr<Scheduler>> scheduler = descriptor.create(BackendOptions{});
  if (!scheduler.ok()) {
    state.SkipWithError(scheduler.status().ToString().c_str());
    return nullptr;
  }
  return *std::move(scheduler);
}

void SleepLateness(benchmark::State& state, const SchedulerDescriptor& descriptor) {
  std::unique_ptr<Scheduler> scheduler = Make(state, descriptor);
  if (scheduler == nullptr) return;
  std::vector<absl::Duration> late;
  absl::Status failed;
  TaskGroup group(*scheduler);
  group
      .Spawn([&] {
        late = Latenesses(state.max_iterations, [&] {
          if (absl::Status slept = taskrt::SleepFor(kShortSleep); !slept.ok()) failed = slept;
        });
      })
      .IgnoreError();
  group.Wait();
  if (!failed.ok() || late.empty()) {
    state.SkipWithError(failed.ok() ? "the sleeping unit did not run" : failed.ToString().c_str());
    return;
  }
  ReportLatenesses(state, late);
}

void Sleepers(benchmark::State& state, const SchedulerDescriptor& descriptor) {
  std::unique_ptr<Scheduler> scheduler = Make(state, descriptor);
  if (scheduler == nullptr) return;
  for (auto _ : state) {
    TaskGroup root(*scheduler);
    root.Spawn([&] {
          TaskGroup sleepers(*scheduler);
          for (int i = 0; i < kSleepers; ++i) {
            sleepers.Spawn([] { taskrt::SleepFor(kSleeperSleep).IgnoreError(); }).IgnoreError();
          }
          sleepers.Wait();
        })
        .IgnoreError();
    root.Wait();
  }
}

void Register() {
  bench::AddJob("sleep_lateness/raw_clock_nanosleep",
                [](benchmark::State& s) { RawLateness(s, /*tight_slack=*/false); })
      ->UseManualTime()
      ->Unit(benchmark::kMicrosecond)
      ->Iterations(bench::Iterations(kSleeps));
  bench::AddJob("sleep_lateness/raw_clock_nanosleep_tight_slack",
                [](benchmark::State& s) { RawLateness(s, /*tight_slack=*/true); })
      ->UseManualTime()
      ->Unit(benchmark::kMicrosecond)
      ->Iterations(bench::Iterations(kSleeps));
  for (const SchedulerDescriptor* descriptor : Schedulers()) {
    bench::AddJob(absl::StrCat("sleep_lateness/", descriptor->name),
                  [descriptor](benchmark::State& s) { SleepLateness(s, *descriptor); })
        ->UseManualTime()
        ->Unit(benchmark::kMicrosecond)
        ->Iterations(bench::Iterations(kSleeps));
  }
  bench::AddJob("sleep_lateness/go_time_sleep",
                [](benchmark::State& s) {
                  bench::RunGoProgram(s, "sleep", {}, "ns_per_iteration");
                })
      ->UseManualTime()
      ->Unit(benchmark::kMicrosecond)
      ->Iterations(bench::Iterations(kSleeps));
  for (const SchedulerDescriptor* descriptor :
       SchedulersWith({.single_thread_stackful_tasks = true})) {
    bench::AddJob(absl::StrCat("sleepers_100k/", descriptor->name),
                  [descriptor](benchmark::State& s) { Sleepers(s, *descriptor); })
        ->UseRealTime()
        ->Unit(benchmark::kMillisecond)
        ->Iterations(bench::Iterations(1));
  }
  bench::AddJob("sleepers_100k/go_goroutines",
                [](benchmark::State& s) {
                  bench::RunGoProgram(s, "sleep", {"sleepers", std::to_string(kSleepers)},
                                      "ns_per_iteration");
                })
      ->UseManualTime()
      ->Unit(benchmark::kMillisecond)
      ->Iterations(bench::Iterations(1));
}

TASKRT_BENCHMARK_JOBS(Register);

}  // namespace
}  // namespace taskrt
