#ifndef TASKRT_BENCHMARKS_SCHEDULER_COUNTERS_H_
#define TASKRT_BENCHMARKS_SCHEDULER_COUNTERS_H_

// A job's row shows what the scheduler under test counted while it ran
// (core/scheduler.h's SchedulerMetrics), per iteration: why one backend is
// faster than another on the same work (it steals, another parks).

#include <cstdint>

#include "benchmark/benchmark.h"
#include "core/scheduler.h"

namespace taskrt::bench {

// Sets state.counters "steals", "parks", "wakes" and "helps" to the
// scheduler's counts since `before`, divided by the iterations; a count that
// stayed 0 is left out (the backend does not do it, or did not here).
inline void ReportSchedulerMetrics(benchmark::State& state, const Scheduler& scheduler,
                                   const SchedulerMetrics& before) {
  const SchedulerMetrics after = scheduler.metrics();
  const double iterations = static_cast<double>(state.iterations() > 0 ? state.iterations() : 1);
  auto add = [&](const char* name, uint64_t then, uint64_t now) {
    if (now > then) state.counters[name] = static_cast<double>(now - then) / iterations;
  };
  add("steals", before.steals, after.steals);
  add("parks", before.parks, after.parks);
  add("wakes", before.wakes, after.wakes);
  add("helps", before.helps, after.helps);
}

}  // namespace taskrt::bench

#endif  // TASKRT_BENCHMARKS_SCHEDULER_COUNTERS_H_
