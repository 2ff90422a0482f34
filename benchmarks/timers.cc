// timer_arm_cancel_1m: arm a million timers an hour ahead, then cancel them
// all; the figure is the time per arm + cancel pair.
//   timer_arm_cancel_1m/<loop>          every registered event loop: on the
//                                       loop thread (made so by a first
//                                       RunOnce), RunAfter(1 h, closure) a
//                                       million times, then Cancel each id
//   timer_arm_cancel_1m/go_afterfunc    Go's time.AfterFunc(time.Hour, f) and
//                                       Stop() (benchmarks/go/timer_afterfunc.go)
// Both sides run one untimed round of the same size first, so the memory
// for a million timers is already there, then time one round; each
// iteration of the row gets the round's time per pair as its manual time.
// The target: each loop at most a quarter of Go's time per pair.
// A loop the kernel refuses here, or a Go program that is missing or fails,
// makes its row unavailable with the reason.

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "backends/registry.h"
#include "benchmark/benchmark.h"
#include "benchmarks/go_program.h"
#include "benchmarks/job_registry.h"
#include "core/backend.h"
#include "core/event_loop.h"

namespace taskrt {
namespace {

constexpr int64_t kTimers = 1'000'000;

// Arms `ids.size()` timers an hour ahead, then cancels them all.
absl::Status ArmThenCancel(EventLoop& loop, std::vector<TimerId>& ids) {
  for (TimerId& id : ids) {
    absl::StatusOr<TimerId> armed = loop.RunAfter(absl::Hours(1), [] {});
    if (!armed.ok()) return armed.status();
    id = *armed;
  }
  for (TimerId id : ids) {
    if (absl::Status cancelled = loop.Cancel(id); !cancelled.ok()) return cancelled;
  }
  return absl::OkStatus();
}

void LoopArmCancel(benchmark::State& state, const EventLoopDescriptor* descriptor) {
  absl::StatusOr<std::unique_ptr<EventLoop>> loop = descriptor->create(BackendOptions{});
  if (!loop.ok()) {
    state.SkipWithError(loop.status().ToString().c_str());
    return;
  }
  // This thread becomes the loop thread: the arms and cancels below take
  // the loop thread's path.
  if (absl::StatusOr<int> claimed = (*loop)->RunOnce(absl::ZeroDuration()); !claimed.ok()) {
    state.SkipWithError(claimed.status().ToString().c_str());
    return;
  }
  std::vector<TimerId> ids(static_cast<size_t>(state.max_iterations));
  absl::Status status = ArmThenCancel(**loop, ids);  // warm-up
  const auto start = std::chrono::steady_clock::now();
  if (status.ok()) status = ArmThenCancel(**loop, ids);
  const std::chrono::duration<double> elapsed = std::chrono::steady_clock::now() - start;
  if (!status.ok()) {
    state.SkipWithError(status.ToString().c_str());
    return;
  }
  const double per_pair = elapsed.count() / static_cast<double>(ids.size());
  for (auto _ : state) state.SetIterationTime(per_pair);
}

void GoArmCancel(benchmark::State& state) {
  bench::RunGoProgram(state, "timer_afterfunc", {}, "ns_per_pair");
}

void Register() {
  for (const EventLoopDescriptor* loop : EventLoops()) {
    bench::AddJob(absl::StrCat("timer_arm_cancel_1m/", loop->name),
                  [loop](benchmark::State& state) { LoopArmCancel(state, loop); })
        ->UseManualTime()
        ->Iterations(bench::Iterations(kTimers));
  }
  bench::AddJob("timer_arm_cancel_1m/go_afterfunc", GoArmCancel)
      ->UseManualTime()
      ->Iterations(bench::Iterations(kTimers));
}

TASKRT_BENCHMARK_JOBS(Register);

}  // namespace
}  // namespace taskrt
