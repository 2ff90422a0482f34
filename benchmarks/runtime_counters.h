#ifndef TASKRT_BENCHMARKS_RUNTIME_COUNTERS_H_
#define TASKRT_BENCHMARKS_RUNTIME_COUNTERS_H_

// A job's row shows what the backends under test counted while it ran
// (core/scheduler.h's SchedulerMetrics, core/channel.h's ChannelMetrics,
// core/event_loop.h's LoopMetrics), per iteration: why one backend is faster
// than another on the same work (it steals, another parks; one blocks on
// every message, another never; one loop wakes per message, another per
// batch).

#include <cstdint>

#include "benchmark/benchmark.h"
#include "core/channel.h"
#include "core/event_loop.h"
#include "core/scheduler.h"

namespace taskrt::bench {

// What a count is divided by: `per` when given (the requests of a row that
// counts per request), else the iterations.
inline double Divisor(const benchmark::State& state, double per) {
  if (per > 0) return per;
  return static_cast<double>(state.iterations() > 0 ? state.iterations() : 1);
}

// Sets state.counters "steals", "parks", "wakes" and "helps" to the
// scheduler's counts since `before`, divided as Divisor says; a count that
// stayed 0 is left out (the backend does not do it, or did not here).
inline void ReportSchedulerMetrics(benchmark::State& state, const Scheduler& scheduler,
                                   const SchedulerMetrics& before, double per = 0) {
  const SchedulerMetrics after = scheduler.metrics();
  const double divisor = Divisor(state, per);
  auto add = [&](const char* name, uint64_t then, uint64_t now) {
    if (now > then) state.counters[name] = static_cast<double>(now - then) / divisor;
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

// Sets state.counters "loop_iterations" (waits for events), "loop_wakes"
// (wake-ups asked of the loop by other threads) and "callbacks" (watch
// callbacks run) to the loop's counts since `before`, divided as Divisor
// says; a count that stayed 0 is left out. Read after the loop's last
// iteration has ended (core/event_loop.h).
inline void ReportLoopMetrics(benchmark::State& state, const EventLoop& loop,
                              const LoopMetrics& before, double per = 0) {
  const LoopMetrics after = loop.metrics();
  const double divisor = Divisor(state, per);
  auto add = [&](const char* name, uint64_t then, uint64_t now) {
    if (now > then) state.counters[name] = static_cast<double>(now - then) / divisor;
  };
  add("loop_iterations", before.iterations, after.iterations);
  add("loop_wakes", before.wake_requests, after.wake_requests);
  add("callbacks", before.callbacks_run, after.callbacks_run);
}

}  // namespace taskrt::bench

#endif  // TASKRT_BENCHMARKS_RUNTIME_COUNTERS_H_
