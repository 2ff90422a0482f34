#ifndef TASKRT_BENCHMARKS_RUNTIME_COUNTERS_H_
#define TASKRT_BENCHMARKS_RUNTIME_COUNTERS_H_

// A job's row shows what the backends under test counted while it ran
// (core/scheduler.h's SchedulerMetrics, core/channel.h's ChannelMetrics),
// per iteration: why one backend is faster than another on the same work
// (it steals, another parks; one blocks on every message, another never).

#include <cstdint>

#include "benchmark/benchmark.h"
#include "core/channel.h"
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

// Sets state.counters "blocked_sends", "blocked_receives" and "wakeups" to
// what both ends of `pair` counted, divided by the iterations; a count of 0
// is left out.
inline void ReportChannelMetrics(benchmark::State& state, const ChannelPair& pair) {
  ChannelMetrics total;
  for (const ChannelEnd* end : {pair.task_end.get(), pair.owner_end.get()}) {
    if (end == nullptr) continue;
    const ChannelMetrics m = end->metrics();
    total.sends_blocked += m.sends_blocked;
    total.receives_blocked += m.receives_blocked;
    total.wakeups_sent += m.wakeups_sent;
  }
  const double iterations = static_cast<double>(state.iterations() > 0 ? state.iterations() : 1);
  auto add = [&](const char* name, uint64_t count) {
    if (count > 0) state.counters[name] = static_cast<double>(count) / iterations;
  };
  add("blocked_sends", total.sends_blocked);
  add("blocked_receives", total.receives_blocked);
  add("wakeups", total.wakeups_sent);
}

}  // namespace taskrt::bench

#endif  // TASKRT_BENCHMARKS_RUNTIME_COUNTERS_H_
