// Boost.Fiber 1.74 (Debian's libboost-fiber-dev) as a competitor baseline for
// our scheduler with stackful tasks, with its default round-robin scheduler and
// default 128 KiB fixedsize (malloc'd) stacks:
//   yield_switch            two fibers on the benchmark thread, both calling
//                           boost::this_fiber::yield(); one iteration = one
//                           yield() by the measuring fiber. Boost.Fiber keeps
//                           its dispatcher fiber in the round-robin ring, so
//                           that is three context switches (to the other
//                           fiber, to the dispatcher, back), not two.
//   spawn_join              spawn one empty boost::fibers::fiber from the
//                           benchmark thread and join it
//   same_thread_ping_pong   one round trip between two fibers on the
//                           benchmark thread over two unbuffered_channel<int>,
//                           both fibers running the same relay loop (as
//                           our stackful tasks do)
//   cross_thread_ping_pong  one round trip between the benchmark thread and
//                           a std::thread (each in its thread's main fiber)
//                           over two buffered_channel<int> of capacity 2;
//                           also reports the p50 and p99 of the individual
//                           round trips (counters p50_ns, p99_ns)
// The benchmark loop runs in the benchmark thread's main fiber throughout.
// Counted once with a round_robin subclass counting pick_next(): spawn_join and
// same_thread_ping_pong make four context switches per iteration, two of
// them into the dispatcher fiber.

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <thread>
#include <vector>

#include "benchmark/benchmark.h"
#include "benchmarks/job_registry.h"
#include "boost/fiber/buffered_channel.hpp"
#include "boost/fiber/channel_op_status.hpp"
#include "boost/fiber/fiber.hpp"
#include "boost/fiber/operations.hpp"
#include "boost/fiber/unbuffered_channel.hpp"

namespace taskrt {
namespace {

using boost::fibers::channel_op_status;

void YieldSwitch(benchmark::State& state) {
  bool stop = false;  // both fibers run on this thread: no data race
  boost::fibers::fiber other([&stop] {
    while (!stop) boost::this_fiber::yield();
  });
  for (auto _ : state) {
    boost::this_fiber::yield();
  }
  stop = true;
  other.join();
}

void SpawnJoin(benchmark::State& state) {
  for (auto _ : state) {
    boost::fibers::fiber fiber([] {});
    fiber.join();
  }
}

// One side of a ping-pong, the same loop for both fibers (the echoing one
// after a first pop), as our stackful tasks do.
[[gnu::noinline]] bool Relay(boost::fibers::unbuffered_channel<int>& out,
                             boost::fibers::unbuffered_channel<int>& in, int& value,
                             int64_t trips) {
  for (int64_t i = 0; i < trips; ++i) {
    if (out.push(value) != channel_op_status::success ||
        in.pop(value) != channel_op_status::success) {
      return false;
    }
  }
  return true;
}

void SameThreadPingPong(benchmark::State& state) {
  boost::fibers::unbuffered_channel<int> ping;
  boost::fibers::unbuffered_channel<int> pong;
  const int64_t trips = state.max_iterations;
  boost::fibers::fiber echo([&ping, &pong, trips] {
    int value = 0;
    if (ping.pop(value) == channel_op_status::success && Relay(pong, ping, value, trips - 1)) {
      (void)pong.push(value);
    }
  });
  int value = 1;
  while (state.KeepRunningBatch(trips)) {
    if (!Relay(ping, pong, value, trips) || value != 1) {
      state.SkipWithError("ping-pong failed");
      break;
    }
  }
  echo.join();
  ping.close();
  pong.close();
}

// p-th percentile (0 < p < 1) of `samples`, which it reorders.
int64_t Percentile(std::vector<int64_t>& samples, double p) {
  if (samples.empty()) return 0;
  const auto rank = static_cast<size_t>(p * static_cast<double>(samples.size() - 1));
  std::nth_element(samples.begin(), samples.begin() + static_cast<ptrdiff_t>(rank), samples.end());
  return samples[rank];
}

void CrossThreadPingPong(benchmark::State& state) {
  // Capacity must be a power of two; a buffered_channel of capacity 2 holds
  // one value, which is all a ping-pong needs.
  boost::fibers::buffered_channel<int> ping(2);
  boost::fibers::buffered_channel<int> pong(2);
  std::thread ponger([&ping, &pong] {
    int value = 0;
    while (ping.pop(value) == channel_op_status::success) {
      if (pong.push(value) != channel_op_status::success) break;
    }
  });
  std::vector<int64_t> round_trips_ns;
  round_trips_ns.reserve(static_cast<size_t>(state.max_iterations));
  int value = 0;
  for (auto _ : state) {
    ++value;
    int echoed = 0;
    const auto start = std::chrono::steady_clock::now();
    if (ping.push(value) != channel_op_status::success ||
        pong.pop(echoed) != channel_op_status::success || echoed != value) {
      state.SkipWithError("ping-pong failed");
      break;
    }
    const auto end = std::chrono::steady_clock::now();
    round_trips_ns.push_back(
        std::chrono::duration_cast<std::chrono::nanoseconds>(end - start).count());
  }
  ping.close();
  ponger.join();
  pong.close();
  state.counters["p50_ns"] = static_cast<double>(Percentile(round_trips_ns, 0.50));
  state.counters["p99_ns"] = static_cast<double>(Percentile(round_trips_ns, 0.99));
}

void Register() {
  bench::AddJob("yield_switch/boost_fiber", YieldSwitch)
      ->UseRealTime()
      ->Iterations(bench::Iterations(200000));
  bench::AddJob("spawn_join/boost_fiber", SpawnJoin)
      ->UseRealTime()
      ->Iterations(bench::Iterations(50000));
  bench::AddJob("same_thread_ping_pong/boost_fiber_unbuffered_channel", SameThreadPingPong)
      ->UseRealTime()
      ->Iterations(bench::Iterations(100000));
  bench::AddJob("cross_thread_ping_pong/boost_fiber_buffered_channel", CrossThreadPingPong)
      ->UseRealTime()
      ->Iterations(bench::Iterations(2000));
}

TASKRT_BENCHMARK_JOBS(Register);

}  // namespace
}  // namespace taskrt
