// The comparison report: runs every registered benchmark and prints, per job,
// one row per backend with its median time, its ratio to the job's raw
// baseline and to the fastest backend.
//
// Benchmark names follow "job/backend"; a backend whose name starts with
// "raw_" is a baseline (no runtime involved). Each benchmark is repeated, repetitions of different benchmarks interleaved in random order (so slow
// drift of a shared machine hits every backend alike), and
// the report reads the median of the repetitions, so the ratios compare
// figures measured in the same run.

#include <algorithm>
#include <cstdio>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "benchmark/benchmark.h"

namespace {

// "812 ns", "34.1 us", "138 ms": three significant figures, readable units.
std::string FormatDuration(double ns) {
  char text[32];
  const char* unit = "ns";
  double value = ns;
  if (ns >= 1e9) {
    value = ns / 1e9, unit = "s";
  } else if (ns >= 1e6) {
    value = ns / 1e6, unit = "ms";
  } else if (ns >= 1e3) {
    value = ns / 1e3, unit = "us";
  }
  std::snprintf(text, sizeof text, value >= 100 ? "%.0f %s" : "%.3g %s", value, unit);
  return text;
}

struct Row {
  std::string backend;
  double median_ns = 0;
  std::map<std::string, double> counters;  // a job's own figures (rss_MiB, p99_ns, ...)
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
      Row row{backend, ns, {}};
      for (const auto& [counter, value] : run.counters) row.counters[counter] = value.value;
      jobs_[job].push_back(std::move(row));
    }
  }

  void PrintTables() const {
    for (const auto& [job, unsorted_rows] : jobs_) {
      std::vector<Row> rows = unsorted_rows;
      // Baselines first, then backends from fastest to slowest.
      std::sort(rows.begin(), rows.end(), [](const Row& a, const Row& b) {
        if (IsBaseline(a) != IsBaseline(b)) return IsBaseline(a);
        return a.median_ns < b.median_ns;
      });
      std::vector<const Row*> baselines;
      const Row* best = nullptr;
      for (const Row& row : rows) {
        if (IsBaseline(row)) {
          baselines.push_back(&row);
        } else if (best == nullptr) {
          best = &row;
        }
      }
      std::printf("\n== %s (median of repetitions, real time)\n", job.c_str());
      std::printf("%-32s %12s", "backend", "median");
      for (const Row* baseline : baselines) {
        std::printf(" %20s", ("x " + baseline->backend).c_str());
      }
      std::printf(" %8s\n", "x best");
      for (const Row& row : rows) {
        std::printf("%-32s %12s", row.backend.c_str(), FormatDuration(row.median_ns).c_str());
        for (const Row* baseline : baselines) {
          std::printf(" %19.3gx", row.median_ns / baseline->median_ns);
        }
        if (!IsBaseline(row) && best != nullptr) {
          std::printf(" %7.2fx", row.median_ns / best->median_ns);
        } else {
          std::printf(" %8s", "-");
        }
        for (const auto& [counter, value] : row.counters) {
          std::printf("  %s=%.4g", counter.c_str(), value);
        }
        std::printf("\n");
      }
      if (best != nullptr) {
        std::printf("fastest backend: %s", best->backend.c_str());
        for (const Row* baseline : baselines) {
          std::printf(", %.2fx %s", best->median_ns / baseline->median_ns,
                      baseline->backend.c_str());
        }
        std::printf("\n");
      }
    }
  }

 private:
  static bool IsBaseline(const Row& row) { return row.backend.rfind("raw_", 0) == 0; }

  std::map<std::string, std::vector<Row>> jobs_;
};

}  // namespace

int main(int argc, char** argv) {
  // Defaults first so that flags given on the command line override them.
  std::vector<char*> args = {argv[0]};
  std::string repetitions = "--benchmark_repetitions=10";
  std::string interleave = "--benchmark_enable_random_interleaving=true";
  std::string aggregates = "--benchmark_report_aggregates_only=true";
  args.push_back(repetitions.data());
  args.push_back(aggregates.data());
  args.push_back(interleave.data());
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
