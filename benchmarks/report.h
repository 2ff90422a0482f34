#ifndef TASKRT_BENCHMARKS_REPORT_H_
#define TASKRT_BENCHMARKS_REPORT_H_

// The comparison report's content: from the measurements of one run to the
// printed tables, the JSON results and the HTML chart. No benchmark library
// here, so that all of it can be tested with made-up measurements.
//
// Vocabulary: a benchmark is named "job/backend". Rows of one job compare
// backends on the same work. A backend whose name starts with "raw_" is a
// baseline: the same work without the runtime (a bare context switch, a raw
// socketpair). Every ratio compares figures from the same run, because
// absolute times on a shared machine drift between runs.

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace taskrt::bench {

// One repetition of one benchmark.
struct Measurement {
  std::string name;             // "job/backend"
  double ns_per_iteration = 0;  // wall-clock time
  // The benchmark's own figures: p50_ns, p99_ns (latency jobs),
  // bytes_per_second (throughput jobs), rss_MiB, ...
  std::map<std::string, double> counters;
  // Non-empty when the benchmark could not run (io_uring refused, a lost
  // message); says why.
  std::string error;
  // The run's iteration count (what per-iteration counters divide by).
  int64_t iterations = 0;
};

// Counters every row may carry, per iteration (per operation where the job
// reports job_registry.h's kOperationsCounter), from the kernel
// (process_counters.h):
// system calls of this process and of its child processes, and voluntary
// and involuntary context switches.
inline constexpr char kSyscallsCounter[] = "syscalls";
inline constexpr char kChildSyscallsCounter[] = "child_syscalls";
inline constexpr char kVoluntarySwitchesCounter[] = "csw";
inline constexpr char kInvoluntarySwitchesCounter[] = "icsw";
inline constexpr char kChildVoluntarySwitchesCounter[] = "child_csw";

struct Row {
  std::string backend;
  bool baseline = false;
  int repetitions = 0;  // that ran without error
  double median_ns = 0;
  std::vector<double> samples_ns;          // each repetition's time, in run order
  std::map<std::string, double> counters;  // the median of each counter
  std::string unavailable;                 // why the row has no figures, or empty
};

struct Table {
  std::string job;
  // Baselines, then backends from fastest to slowest, then unavailable ones.
  std::vector<Row> rows;

  // The fastest backend that is not a baseline, or nullptr.
  const Row* Best() const;
  // The runner-up to Best(), or nullptr.
  const Row* SecondBest() const;
};

// Groups measurements by job and takes medians over repetitions. A backend
// with any failed repetition is reported unavailable, with the first error:
// a figure from the other repetitions would hide the failure.
std::vector<Table> Summarise(const std::vector<Measurement>& measurements);

struct Machine {
  int cpu_count = 0;
  std::string cpu_model;  // from /proc/cpuinfo, or "unknown"
  std::string kernel;     // uname's release
};
Machine DescribeMachine();

struct RunInfo {
  std::string started;  // UTC, ISO 8601
  int repetitions = 0;
  bool quick = false;
  std::string filter;  // empty: every job
  // Why system calls are not counted on this machine, or empty.
  std::string syscalls_unavailable;
};

// The header every output carries: the machine, and why only ratios within
// the run should be compared.
std::string FormatPreamble(const Machine& machine, const RunInfo& run);

// One table per job with median, p50/p99 and throughput where the job reports
// them, ratios to the job's baselines and to the best backend, and one line
// naming the winner and its margin.
std::string FormatTables(const std::vector<Table>& tables);

// The same run against an earlier one (compare --baseline; baseline.h
// reads the earlier results.json and fills this in).
struct ComparedRow {
  std::string job;
  std::string backend;
  double before_ns = 0;  // medians
  double after_ns = 0;
  int before_repetitions = 0;
  int after_repetitions = 0;
  // Two-sided Mann-Whitney U test of the two runs' repetitions; negative
  // when either run has fewer than two.
  double p_value = -1;
  std::string verdict;  // "faster", "slower", "no significant change", ...
};

struct Comparison {
  std::string baseline_path;
  std::string baseline_started;  // when the earlier run started
  std::string machine_warning;   // how the machines differ, or empty
  std::vector<ComparedRow> rows;
  std::vector<std::string> only_before;  // "job/backend" in one run only
  std::vector<std::string> only_after;
};

// The version of the results.json layout ToJson writes; a baseline of
// another version is refused.
inline constexpr int kResultsFormatVersion = 2;

// {"format_version": 2, "machine": {...}, "run": {...}, "results": [{"job",
// "backend", "metric", "value", "unit"}, ...]}. The median time carries
// "samples": every repetition's time. An unavailable row has metric
// "unavailable", a null value and a "reason". With a comparison, each row
// found in both runs also has metrics "before_ns", "change" (after/before)
// and "utest_p".
std::string ToJson(const std::vector<Table>& tables, const Machine& machine, const RunInfo& run,
                   const Comparison* comparison = nullptr);

// A self-contained HTML page: the preamble, then one SVG bar chart per job;
// with a comparison, each bar has the earlier run's beside it.
std::string ToHtml(const std::vector<Table>& tables, const Machine& machine, const RunInfo& run,
                   const Comparison* comparison = nullptr);

// "812 ns", "34.1 us", "138 ms": three significant figures.
std::string FormatDuration(double ns);

// The change from `before` to `after` as a signed percentage: "+4.2%".
std::string FormatChange(double before, double after);

}  // namespace taskrt::bench

#endif  // TASKRT_BENCHMARKS_REPORT_H_
