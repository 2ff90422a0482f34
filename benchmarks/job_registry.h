#ifndef TASKRT_BENCHMARKS_JOB_REGISTRY_H_
#define TASKRT_BENCHMARKS_JOB_REGISTRY_H_

// How benchmark files add their jobs to the comparison report.
//
// A benchmark is named "job/backend"; a backend whose name starts with "raw_"
// is a baseline (no runtime involved). Files do not register at static-init
// time: they hand a registrar to TASKRT_BENCHMARK_JOBS, and the report calls
// every registrar once it has parsed its options. That way a job's fixed
// iteration count can shrink for --quick (see Iterations), and the report
// knows every job's name (see AddJob) to run them one by one with a progress
// line.
//
// Registration runs on the main thread before any benchmark; nothing here is
// thread-safe, nor needs to be.

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "benchmark/benchmark.h"

namespace taskrt::bench {

struct JobSettings {
  // A smoke run: a thousandth of each fixed iteration count, at least one.
  bool quick = false;
};

// A job whose one iteration stands for many operations (a load
// generator's whole run, timed per request) sets state.counters under this
// name to their count; the report then divides the kernel's counts (system
// calls, context switches) by it instead of by the iterations, and does not
// show the counter itself.
inline constexpr char kOperationsCounter[] = "operations";

using JobRegistrar = void (*)();

// Stores `registrar` to be called by RegisterJobs. Returns true, so that it
// can initialise a namespace-scope constant (see TASKRT_BENCHMARK_JOBS).
bool AddJobRegistrar(JobRegistrar registrar);

// Calls every stored registrar once, with `settings` in force. Later calls do
// nothing.
void RegisterJobs(const JobSettings& settings);

// The iteration count for a job that takes `full` iterations in a full run.
int64_t Iterations(int64_t full);

// True in a --quick run; for a job whose work is bounded by time rather than
// by an iteration count (a load generator's run length).
bool Quick();

// Every name passed to AddJob, in registration order.
const std::vector<std::string>& JobNames();

// Used by AddJob.
void RecordJobName(const std::string& name);

// benchmark::RegisterBenchmark that also records the name for JobNames().
template <class Body, class... Args>
benchmark::internal::Benchmark* AddJob(const std::string& name, Body&& body, Args&&... args) {
  RecordJobName(name);
  return benchmark::RegisterBenchmark(name.c_str(), std::forward<Body>(body),
                                      std::forward<Args>(args)...);
}

}  // namespace taskrt::bench

#define TASKRT_BENCHMARK_JOBS_CONCAT_INNER(a, b) a##b
#define TASKRT_BENCHMARK_JOBS_CONCAT(a, b) TASKRT_BENCHMARK_JOBS_CONCAT_INNER(a, b)

// TASKRT_BENCHMARK_JOBS(Register); at namespace scope, with
// `void Register()` calling bench::AddJob for each of the file's jobs.
#define TASKRT_BENCHMARK_JOBS(registrar)                                                    \
  [[maybe_unused]] static const bool TASKRT_BENCHMARK_JOBS_CONCAT(taskrt_jobs_, __LINE__) = \
      ::taskrt::bench::AddJobRegistrar(registrar)

#endif  // TASKRT_BENCHMARKS_JOB_REGISTRY_H_
