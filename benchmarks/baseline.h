#ifndef TASKRT_BENCHMARKS_BASELINE_H_
#define TASKRT_BENCHMARKS_BASELINE_H_

// Run-to-run comparison (compare --baseline OLD/results.json): reads an
// earlier run's results.json, tests each job and backend found in both runs
// for a change with a two-sided Mann-Whitney U test over their repetitions
// (as Google Benchmark's tools/compare.py does), and prints the verdicts.
//
// A baseline is refused, before anything runs, when it cannot be read, is
// not JSON (a truncated file included), has no results, or was written in
// another results format version (report.h's kResultsFormatVersion): its
// figures would not mean the same. A baseline from another machine (CPU
// count, model or kernel) is compared all the same, with a warning, since
// ratios between runs on different machines say little.

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "benchmarks/report.h"

namespace taskrt::bench {

struct BaselineRow {
  std::string job;
  std::string backend;
  double median_ns = 0;
  std::vector<double> samples_ns;  // every repetition's time
};

struct Baseline {
  std::string path;
  std::string started;
  Machine machine;
  std::vector<BaselineRow> rows;  // rows that were measured (not unavailable)
};

// Reads and checks `path`. kNotFound / kInvalidArgument / kFailedPrecondition
// with one line naming the file and what is wrong with it.
absl::StatusOr<Baseline> LoadBaseline(const std::string& path);

// How `then` and `now` differ ("the baseline ran on 2 CPUs, AMD EPYC, Linux
// 6.18; this run on ..."), or empty when they are the same machine.
std::string MachineWarning(const Machine& then, const Machine& now);

// The two-sided p-value of the Mann-Whitney U test of samples `a` and `b`:
// exact when no value occurs twice and either sample has 8 values or fewer,
// otherwise the normal approximation with tie and continuity corrections
// (scipy.stats.mannwhitneyu's default, which compare.py calls). Negative
// when either sample has fewer than two values; 1 when every value is the
// same.
double MannWhitneyPValue(const std::vector<double>& a, const std::vector<double>& b);

// Pairs the rows of `baseline` and `tables` by job and backend.
Comparison Compare(const Baseline& baseline, const std::vector<Table>& tables,
                   const Machine& machine);

// The comparison as a table: before, after, change, p and verdict per row,
// then a note on weak tests and the rows found in one run only.
std::string FormatComparison(const Comparison& comparison);

}  // namespace taskrt::bench

#endif  // TASKRT_BENCHMARKS_BASELINE_H_
