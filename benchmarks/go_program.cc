#include "benchmarks/go_program.h"

#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "benchmarks/subprocess.h"

namespace taskrt::bench {

void RunGoProgram(benchmark::State& state, const std::string& name,
                  const std::vector<std::string>& args, const std::string& key) {
  const std::string relative = "taskrt/benchmarks/go/" + name + "_bin";
  std::string looked_in;
  const std::string program = FindRunfile(relative, looked_in);
  if (program.empty()) {
    state.SkipWithError(("Go program benchmarks/go/" + name + "_bin not in the runfiles (looked in " +
                         looked_in + "); run through tools/bazel run //benchmarks:compare")
                            .c_str());
    return;
  }
  std::vector<std::string> command = {program};
  command.insert(command.end(), args.begin(), args.end());
  command.push_back(std::to_string(state.max_iterations));
  std::string output;
  const absl::StatusOr<int> status = RunCapturingOutput(command, output);
  if (!status.ok()) {
    state.SkipWithError(status.status().ToString().c_str());
    return;
  }
  if (*status != 0) {
    state.SkipWithError((name + " failed (exit status " + std::to_string(*status) +
                         "): " + OneLine(output))
                            .c_str());
    return;
  }
  const std::string prefix = key + " ";
  const size_t at = output.find(prefix);
  const double ns =
      at == std::string::npos ? 0 : std::strtod(output.c_str() + at + prefix.size(), nullptr);
  if (!std::isfinite(ns) || ns <= 0) {
    state.SkipWithError((name + " printed no " + key + ": " + OneLine(output)).c_str());
    return;
  }
  for (auto _ : state) state.SetIterationTime(ns * 1e-9);
}

}  // namespace taskrt::bench
