// compare --trace end to end: the binary as a user runs it, on one job that
// spawns units which send messages, and the trace read back as a viewer
// reads it. A path that cannot be written fails before any job runs.

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "benchmarks/subprocess.h"
#include "core/trace_testing.h"
#include "gtest/gtest.h"

namespace {

constexpr char kBinary[] = "benchmarks/compare";

struct Finished {
  int status = -1;     // the exit status, -1 when it did not start or a signal ended it
  std::string output;  // standard output and error together
};

Finished RunCompare(const std::vector<std::string>& flags) {
  std::vector<std::string> args = {kBinary};
  args.insert(args.end(), flags.begin(), flags.end());
  Finished run;
  absl::StatusOr<int> status = taskrt::bench::RunCapturingOutput(args, run.output);
  if (!status.ok()) run.output = status.status().ToString();
  run.status = status.value_or(-1);
  return run;
}

TEST(CompareTrace, TheTraceHoldsTheJobsUnitsAndMessagesOnNamedWorkerLanes) {
  const std::string dir = ::testing::TempDir();
  const std::string path = dir + "/compare_trace.json";
  const Finished run = RunCompare({"--quick", "--filter=fan_in_1000/work_stealing\\+epoll\\+memory",
                              "--out=" + dir, "--trace=" + path, "--trace_events=200000"});
  ASSERT_TRUE(run.status == 0) << run.output;
  EXPECT_TRUE(absl::StrContains(run.output, "wrote the trace " + path)) << run.output;

  using taskrt::trace::testing::EventsOf;
  const nlohmann::json trace = taskrt::trace::testing::ReadTrace(path);
  ASSERT_TRUE(trace.is_object()) << path << " is not JSON";
  std::vector<nlohmann::json> spawns = EventsOf(trace, "i", "spawn");
  ASSERT_GE(spawns.size(), 1u);
  const uint64_t unit = spawns.back()["args"]["unit"].get<uint64_t>();
  std::vector<nlohmann::json> runs =
      EventsOf(trace, "X", "run", taskrt::trace::testing::OfUnit(unit));
  ASSERT_EQ(runs.size(), 1u) << "unit " << unit;
  const std::vector<std::string> names =
      taskrt::trace::testing::LaneNames(trace, runs[0]["tid"].get<uint64_t>());
  ASSERT_EQ(names.size(), 1u);
  EXPECT_TRUE(absl::StrContains(names[0], "work_stealing")) << names[0];
  // Each task's message to the loop: a flow from its send to the receive.
  EXPECT_GE(EventsOf(trace, "s", "message").size(), 1u);
  EXPECT_GE(EventsOf(trace, "f", "message").size(), 1u);
}

TEST(CompareTrace, APathThatCannotBeWrittenFailsBeforeAnyJobRuns) {
  const Finished run = RunCompare({"--quick", "--trace=/nonexistent-directory-for-taskrt/t.json"});
  EXPECT_EQ(run.status, 2) << run.output;
  EXPECT_TRUE(absl::StrContains(run.output, "cannot write /nonexistent-directory-for-taskrt/t.json"))
      << run.output;
  EXPECT_FALSE(absl::StrContains(run.output, "repetition")) << "a job ran: " << run.output;
}

TEST(CompareTrace, ABadEventCountIsRefused) {
  for (const char* count : {"0", "-1", "lots", "99999999999"}) {
    const Finished run = RunCompare({"--quick", "--trace=/tmp/unused.json",
                                std::string("--trace_events=") + count});
    EXPECT_EQ(run.status, 2) << run.output;
    EXPECT_TRUE(absl::StrContains(run.output, "--trace_events wants a whole number")) << run.output;
  }
}

}  // namespace
