#ifndef TASKRT_BENCHMARKS_GO_PROGRAM_H_
#define TASKRT_BENCHMARKS_GO_PROGRAM_H_

// Go's rows of the report: a program of benchmarks/go/ (built by a genrule
// into the runfiles as <name>_bin) runs once per repetition as a
// subprocess, measures N iterations itself and prints "<key> <ns>"; the job
// reports that figure as every iteration's manual time, so process
// start-up is not counted. A missing or failing program makes the row
// unavailable with the reason.

#include <string>
#include <vector>

#include "benchmark/benchmark.h"

namespace taskrt::bench {

// Runs benchmarks/go/<name>_bin with `args` followed by N (the job's
// iteration count) and reports the number after `key` (ns per iteration).
// Register the job with UseManualTime() and an Iterations() count.
void RunGoProgram(benchmark::State& state, const std::string& name,
                  const std::vector<std::string>& args, const std::string& key);

}  // namespace taskrt::bench

#endif  // TASKRT_BENCHMARKS_GO_PROGRAM_H_
