// The cost of leaving the machine: http_front's /primes job as a named
// task, run on N tools/nats_worker processes through a broker of the
// job's own (nats_workers), against the same tasks on the local default
// scheduler. A row's time is the wall time from the first task's Run to
// the last one's end; its counters give tasks per second and, on the
// overhead row (a job with next to no work), what a task costs the
// broker, the owner and a worker by itself.

#include <signal.h>

#include <algorithm>
#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "backends/registry.h"
#include "benchmark/benchmark.h"
#include "benchmarks/job_registry.h"
#include "benchmarks/subprocess.h"
#include "core/task.h"
#include "platform/nats/broker.h"
#include "platform/process/child_process.h"
#include "schedulers/nats_workers/nats_workers.h"
#include "tools/http_front/job_entry.h"

namespace taskrt {
namespace {

constexpr char kWorker[] = "taskrt/tools/nats_worker/nats_worker";
// Each task counts the primes below this: a fraction of a millisecond.
constexpr char kPrimesJob[] = "primes 100000";
constexpr char kPrimesAnswer[] = "r 9592";
constexpr char kEmptyJob[] = "primes 10";
constexpr char kEmptyAnswer[] = "r 4";
constexpr int kSlotsPerWorker = 2;
// Tasks the owner keeps running at once.
constexpr size_t kInFlight = 256;

// tools/nats_worker processes, their standard error discarded, stopped
// (SIGTERM) together and reaped on destruction.
class Workers {
 public:
  ~Workers() {
    for (const std::unique_ptr<ChildProcess>& child : children_) child->Signal(SIGTERM);
  }

  absl::Status Start(const std::string& program, const std::string& url, int count) {
    for (int i = 0; i < count; ++i) {
      absl::StatusOr<std::unique_ptr<ChildProcess>> child = ChildProcess::Start(
          {program, absl::StrCat("--url=", url), absl::StrCat("--slots=", kSlotsPerWorker)},
          "/dev/null");
      if (!child.ok()) return child.status();
      children_.push_back(*std::move(child));
    }
    return absl::OkStatus();
  }

 private:
  std::vector<std::unique_ptr<ChildProcess>> children_;
};

// Runs `count` http_front jobs (`job`, each answered with `answer`) on
// `scheduler`, at most kInFlight at once; returns the wall time.
absl::StatusOr<absl::Duration> RunTasks(Scheduler& scheduler, ChannelFactory* channels,
                                        EventLoop& loop, int count, const char* job,
                                        const char* answer) {
  TaskEnvironment env{&scheduler, channels, &loop, {}};
  std::deque<std::unique_ptr<Task>> running;
  int started = 0;
  int finished = 0;
  absl::Status failure;
  const absl::Time start = absl::Now();
  while (finished < count && failure.ok()) {
    while (started < count && running.size() < kInFlight) {
      absl::StatusOr<std::unique_ptr<Task>> task = Task::CreateNamed(http::kJobEntryName);
      if (!task.ok()) return task.status();
      // The job's last word: its answer.
      auto last = std::make_shared<std::string>();
      absl::Status status = (*task)->BindCallback([last, answer, &finished, &failure](Task& t) {
        char buffer[64];
        absl::StatusOr<size_t> got;
        while ((got = t.TryRead(absl::MakeSpan(buffer))).ok()) {
          last->assign(buffer, std::min(*got, sizeof buffer));
        }
        if (!t.finished()) return;
        ++finished;
        if (*last != answer && failure.ok()) {
          failure = absl::InternalError(absl::StrCat("a task answered \"", *last, "\", not \"",
                                                     answer, "\""));
        }
      });
      if (status.ok()) status = (*task)->Run(env);
      if (status.ok()) status = (*task)->Write(absl::string_view(job));
      if (!status.ok()) return status;
      running.push_back(*std::move(task));
      ++started;
    }
    if (absl::StatusOr<int> ran = loop.RunOnce(absl::InfiniteDuration()); !ran.ok()) {
      return ran.status();
    }
    while (!running.empty() && running.front()->finished()) running.pop_front();
  }
  if (!failure.ok()) return failure;
  return absl::Now() - start;
}

void Report(benchmark::State& state, absl::Duration elapsed, int count) {
  for (auto _ : state) state.SetIterationTime(absl::ToDoubleSeconds(elapsed));
  state.counters["tasks_per_second"] = count / absl::ToDoubleSeconds(elapsed);
  state.counters["us_per_task"] = absl::ToDoubleMicroseconds(elapsed) / count;
}

int TaskCount() { return bench::Quick() ? 40 : 10000; }

void OnWorkers(benchmark::State& state, int workers, const char* job, const char* answer) {
  std::string looked_in;
  const std::string program = bench::FindRunfile(kWorker, looked_in);
  if (program.empty()) {
    state.SkipWithError(absl::StrCat("tools/nats_worker is not in the runfiles (looked in ",
                                     looked_in, "); run through tools/bazel run //benchmarks:compare")
                            .c_str());
    return;
  }
  absl::StatusOr<std::unique_ptr<nats_platform::LocalBroker>> broker =
      nats_platform::LocalBroker::Start();
  if (!broker.ok()) {
    state.SkipWithError(broker.status().ToString().c_str());
    return;
  }
  NatsWorkersOptions options;
  options.url = (*broker)->url();
  absl::StatusOr<std::unique_ptr<Scheduler>> scheduler = NewNatsWorkersScheduler(options);
  absl::StatusOr<std::unique_ptr<EventLoop>> loop = NewLoopNamed(Defaults().loop);
  for (const absl::Status& status : {scheduler.status(), loop.status()}) {
    if (!status.ok()) {
      state.SkipWithError(status.ToString().c_str());
      return;
    }
  }
  Workers processes;
  if (absl::Status started = processes.Start(program, options.url, workers); !started.ok()) {
    state.SkipWithError(started.ToString().c_str());
    return;
  }
  // Not timed: the workers connect and take their first jobs.
  absl::StatusOr<absl::Duration> warm =
      RunTasks(**scheduler, nullptr, **loop, workers * kSlotsPerWorker, job, answer);
  absl::StatusOr<absl::Duration> elapsed =
      warm.ok() ? RunTasks(**scheduler, nullptr, **loop, TaskCount(), job, answer) : warm;
  if (!elapsed.ok()) {
    state.SkipWithError(elapsed.status().ToString().c_str());
    return;
  }
  Report(state, *elapsed, TaskCount());
}

void OnThisMachine(benchmark::State& state, const char* job, const char* answer) {
  const DefaultBackends& defaults = Defaults();
  absl::StatusOr<Backends> backends =
      NewBackends(defaults.scheduler, defaults.channel, defaults.loop, defaults.workers);
  if (!backends.ok()) {
    state.SkipWithError(backends.status().ToString().c_str());
    return;
  }
  absl::StatusOr<absl::Duration> elapsed = RunTasks(*backends->scheduler, backends->channels.get(),
                                                    *backends->loop, TaskCount(), job, answer);
  if (!elapsed.ok()) {
    state.SkipWithError(elapsed.status().ToString().c_str());
    return;
  }
  Report(state, *elapsed, TaskCount());
}

void Register() {
  if (!http::RegisterHttpFrontEntries().ok()) return;
  const DefaultBackends& defaults = Defaults();
  bench::AddJob(absl::StrCat("nats_workers_scale/", defaults.scheduler, "_here"), OnThisMachine,
                kPrimesJob, kPrimesAnswer)
      ->UseManualTime()
      ->Iterations(1);
  for (int workers : {1, 2, 4}) {
    bench::AddJob(absl::StrCat("nats_workers_scale/", workers, workers == 1 ? "_worker" : "_workers"),
                  OnWorkers, workers,
                  kPrimesJob, kPrimesAnswer)
        ->UseManualTime()
        ->Iterations(1);
  }
  bench::AddJob(absl::StrCat("nats_workers_overhead/", defaults.scheduler, "_here"), OnThisMachine,
                kEmptyJob, kEmptyAnswer)
      ->UseManualTime()
      ->Iterations(1);
  bench::AddJob("nats_workers_overhead/2_workers", OnWorkers, 2, kEmptyJob, kEmptyAnswer)
      ->UseManualTime()
      ->Iterations(1);
}

TASKRT_BENCHMARK_JOBS(Register);

}  // namespace
}  // namespace taskrt
