#ifndef TASKRT_BENCHMARKS_SUBPROCESS_H_
#define TASKRT_BENCHMARKS_SUBPROCESS_H_

// Running a baseline or a load generator (Go's channel program, wrk) as a
// subprocess from a benchmark, and quoting its output in the report.

#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace taskrt::bench {

// Runs `args` (args[0] a path, or a name looked up on PATH) and waits for
// it. Returns its exit status (-1 if a signal killed it) and, in `output`,
// what it wrote to stdout and stderr. kFailedPrecondition when it cannot
// start, naming the program and why.
absl::StatusOr<int> RunCapturingOutput(std::vector<std::string> args, std::string& output);

// Where the runfiles are: RUNFILES_DIR when set, else <binary>.runfiles
// beside the running binary (bazel-bin/benchmarks/compare.runfiles), else
// the working directory's parent (`bazel run` starts us in
// compare.runfiles/taskrt). Returns the path of the executable `relative`
// (e.g. "taskrt/tools/nats_worker/nats_worker") under the first root that
// has it, or "" with the roots tried in `looked_in`.
std::string FindRunfile(const std::string& relative, std::string& looked_in);

// One line for the report: `text`'s lines joined with "; ".
std::string OneLine(std::string text);

}  // namespace taskrt::bench

#endif  // TASKRT_BENCHMARKS_SUBPROCESS_H_
