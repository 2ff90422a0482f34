#ifndef TASKRT_BENCHMARKS_SUBPROCESS_H_
#define TASKRT_BENCHMARKS_SUBPROCESS_H_

// Running a baseline or a load generator (Go's channel program, wrk) as a
// subprocess from a benchmark, and quoting its output in the report.

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "benchmark/benchmark.h"

namespace taskrt::bench {

// Runs `args` (args[0] a path, or a name looked up on PATH) and waits for
// it. Returns its exit status (-1 if a signal killed it) and, in `output`,
// what it wrote to stdout and stderr. kFailedPrecondition when it cannot
// start, naming the program and why.
absl::StatusOr<int> RunCapturingOutput(std::vector<std::string> args, std::string& output);

// One line for the report: `text`'s lines joined with "; ".
std::string OneLine(std::string text);

// The path of `runfile` ("taskrt/benchmarks/go/stream_chan_bin": workspace
// name, then the path in it) in the runfiles tree: under RUNFILES_DIR when
// set, else <binary>.runfiles beside the running binary, else the working
// directory's parent (`bazel run` starts a binary in <binary>.runfiles/
// taskrt). Returns "" when it is in none of them, with the roots tried in
// `looked_in`.
std::string FindRunfile(const std::string& runfile, std::string& looked_in);

// Runs the program `runfile` of the runfiles with `args` and returns the
// number it printed after `key` ("ns_per_message 57.3" for key
// "ns_per_message"). kNotFound when the program is not in the runfiles,
// kFailedPrecondition when it cannot start, fails, or prints no positive
// number there; each message says which and quotes its output.
absl::StatusOr<double> RunForFigure(const std::string& runfile, std::vector<std::string> args,
                                    const std::string& key);

// A competitor row measured by a program of the runfiles: runs it with
// N = the benchmark's iteration count and gives every iteration the time in
// nanoseconds it printed after `key` as its manual time (the benchmark is
// registered with UseManualTime). Returns false, having skipped the row
// with RunForFigure's reason, when there is no figure.
bool RunFigureAsIterationTime(benchmark::State& state, const std::string& runfile,
                              const std::string& key);

}  // namespace taskrt::bench

#endif  // TASKRT_BENCHMARKS_SUBPROCESS_H_
