// Go 1.19's buffered channel (Debian's golang-go) as a competitor baseline for
// our channels, in the same run as our backends:
//   stream_8B/go_buffered_chan  one goroutine sends the ints 0..N-1 through a
//                               make(chan int, 1024) to the main goroutine,
//                               which checks each sequence number, with
//                               GOMAXPROCS(2): the stream_8B job of
//                               channels.cc, one iteration = one 8-byte
//                               message.
// The Go side is benchmarks/go/stream_chan.go, built by a genrule into the
// runfiles; each repetition runs it once as a subprocess with N = the
// iteration count (after its own short warm-up stream) and reports the time
// per message it measured as every iteration's manual time. So the figure
// includes no process start-up, and N is the stream_8B jobs' count. If the
// program is missing or fails, the row is unavailable with the reason.

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "benchmark/benchmark.h"
#include "benchmarks/job_registry.h"
#include "benchmarks/subprocess.h"


namespace taskrt {
namespace {

// As channels.cc's stream_8B jobs, so that the rows stream the same count.
constexpr int64_t kStream8BMessages = 1000000;

// The Go program inside the runfiles tree of the workspace "taskrt".
constexpr char kProgram[] = "taskrt/benchmarks/go/stream_chan_bin";

// Where the runfiles are: RUNFILES_DIR when set, else <binary>.runfiles
// beside the running binary (bazel-bin/benchmarks/compare.runfiles), else
// the working directory's parent (`bazel run` starts us in
// compare.runfiles/taskrt). Returns the program's path, or "" with the roots
// tried in `looked_in`.
std::string FindProgram(std::string& looked_in) {
  std::vector<std::filesystem::path> roots;
  if (const char* dir = std::getenv("RUNFILES_DIR"); dir != nullptr && *dir != '\0') {
    roots.emplace_back(dir);
  }
  std::error_code error;
  const std::filesystem::path self = std::filesystem::read_symlink("/proc/self/exe", error);
  if (!error) roots.emplace_back(self.string() + ".runfiles");
  roots.push_back(std::filesystem::current_path(error).parent_path());
  for (const std::filesystem::path& root : roots) {
    const std::filesystem::path program = root / kProgram;
    if (access(program.c_str(), X_OK) == 0) return program.string();
    looked_in += (looked_in.empty() ? "" : ", ") + root.string();
  }
  return "";
}

void GoStream(benchmark::State& state) {
  std::string looked_in;
  const std::string program = FindProgram(looked_in);
  if (program.empty()) {
    state.SkipWithError(("Go program benchmarks/go/stream_chan_bin not in the runfiles (looked in " +
                         looked_in + "); run through tools/bazel run //benchmarks:compare")
                            .c_str());
    return;
  }
  std::string output;
  const absl::StatusOr<int> status =
      bench::RunCapturingOutput({program, std::to_string(state.max_iterations)}, output);
  if (!status.ok()) {
    state.SkipWithError(status.status().ToString().c_str());
    return;
  }
  if (*status != 0) {
    state.SkipWithError(("stream_chan failed (exit status " + std::to_string(*status) +
                         "): " + bench::OneLine(output))
                            .c_str());
    return;
  }
  constexpr char kKey[] = "ns_per_message ";
  const size_t at = output.find(kKey);
  const double ns = at == std::string::npos
                        ? 0
                        : std::strtod(output.c_str() + at + sizeof kKey - 1, nullptr);
  if (!std::isfinite(ns) || ns <= 0) {
    state.SkipWithError(("stream_chan printed no ns_per_message: " + bench::OneLine(output)).c_str());
    return;
  }
  for (auto _ : state) state.SetIterationTime(ns * 1e-9);
  state.SetBytesProcessed(state.iterations() * int64_t{sizeof(int64_t)});
}

void Register() {
  bench::AddJob("stream_8B/go_buffered_chan", GoStream)
      ->UseManualTime()
      ->Iterations(bench::Iterations(kStream8BMessages));
}

TASKRT_BENCHMARK_JOBS(Register);

}  // namespace
}  // namespace taskrt
