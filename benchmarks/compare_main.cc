// The comparison report: runs every registered benchmark and prints, per job,
// one row per backend with its median time, its ratio to the job's raw
// baseline and to the fastest backend.
//
// Benchmark names follow "job/backend"; a backend whose name starts with
// "raw_" is a baseline (no runtime involved). Each benchmark is repeated and
// the report reads the median of the repetitions, so the ratios compare
// figures measured in the same run.

#include <algorithm>
#include <cstdio>
#include <map>
#include <string>
#include <vector>

#include "benchmark/benchmark.h"

namespace {

struct Row {
  std::string backend;
  double median_ns = 0;
};

class CompareReporter : public benchmark::ConsoleReporter {
 public:
  void ReportRuns(const std::vector<Run>& runs) override {
    ConsoleReporter::ReportRuns(runs);
    for (const Run& run : runs) {
      if (run.run_type != Run::RT_Aggregate || run.aggregate_name != "median") continue;
      const std::string name = run.run_name.function_name;
      const size_t slash = name.find('/');
      const std::string job = slash == std::string::npos ? name : name.substr(0, slash);
      const std::string backend = slash == std::string::npos ? "-" : name.substr(slash + 1);
      const double ns = run.GetAdjustedRealTime() *
                        benchmark::GetTimeUnitMultiplier(benchmark::kNanosecond) /
                        benchmark::GetTimeUnitMultiplier(run.time_unit);
      jobs_[job].push_back({backend, ns});
    }
  }

  void PrintTables() const {
    for (const auto& [job, rows] : jobs_) {
      double baseline = 0;
      double best = 0;
      std::string best_backend;
      for (const Row& row : rows) {
        if (row.backend.rfind("raw_", 0) == 0) {
          if (baseline == 0 || row.median_ns < baseline) baseline = row.median_ns;
        } else if (best == 0 || row.median_ns < best) {
          best = row.median_ns;
          best_backend = row.backend;
        }
      }
      std::printf("\n== %s (median of repetitions, real time)\n", job.c_str());
      std::printf("%-36s %14s %12s %10s\n", "backend", "median", "x baseline", "x best");
      for (const Row& row : rows) {
        const bool is_baseline = row.backend.rfind("raw_", 0) == 0;
        std::printf("%-36s %11.0f ns", row.backend.c_str(), row.median_ns);
        if (baseline > 0) {
          std::printf(" %11.2fx", row.median_ns / baseline);
        } else {
          std::printf(" %12s", "-");
        }
        if (!is_baseline && best > 0) {
          std::printf(" %9.2fx\n", row.median_ns / best);
        } else {
          std::printf(" %10s\n", "-");
        }
      }
      if (!best_backend.empty() && baseline > 0) {
        std::printf("fastest backend: %s, %.2fx the raw baseline\n", best_backend.c_str(),
                    best / baseline);
      }
    }
  }

 private:
  std::map<std::string, std::vector<Row>> jobs_;
};

}  // namespace

int main(int argc, char** argv) {
  // Defaults first so that flags given on the command line override them.
  std::vector<char*> args = {argv[0]};
  std::string repetitions = "--benchmark_repetitions=5";
  std::string aggregates = "--benchmark_report_aggregates_only=true";
  args.push_back(repetitions.data());
  args.push_back(aggregates.data());
  for (int i = 1; i < argc; ++i) args.push_back(argv[i]);
  int args_count = static_cast<int>(args.size());
  benchmark::Initialize(&args_count, args.data());
  if (benchmark::ReportUnrecognizedArguments(args_count, args.data())) return 1;

  CompareReporter reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);
  reporter.PrintTables();
  benchmark::Shutdown();
  return 0;
}
