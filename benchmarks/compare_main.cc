// The comparison report: runs every benchmark job over every backend that is
// built, prints one table per job, and writes results.json and report.html.
//
//   tools/bazel run //benchmarks:compare -- [--quick] [--filter REGEX]
//       [--repetitions N] [--out DIR] [--baseline FILE] [--trace FILE]
//       [--trace_events N] [--benchmark_...]
//
// Each repetition runs every selected benchmark once, in a fresh random order,
// so slow drift of a shared machine hits every backend alike; the report
// reads the median over repetitions. Around each run it reads what the kernel
// counted (process_counters.h): each row carries its system calls and
// context switches per iteration. Options of Google Benchmark
// (--benchmark_min_time, ...) pass through.

#include <unistd.h>

#include <regex.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "benchmark/benchmark.h"
#include "absl/status/statusor.h"
#include "benchmarks/baseline.h"
#include "benchmarks/job_registry.h"
#include "benchmarks/process_counters.h"
#include "benchmarks/report.h"
#include "core/trace.h"
#include "platform/process/working_directory.h"

namespace taskrt::bench {
namespace {

constexpr int kDefaultRepetitions = 5;

constexpr char kUsage[] =
    "usage: compare [--quick] [--filter REGEX] [--repetitions N] [--out DIR] "
    "[--baseline FILE] [--trace FILE] [--trace_events N] [--benchmark_...]\n"
    "  --quick          a smoke run of a few seconds: one repetition, a thousandth of\n"
    "                   the iterations (figures are not meaningful)\n"
    "  --filter REGEX   only benchmarks whose \"job/backend\" name matches (POSIX\n"
    "                   extended regex, searched anywhere in the name)\n"
    "  --repetitions N  repetitions per benchmark (default 5; 1 with --quick)\n"
    "  --out DIR        where results.json and report.html go (default: results/ in\n"
    "                   the workspace)\n"
    "  --baseline FILE  an earlier run's results.json: also print each job and backend\n"
    "                   before and after, with a U test's verdict, and draw both in\n"
    "                   the HTML\n"
    "  --trace FILE     also write what the runtime did (units, their runs, parks and\n"
    "                   wake-ups, channel messages) as a Chrome trace-event JSON file;\n"
    "                   open it in ui.perfetto.dev. Tracing slows the run: read figures\n"
    "                   from an untraced one\n"
    "  --trace_events N the trace keeps the last N events (default 262144, about 90\n"
    "                   bytes each)\n";

struct Options {
  bool quick = false;
  std::string filter;
  int repetitions = 0;  // 0: the default for the mode
  std::string out;
  std::string baseline;  // an earlier results.json, or empty
  std::string trace;     // a trace file to write, or empty
  size_t trace_events = trace::TraceRecorder::kDefaultCapacity;
  std::vector<std::string> benchmark_flags;  // passed to Google Benchmark
};

// Parses argv into `options`; on a mistake, returns what was wrong.
std::string ParseOptions(int argc, char** argv, Options& options) {
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    // "--name value" or "--name=value".
    auto value_of = [&](const std::string& name, std::string& value) -> bool {
      if (arg == name) {
        if (i + 1 >= argc) return false;
        value = argv[++i];
        return true;
      }
      if (arg.rfind(name + "=", 0) == 0) {
        value = arg.substr(name.size() + 1);
        return true;
      }
      return false;
    };
    std::string value;
    if (arg == "--quick") {
      options.quick = true;
    } else if (arg == "--help" || arg == "-h") {
      return "help";
    } else if (value_of("--filter", value)) {
      options.filter = value;
    } else if (value_of("--out", value)) {
      if (value.empty()) return "--out needs a directory";
      options.out = value;
    } else if (value_of("--baseline", value)) {
      if (value.empty()) return "--baseline needs a results.json";
      options.baseline = value;
    } else if (value_of("--trace", value)) {
      if (value.empty()) return "--trace needs a file";
      options.trace = value;
    } else if (value_of("--trace_events", value)) {
      char* end = nullptr;
      const unsigned long long n = std::strtoull(value.c_str(), &end, 10);
      if (value.empty() || *end != '\0' || value[0] == '-' || n < 1 ||
          n > trace::TraceRecorder::kMaxCapacity) {
        return "--trace_events wants a whole number from 1 to " +
               std::to_string(trace::TraceRecorder::kMaxCapacity) + ", not \"" + value + "\"";
      }
      options.trace_events = static_cast<size_t>(n);
    } else if (value_of("--repetitions", value)) {
      char* end = nullptr;
      const long n = std::strtol(value.c_str(), &end, 10);
      if (value.empty() || *end != '\0' || n < 1 || n > 1000) {
        return "--repetitions wants a whole number from 1 to 1000, not \"" + value + "\"";
      }
      options.repetitions = static_cast<int>(n);
    } else if (arg.rfind("--benchmark_repetitions", 0) == 0) {
      // The library would repeat each run inside one measurement of the
      // kernel's counters; the report interleaves its own repetitions.
      return "--benchmark_repetitions is not supported; use --repetitions";
    } else if (arg.rfind("--benchmark_", 0) == 0) {
      options.benchmark_flags.push_back(arg);
    } else if (arg == "--filter" || arg == "--out" || arg == "--repetitions" ||
               arg == "--baseline" || arg == "--trace" || arg == "--trace_events") {
      return arg + " needs a value";
    } else {
      return "unknown option \"" + arg + "\"";
    }
  }
  if (options.repetitions == 0) options.repetitions = options.quick ? 1 : kDefaultRepetitions;
  return "";
}

// Our default output directory belongs to the workspace.
std::filesystem::path OutputDirectory(const std::string& requested) {
  if (requested.empty()) {
    const char* workspace = std::getenv("BUILD_WORKSPACE_DIRECTORY");
    return std::filesystem::path(workspace != nullptr ? workspace : ".") / "results";
  }
  return FromWorkingDirectory(requested);
}

// A Google Benchmark filter that matches exactly the benchmark `name`; the
// library appends "/iterations:N/real_time" and such to the name it matches.
std::string ExactFilter(const std::string& name) {
  std::string pattern = "^";
  for (char c : name) {
    if (std::string(".[]{}()*+?|^$\\").find(c) != std::string::npos) pattern += '\\';
    pattern += c;
  }
  return pattern + "(/|$)";
}

class CollectingReporter : public benchmark::BenchmarkReporter {
 public:
  bool ReportContext(const Context&) override { return true; }

  void ReportRuns(const std::vector<Run>& runs) override {
    for (const Run& run : runs) {
      if (run.run_type != Run::RT_Iteration) continue;
      Measurement measurement;
      measurement.name = run.run_name.function_name;
      if (run.error_occurred) {
        measurement.error = run.error_message.empty() ? "failed" : run.error_message;
      } else {
        measurement.iterations = run.iterations;
        measurement.ns_per_iteration =
            run.GetAdjustedRealTime() / benchmark::GetTimeUnitMultiplier(run.time_unit) * 1e9;
        for (const auto& [name, counter] : run.counters) {
          measurement.counters[name] = counter.value;
        }
      }
      Add(std::move(measurement));
    }
  }

  void Add(Measurement measurement) { measurements_.push_back(std::move(measurement)); }

  // Adds what the kernel counted while a benchmark ran (`used`) to the
  // measurements it produced, those from index `first` on, per iteration
  // or per operation (kOperationsCounter).
  void AddProcessCounts(size_t first, const ProcessCounts& used) {
    for (size_t i = first; i < measurements_.size(); ++i) {
      Measurement& m = measurements_[i];
      if (!m.error.empty() || m.iterations <= 0) continue;
      double operations = static_cast<double>(m.iterations);
      if (auto it = m.counters.find(kOperationsCounter); it != m.counters.end()) {
        if (it->second > 0) operations = it->second;
        m.counters.erase(it);
      }
      auto per_operation = [&](uint64_t count) { return static_cast<double>(count) / operations; };
      if (used.has_syscalls) {
        m.counters[kSyscallsCounter] = per_operation(used.syscalls);
        if (used.child_syscalls > 0) {
          m.counters[kChildSyscallsCounter] = per_operation(used.child_syscalls);
        }
      }
      m.counters[kVoluntarySwitchesCounter] = per_operation(used.voluntary_switches);
      m.counters[kInvoluntarySwitchesCounter] = per_operation(used.involuntary_switches);
      if (used.child_voluntary_switches > 0) {
        m.counters[kChildVoluntarySwitchesCounter] = per_operation(used.child_voluntary_switches);
      }
    }
  }

  const std::vector<Measurement>& measurements() const { return measurements_; }

 private:
  std::vector<Measurement> measurements_;
};

// "[ 37/180  20%] repetition 2/5  stream_8B/memory  (41 s, about 2 min left)".
// On a terminal it rewrites one line; in a log (CI) it prints a line at
// every tenth of the way, so the log stays short.
class Progress {
 public:
  explicit Progress(size_t total) : total_(total), terminal_(isatty(STDERR_FILENO) == 1) {}

  void Show(size_t done, int repetition, int repetitions, const std::string& name) {
    const int percent = static_cast<int>(100 * done / total_);
    if (!terminal_ && done != 0 && percent / 10 == last_tenth_) return;
    last_tenth_ = percent / 10;
    const double elapsed = Seconds();
    std::string left;
    if (done > 0) {
      const double remaining = elapsed * static_cast<double>(total_ - done) / done;
      left = remaining >= 90
                 ? ", about " + std::to_string(static_cast<int>(remaining / 60 + 0.5)) + " min left"
                 : ", about " + std::to_string(static_cast<int>(remaining + 0.5)) + " s left";
    }
    std::fprintf(stderr, "%s[%4zu/%zu %3d%%] repetition %d/%d  %s  (%d s%s)%s",
                 terminal_ ? "\r\033[K" : "", done + 1, total_, percent, repetition, repetitions,
                 name.c_str(), static_cast<int>(elapsed), left.c_str(), terminal_ ? "" : "\n");
    std::fflush(stderr);
  }

  void Finish() {
    std::fprintf(stderr, "%sran %zu benchmark runs in %d s\n", terminal_ ? "\r\033[K" : "", total_,
                 static_cast<int>(Seconds()));
  }

 private:
  double Seconds() const {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  }

  const size_t total_;
  const bool terminal_;
  int last_tenth_ = -1;
  const std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now();
};

std::string UtcNow() {
  const std::time_t now = std::time(nullptr);
  std::tm utc{};
  gmtime_r(&now, &utc);
  char text[32];
  std::strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%SZ", &utc);
  return text;
}

bool WriteFile(const std::filesystem::path& path, const std::string& content) {
  std::ofstream file(path, std::ios::binary | std::ios::trunc);
  file << content;
  file.close();
  if (!file) {
    std::fprintf(stderr, "compare: cannot write %s\n", path.c_str());
    return false;
  }
  return true;
}

int Main(int argc, char** argv) {
  Options options;
  if (const std::string problem = ParseOptions(argc, argv, options); !problem.empty()) {
    if (problem == "help") {
      std::fputs(kUsage, stdout);
      return 0;
    }
    std::fprintf(stderr, "compare: %s\n%s", problem.c_str(), kUsage);
    return 2;
  }
  std::vector<std::string> library_args_storage = {argv[0]};
  if (options.quick) library_args_storage.push_back("--benchmark_min_time=0.001");
  for (const std::string& flag : options.benchmark_flags) library_args_storage.push_back(flag);
  std::vector<char*> library_args;
  for (std::string& arg : library_args_storage) library_args.push_back(arg.data());
  int library_argc = static_cast<int>(library_args.size());
  benchmark::Initialize(&library_argc, library_args.data());
  if (benchmark::ReportUnrecognizedArguments(library_argc, library_args.data())) return 2;

  RegisterJobs(JobSettings{options.quick});
  // POSIX <regex.h> rather than std::regex: GCC 12 reports false
  // maybe-uninitialized errors inside libstdc++'s regex under -O1 (asan).
  regex_t filter;
  if (int rc = regcomp(&filter, options.filter.empty() ? "." : options.filter.c_str(),
                       REG_EXTENDED | REG_NOSUB);
      rc != 0) {
    char reason[256];
    regerror(rc, &filter, reason, sizeof reason);
    std::fprintf(stderr, "compare: --filter \"%s\" is not a valid regex: %s\n",
                 options.filter.c_str(), reason);
    return 2;
  }

  std::vector<std::string> selected;
  for (const std::string& name : JobNames()) {
    if (regexec(&filter, name.c_str(), 0, nullptr, 0) == 0) selected.push_back(name);
  }
  regfree(&filter);
  if (selected.empty()) {
    std::fprintf(stderr, "compare: no benchmark matches --filter \"%s\"; they are:\n",
                 options.filter.c_str());
    for (const std::string& name : JobNames()) std::fprintf(stderr, "  %s\n", name.c_str());
    return 2;
  }

  // Read before anything runs: a bad baseline fails in a second, not after
  // the whole run.
  std::optional<Baseline> baseline;
  if (!options.baseline.empty()) {
    absl::StatusOr<Baseline> loaded = LoadBaseline(FromWorkingDirectory(options.baseline));
    if (!loaded.ok()) {
      std::fprintf(stderr, "compare: %s\n", std::string(loaded.status().message()).c_str());
      return 2;
    }
    baseline = *std::move(loaded);
  }

  // Opened before anything runs, for the same reason.
  std::unique_ptr<trace::TraceRecorder> recorder;
  if (!options.trace.empty()) {
    absl::StatusOr<std::unique_ptr<trace::TraceRecorder>> created =
        trace::TraceRecorder::Create(FromWorkingDirectory(options.trace), options.trace_events);
    if (!created.ok()) {
      std::fprintf(stderr, "compare: --trace: %s\n",
                   std::string(created.status().message()).c_str());
      return 2;
    }
    recorder = *std::move(created);
  }

  const std::filesystem::path out = OutputDirectory(options.out);
  std::error_code error;
  std::filesystem::create_directories(out, error);
  if (error) {
    std::fprintf(stderr, "compare: cannot create --out directory %s: %s\n", out.c_str(),
                 error.message().c_str());
    return 2;
  }

  // Before any benchmark starts a thread or a process, so that all of them
  // are counted.
  const ProcessCounters process = ProcessCounters::Open();
  RunInfo run{UtcNow(), options.repetitions, options.quick, options.filter,
              process.syscalls_unavailable()};
  const Machine machine = DescribeMachine();
  std::printf("%s", FormatPreamble(machine, run).c_str());
  std::fflush(stdout);

  CollectingReporter collector;
  Progress progress(selected.size() * static_cast<size_t>(options.repetitions));
  std::mt19937 random(std::random_device{}());
  size_t done = 0;
  if (recorder != nullptr) {
    if (absl::Status started = recorder->Start(); !started.ok()) {
      std::fprintf(stderr, "compare: --trace: %s\n", std::string(started.message()).c_str());
      return 1;
    }
  }
  for (int repetition = 1; repetition <= options.repetitions; ++repetition) {
    std::shuffle(selected.begin(), selected.end(), random);
    for (const std::string& name : selected) {
      progress.Show(done, repetition, options.repetitions, name);
      const size_t first = collector.measurements().size();
      const ProcessCounts before = process.Read();
      const size_t ran = benchmark::RunSpecifiedBenchmarks(&collector, ExactFilter(name));
      collector.AddProcessCounts(first, process.Read() - before);
      if (ran != 1) {
        collector.Add(Measurement{name, 0, {}, "the benchmark library did not run it", 0});
      }
      ++done;
    }
  }
  progress.Finish();
  benchmark::Shutdown();
  if (recorder != nullptr) {
    absl::StatusOr<size_t> traced = recorder->StopAndWrite();
    if (!traced.ok()) {
      std::fprintf(stderr, "compare: --trace: %s\n", std::string(traced.status().message()).c_str());
      return 1;
    }
    std::printf("wrote the trace %s: %zu events, the last of %llu recorded%s\n",
                recorder->path().c_str(), *traced,
                static_cast<unsigned long long>(recorder->recorded()),
                recorder->dropped() > 0 ? " (some dropped where two threads met in the ring)" : "");
  }

  const std::vector<Table> tables = Summarise(collector.measurements());
  std::printf("%s", FormatTables(tables).c_str());
  std::optional<Comparison> comparison;
  if (baseline.has_value()) {
    comparison = Compare(*baseline, tables, machine);
    std::printf("%s", FormatComparison(*comparison).c_str());
  }
  const Comparison* compared = comparison.has_value() ? &*comparison : nullptr;

  const bool written =
      WriteFile(out / "results.json", ToJson(tables, machine, run, compared)) &&
      WriteFile(out / "report.html", ToHtml(tables, machine, run, compared));
  if (!written) return 1;
  std::printf("\nwrote %s and %s\n", (out / "results.json").c_str(), (out / "report.html").c_str());
  return 0;
}

}  // namespace
}  // namespace taskrt::bench

int main(int argc, char** argv) { return taskrt::bench::Main(argc, argv); }
