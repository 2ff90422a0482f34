// Channel backends between OS threads, with plain baselines in the same run:
//   cross_thread_ping_pong  one 8-byte round trip between the benchmark
//                           thread and an echo thread, both using blocking
//                           Send/Receive (spin 50 us, then park); counters
//                           p50_ns and p99_ns of single round trips.
//                           Baselines: raw_atomic_spin (two threads spinning
//                           on one atomic: the hardware floor), raw_futex
//                           (flip a word, futex wake/wait, no spinning).
//   stream_8B, stream_4KiB  one thread sends, the benchmark thread receives;
//                           one iteration = one message, whose first 8
//                           bytes (its sequence number) are checked.
//   stream_8B_batch64       as stream_8B, but the sender writes bursts of 64
//                           messages with TrySend and makes each burst
//                           visible with one flush (TryFlush, waiting on
//                           the end while it would block): the pattern of
//                           a task that produces output in bursts.
//   fan_in_1000             1,000 Kore tasks each write 10 messages to one
//                           owner whose event loop reads them through bound
//                           callbacks; one iteration = all 10,000 messages.
//                           Rows are <scheduler>+<loop>+<channel>, for
//                           every scheduler that honours a worker count,
//                           with two workers.
//   channel_pair_lifecycle  on the benchmark thread: create a pair, send
//                           8 bytes from the owner end, receive them on
//                           the task end, destroy the pair; one iteration
//                           = one pair's whole life (what a short task's
//                           channel costs beside its work).
// Every channel backend that is built registers here; a backend that is
// unavailable on this machine (io_uring refused) reports an error row.

#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "backends/registry.h"
#include "benchmark/benchmark.h"
#include "benchmarks/job_registry.h"
#include "benchmarks/runtime_counters.h"
#include "core/channel.h"
#include "core/errors.h"
#include "core/event_loop.h"
#include "core/task.h"

namespace taskrt {
namespace {

// Channels and loops by name (backends/registry.h), made when a job runs.
absl::StatusOr<ChannelPair> MakePair(benchmark::State& state, const std::string& channel) {
  absl::StatusOr<std::unique_ptr<ChannelFactory>> factory = NewChannelFactoryNamed(channel);
  if (!factory.ok()) {
    state.SkipWithError(factory.status().ToString().c_str());
    return factory.status();
  }
  absl::StatusOr<ChannelPair> pair = (*factory)->CreatePair(ChannelOptions{});
  if (!pair.ok()) state.SkipWithError(pair.status().ToString().c_str());
  return pair;
}

// Records single round trips and reports their median and 99th percentile.
class Percentiles {
 public:
  void Reserve(size_t n) { samples_.reserve(n); }
  void Add(std::chrono::steady_clock::duration d) {
    samples_.push_back(std::chrono::duration<double, std::nano>(d).count());
  }
  void Report(benchmark::State& state) {
    if (samples_.empty()) return;
    std::sort(samples_.begin(), samples_.end());
    state.counters["p50_ns"] = samples_[samples_.size() / 2];
    state.counters["p99_ns"] = samples_[samples_.size() * 99 / 100];
  }

 private:
  std::vector<double> samples_;
};

void CrossThreadPingPong(benchmark::State& state, const std::string& channel) {
  absl::StatusOr<ChannelPair> pair = MakePair(state, channel);
  if (!pair.ok()) return;
  std::thread echo([end = pair->task_end.get()] {
    uint64_t value;
    auto buffer = absl::MakeSpan(reinterpret_cast<char*>(&value), sizeof value);
    while (Receive(*end, buffer).ok()) {
      if (!Send(*end, buffer).ok()) break;
    }
  });
  uint64_t value = 0;
  auto buffer = absl::MakeSpan(reinterpret_cast<char*>(&value), sizeof value);
  Percentiles percentiles;
  percentiles.Reserve(state.max_iterations);
  for (auto _ : state) {
    const auto start = std::chrono::steady_clock::now();
    ++value;
    if (!Send(*pair->owner_end, buffer).ok() || !Receive(*pair->owner_end, buffer).ok()) {
      state.SkipWithError("round trip failed");
      break;
    }
    percentiles.Add(std::chrono::steady_clock::now() - start);
  }
  pair->owner_end->Close();  // the echo thread's Receive ends
  echo.join();
  percentiles.Report(state);
  bench::ReportChannelMetrics(state, *pair);
}

void PingPongAtomicSpin(benchmark::State& state) {
  std::atomic<uint64_t> ball{0};  // odd: at the echo thread; even: back
  std::atomic<bool> stop{false};
  std::thread echo([&] {
    uint64_t seen = 0;
    while (!stop.load(std::memory_order_relaxed)) {
      const uint64_t now = ball.load(std::memory_order_acquire);
      if (now != seen && (now & 1) == 1) {
        seen = now + 1;
        ball.store(seen, std::memory_order_release);
      }
    }
  });
  uint64_t next = 1;
  Percentiles percentiles;
  percentiles.Reserve(state.max_iterations);
  for (auto _ : state) {
    const auto start = std::chrono::steady_clock::now();
    ball.store(next, std::memory_order_release);
    while (ball.load(std::memory_order_acquire) != next + 1) {
    }
    next += 2;
    percentiles.Add(std::chrono::steady_clock::now() - start);
  }
  stop = true;
  echo.join();
  percentiles.Report(state);
}

long Futex(std::atomic<uint32_t>* word, int op, uint32_t value) {
  return syscall(SYS_futex, reinterpret_cast<uint32_t*>(word), op, value, nullptr, nullptr, 0);
}

void PingPongFutex(benchmark::State& state) {
  // 0: nobody's turn yet; 1: the echo thread's turn; 2: ours; 3: stop.
  std::atomic<uint32_t> turn{0};
  std::thread echo([&] {
    while (true) {
      uint32_t now;
      while ((now = turn.load(std::memory_order_acquire)) != 1 && now != 3) {
        Futex(&turn, FUTEX_WAIT_PRIVATE, now);
      }
      if (now == 3) return;
      turn.store(2, std::memory_order_release);
      Futex(&turn, FUTEX_WAKE_PRIVATE, 1);
    }
  });
  Percentiles percentiles;
  percentiles.Reserve(state.max_iterations);
  for (auto _ : state) {
    const auto start = std::chrono::steady_clock::now();
    turn.store(1, std::memory_order_release);
    Futex(&turn, FUTEX_WAKE_PRIVATE, 1);
    uint32_t now;
    while ((now = turn.load(std::memory_order_acquire)) != 2) {
      Futex(&turn, FUTEX_WAIT_PRIVATE, now);
    }
    percentiles.Add(std::chrono::steady_clock::now() - start);
  }
  turn.store(3, std::memory_order_release);
  Futex(&turn, FUTEX_WAKE_PRIVATE, 1);
  echo.join();
  percentiles.Report(state);
}

// The receiving half of the stream jobs: one message per iteration, its
// length and sequence number checked.
void ReceiveStream(benchmark::State& state, ChannelEnd& end, size_t message_size) {
  std::string buffer(message_size, '\0');
  uint64_t expected = 0;
  for (auto _ : state) {
    absl::StatusOr<size_t> got = Receive(end, absl::MakeSpan(buffer));
    uint64_t sequence;
    std::memcpy(&sequence, buffer.data(), sizeof sequence);
    if (!got.ok() || *got != message_size || sequence != expected) {
      state.SkipWithError("stream broke");
      break;
    }
    ++expected;
  }
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(message_size));
}

void Stream(benchmark::State& state, const std::string& channel, size_t message_size) {
  absl::StatusOr<ChannelPair> pair = MakePair(state, channel);
  if (!pair.ok()) return;
  const int64_t messages = state.max_iterations;
  std::thread producer([end = pair->task_end.get(), messages, message_size] {
    std::string message(message_size, 'x');
    for (uint64_t i = 0; i < static_cast<uint64_t>(messages); ++i) {
      std::memcpy(message.data(), &i, sizeof i);
      if (!Send(*end, absl::MakeConstSpan(message)).ok()) return;
    }
  });
  ReceiveStream(state, *pair->owner_end, message_size);
  pair->owner_end->Close();
  producer.join();
  bench::ReportChannelMetrics(state, *pair);
}

// Pushes out what TrySend accepted, waiting on the end while it would block:
// the flush half of the blocking Send(), for a burst of TrySends.
absl::Status Flush(ChannelEnd& end) {
  while (true) {
    absl::Status flushed = end.TryFlush();
    if (!IsWouldBlock(flushed)) return flushed;
    if (absl::Status wait = end.WaitUntilReady(ChannelDirection::kSend); !wait.ok()) return wait;
  }
}

void StreamBatch(benchmark::State& state, const std::string& channel, size_t message_size,
                 int burst) {
  absl::StatusOr<ChannelPair> pair = MakePair(state, channel);
  if (!pair.ok()) return;
  const int64_t messages = state.max_iterations;
  std::thread producer([end = pair->task_end.get(), messages, message_size, burst] {
    std::string message(message_size, 'x');
    for (uint64_t i = 0; i < static_cast<uint64_t>(messages);) {
      for (int b = 0; b < burst && i < static_cast<uint64_t>(messages); ++b, ++i) {
        std::memcpy(message.data(), &i, sizeof i);
        absl::Status sent = end->TrySend(absl::MakeConstSpan(message));
        // The end holds all it can: the blocking Send() flushes and waits.
        if (IsWouldBlock(sent)) sent = Send(*end, absl::MakeConstSpan(message));
        if (!sent.ok()) return;
      }
      if (!Flush(*end).ok()) return;
    }
  });
  ReceiveStream(state, *pair->owner_end, message_size);
  pair->owner_end->Close();
  producer.join();
  bench::ReportChannelMetrics(state, *pair);
}

void FanIn(benchmark::State& state, const SchedulerDescriptor* scheduler_backend,
           const std::string& loop_name, const std::string& channel) {
  constexpr int kTasks = 1000;
  constexpr int kMessagesEach = 10;
  absl::StatusOr<std::unique_ptr<EventLoop>> loop = NewLoopNamed(loop_name);
  absl::StatusOr<std::unique_ptr<ChannelFactory>> channels = NewChannelFactoryNamed(channel);
  absl::StatusOr<std::unique_ptr<Scheduler>> scheduler =
      scheduler_backend->create(BackendOptions{.workers = 2});
  for (const absl::Status& status : {loop.status(), channels.status(), scheduler.status()}) {
    if (!status.ok()) {
      state.SkipWithError(status.ToString().c_str());
      return;
    }
  }
  const SchedulerMetrics scheduler_before = (*scheduler)->metrics();
  const LoopMetrics loop_before = (*loop)->metrics();
  for (auto _ : state) {
    int received = 0;
    int finished = 0;
    std::vector<std::unique_ptr<Task>> tasks;
    tasks.reserve(kTasks);
    for (int t = 0; t < kTasks; ++t) {
      absl::StatusOr<std::unique_ptr<Task>> task = Task::Create([](TaskContext& self) {
        const uint64_t value = 42;
        for (int m = 0; m < kMessagesEach; ++m) {
          if (!self.Write(absl::MakeConstSpan(reinterpret_cast<const char*>(&value), 8)).ok()) {
            return 1;
          }
        }
        return 0;
      });
      if (!task.ok()) {
        state.SkipWithError("task create failed");
        return;
      }
      (void)(*task)->BindCallback([&](Task& self) {
        uint64_t value;
        while (self.TryRead(absl::MakeSpan(reinterpret_cast<char*>(&value), 8)).ok()) ++received;
        if (self.finished()) ++finished;
      });
      tasks.push_back(*std::move(task));
    }
    TaskEnvironment env{scheduler->get(), channels->get(), loop->get(), {}};
    for (auto& task : tasks) {
      if (!task->Run(env).ok()) {
        state.SkipWithError("task run failed");
        return;
      }
    }
    while (finished < kTasks) (void)(*loop)->RunOnce(absl::InfiniteDuration());
    if (received != kTasks * kMessagesEach) {
      state.SkipWithError("messages lost");
      return;
    }
  }
  (void)(*scheduler)->Shutdown();
  bench::ReportSchedulerMetrics(state, **scheduler, scheduler_before);
  bench::ReportLoopMetrics(state, **loop, loop_before);
}

void PairLifecycle(benchmark::State& state, const std::string& channel) {
  absl::StatusOr<std::unique_ptr<ChannelFactory>> factory = NewChannelFactoryNamed(channel);
  if (!factory.ok()) {
    state.SkipWithError(factory.status().ToString().c_str());
    return;
  }
  uint64_t sequence = 0;
  uint64_t received = 0;
  for (auto _ : state) {
    absl::StatusOr<ChannelPair> pair = (*factory)->CreatePair(ChannelOptions{});
    if (!pair.ok()) {
      state.SkipWithError(pair.status().ToString().c_str());
      return;
    }
    ++sequence;
    absl::StatusOr<size_t> length;
    if (!Send(*pair->owner_end, absl::MakeConstSpan(reinterpret_cast<const char*>(&sequence), 8))
             .ok() ||
        !(length = Receive(*pair->task_end, absl::MakeSpan(reinterpret_cast<char*>(&received), 8)))
             .ok() ||
        *length != 8 || received != sequence) {
      state.SkipWithError("the pair's message did not arrive intact");
      return;
    }
  }
}

void Register() {
  for (const std::string& channel : ChannelNames()) {
    bench::AddJob(("cross_thread_ping_pong/" + channel), CrossThreadPingPong, channel)
        ->UseRealTime()
        ->Iterations(bench::Iterations(20000));
    bench::AddJob(("stream_8B/" + channel), Stream, channel, size_t{8})
        ->UseRealTime()
        ->Iterations(bench::Iterations(1000000));
    bench::AddJob(("stream_4KiB/" + channel), Stream, channel, size_t{4096})
        ->UseRealTime()
        ->Iterations(bench::Iterations(100000));
    bench::AddJob(("stream_8B_batch64/" + channel), StreamBatch, channel, size_t{8}, 64)
        ->UseRealTime()
        ->Iterations(bench::Iterations(1000000));
    bench::AddJob(("channel_pair_lifecycle/" + channel), PairLifecycle, channel)
        ->UseRealTime()
        ->Iterations(bench::Iterations(20000));
    for (const SchedulerDescriptor* scheduler : SchedulersWith({.honours_worker_count = true})) {
      for (const std::string& loop : LoopNames()) {
        const std::string row = absl::StrCat(scheduler->name, "+", loop, "+", channel);
        bench::AddJob(("fan_in_1000/" + row), FanIn, scheduler, loop, channel)
            ->UseRealTime()
            ->Unit(benchmark::kMillisecond)
            ->Iterations(bench::Iterations(3));
      }
    }
  }
  bench::AddJob("cross_thread_ping_pong/raw_atomic_spin", PingPongAtomicSpin)
      ->UseRealTime()
      ->Iterations(bench::Iterations(20000));
  bench::AddJob("cross_thread_ping_pong/raw_futex", PingPongFutex)
      ->UseRealTime()
      ->Iterations(bench::Iterations(5000));
}

TASKRT_BENCHMARK_JOBS(Register);

}  // namespace
}  // namespace taskrt
