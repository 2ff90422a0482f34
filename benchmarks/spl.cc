// SPL's task module (spl/spl_task.h) on the registry's scheduler with
// stackful tasks, beside Boost.Fiber's same-thread channel ping-pong
// (boost_fiber.cc):
//   spl_co_call   one task_co_call / task_co_return round trip between two
//                 tasks; compare with same_thread_ping_pong's rows
//   spl_switch    one task_switch there and one back (two switches)

#include <memory>
#include <string>
#include <vector>

#include "backends/registry.h"
#include "benchmark/benchmark.h"
#include "benchmarks/job_registry.h"
#include "core/execution_context.h"
#include "spl/spl_task.h"

namespace taskrt {
namespace {

using spl::Context;
using spl::Runtime;
using spl::Value;

// Runs `measure` in task "measurer" with a partner task "partner" running
// `partner_loop`; both in a fresh runtime.
template <typename Partner, typename Measure>
void RunPair(benchmark::State& state, Partner partner_loop, Measure measure) {
  absl::StatusOr<std::unique_ptr<Scheduler>> scheduler =
      NewSchedulerWith({.single_thread_stackful_tasks = true});
  if (!scheduler.ok()) {
    state.SkipWithError(scheduler.status().ToString().c_str());
    return;
  }
  absl::StatusOr<std::unique_ptr<Runtime>> runtime = Runtime::Create(**scheduler);
  if (!runtime.ok()) {
    state.SkipWithError(runtime.status().ToString().c_str());
    return;
  }
  Runtime& spl = **runtime;
  Parker done;
  (void)spl.CreateTask("partner", [&](Context&) {
    partner_loop(spl);
    return Value();
  });
  (void)spl.CreateTask("measurer", [&](Context&) {
    measure(spl);
    done.Unpark();
    return Value();
  });
  done.Park();
  runtime->reset();  // kills the partner, which waits for ever
  (void)(*scheduler)->Shutdown();
}

void CoCallRoundTrip(benchmark::State& state) {
  RunPair(
      state,
      [](Runtime& spl) {
        (void)spl.Pause();  // until the first co_call
        int64_t n = 0;
        while (spl.CoReturn(Value(++n)).ok()) {
        }
      },
      [&](Runtime& spl) {
        for (auto _ : state) {
          absl::StatusOr<Value> got = spl.CoCall("partner");
          if (!got.ok()) {
            state.SkipWithError(got.status().ToString().c_str());
            break;
          }
          benchmark::DoNotOptimize(got->as_int());
        }
      });
}

void SwitchThereAndBack(benchmark::State& state) {
  RunPair(
      state,
      [](Runtime& spl) {
        (void)spl.Pause();
        while (spl.SwitchTo("measurer").ok()) {
        }
      },
      [&](Runtime& spl) {
        for (auto _ : state) {
          if (!spl.SwitchTo("partner").ok()) {
            state.SkipWithError("switch failed");
            break;
          }
        }
      });
}

void Register() {
  bench::AddJob("same_thread_ping_pong/spl_co_call", CoCallRoundTrip)
      ->UseRealTime()
      ->Iterations(bench::Iterations(100000));
  const std::vector<const SchedulerDescriptor*> stackful =
      SchedulersWith({.single_thread_stackful_tasks = true});
  const std::string row = stackful.empty() ? "none_registered" : std::string(stackful[0]->name);
  bench::AddJob("spl_switch/" + row, SwitchThereAndBack)
      ->UseRealTime()
      ->Iterations(bench::Iterations(100000));
}

TASKRT_BENCHMARK_JOBS(Register);

}  // namespace
}  // namespace taskrt
