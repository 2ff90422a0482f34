#include "benchmarks/baseline.h"

#include <fstream>
#include <string>
#include <vector>

#include "benchmarks/report.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace taskrt::bench {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

Machine ThisMachine() { return Machine{2, "AMD EPYC", "6.18.44"}; }
RunInfo SomeRun() { return RunInfo{"2026-12-06T17:00:00Z", 5, false, "", ""}; }

// Five repetitions of `name`, each `ns` plus 0..4.
std::vector<Measurement> Five(const std::string& name, double ns) {
  std::vector<Measurement> out;
  for (int i = 0; i < 5; ++i) out.push_back(Measurement{name, ns + i, {}, "", 1000});
  return out;
}

std::vector<Table> Tables(std::vector<std::vector<Measurement>> groups) {
  std::vector<Measurement> all;
  for (auto& group : groups) all.insert(all.end(), group.begin(), group.end());
  return Summarise(all);
}

std::string WriteTemp(const std::string& name, const std::string& content) {
  const std::string path = ::testing::TempDir() + "/" + name;
  std::ofstream(path, std::ios::binary | std::ios::trunc) << content;
  return path;
}

TEST(MannWhitneyTest, ExactForSmallSamplesWithoutTies) {
  // All of one below all of the other: 2 of the C(10, 5) = 252 orders.
  EXPECT_NEAR(MannWhitneyPValue({1, 2, 3, 4, 5}, {6, 7, 8, 9, 10}), 2.0 / 252, 1e-12);
  EXPECT_NEAR(MannWhitneyPValue({6, 7, 8, 9, 10}, {1, 2, 3, 4, 5}), 2.0 / 252, 1e-12);
  EXPECT_NEAR(MannWhitneyPValue({1, 2, 3}, {4, 5, 6}), 0.1, 1e-12);
  // Interleaved: U = 6 of 9; P(U >= 6) = 7 / 20.
  EXPECT_NEAR(MannWhitneyPValue({1, 3, 5}, {2, 4, 6}), 0.7, 1e-12);
}

TEST(MannWhitneyTest, NormalApproximationForLargerSamplesAndTies) {
  // Values from scipy.stats.mannwhitneyu's asymptotic method (continuity
  // and tie corrections), computed independently.
  EXPECT_NEAR(MannWhitneyPValue({10, 11, 12, 13, 14, 15, 16, 17, 18},
                                {14.5, 15.5, 16.5, 17.5, 18.5, 19.5, 20.5, 21.5, 22.5}),
              0.008071487425268021, 1e-9);
  EXPECT_NEAR(MannWhitneyPValue({1, 2, 2, 3, 4, 5, 6, 7, 8}, {5, 6, 7, 8, 9, 10, 11, 12, 13}),
              0.0046115184811896534, 1e-9);
}

TEST(MannWhitneyTest, ExactWheneverOneSampleHasEightOrFewerAsScipy) {
  // 8 against 8, U = 51: scipy's exact p is 0.0499 (the normal
  // approximation would say 0.052, not significant).
  EXPECT_NEAR(MannWhitneyPValue({1, 5, 11, 12, 13, 14, 15, 16}, {2, 3, 4, 6, 7, 8, 9, 10}),
              0.04988344988344988, 1e-9);
  // 3 against 20, the three lowest: 2 of C(23, 3) = 1771 orders.
  std::vector<double> high;
  for (int i = 0; i < 20; ++i) high.push_back(10 + i);
  EXPECT_NEAR(MannWhitneyPValue({1, 2, 3}, high), 2.0 / 1771, 1e-12);
}

TEST(MannWhitneyTest, TooFewValuesAndAllEqual) {
  EXPECT_LT(MannWhitneyPValue({1}, {2, 3}), 0);
  EXPECT_LT(MannWhitneyPValue({}, {}), 0);
  EXPECT_DOUBLE_EQ(MannWhitneyPValue({5, 5, 5}, {5, 5, 5}), 1);
}

TEST(LoadBaselineTest, ReadsWhatToJsonWrites) {
  const std::string json =
      ToJson(Tables({Five("ping/memory", 100), Five("ping/socketpair", 900)}), ThisMachine(),
             SomeRun());
  absl::StatusOr<Baseline> baseline = LoadBaseline(WriteTemp("good.json", json));
  ASSERT_TRUE(baseline.ok()) << baseline.status();
  EXPECT_EQ(baseline->started, "2026-12-06T17:00:00Z");
  EXPECT_EQ(baseline->machine.cpu_model, "AMD EPYC");
  ASSERT_EQ(baseline->rows.size(), 2u);
  EXPECT_EQ(baseline->rows[0].job, "ping");
  EXPECT_EQ(baseline->rows[0].backend, "memory");
  EXPECT_DOUBLE_EQ(baseline->rows[0].median_ns, 102);
  EXPECT_EQ(baseline->rows[0].samples_ns, (std::vector<double>{100, 101, 102, 103, 104}));
}

TEST(LoadBaselineTest, RefusesWhatIsNotAResultsFileWithOneClearLine) {
  const std::string good =
      ToJson(Tables({Five("ping/memory", 100)}), ThisMachine(), SomeRun());
  struct Case {
    std::string name;
    std::string content;
    absl::StatusCode code;
    std::string says;
  };
  const std::vector<Case> cases = {
      {"empty.json", "", absl::StatusCode::kInvalidArgument, "not JSON (empty)"},
      {"truncated.json", good.substr(0, good.size() / 2), absl::StatusCode::kInvalidArgument,
       "not JSON (truncated or damaged)"},
      {"text.json", "hello", absl::StatusCode::kInvalidArgument, "not JSON"},
      {"list.json", "[1, 2]", absl::StatusCode::kInvalidArgument, "not an object"},
      {"v1.json", R"({"machine": {}, "run": {}, "results": []})",
       absl::StatusCode::kFailedPrecondition, "before results carried a format version"},
      {"v3.json", R"({"format_version": 3, "machine": {}, "results": []})",
       absl::StatusCode::kFailedPrecondition, "format version 3"},
      {"noresults.json", R"({"format_version": 2, "machine": {}})",
       absl::StatusCode::kInvalidArgument, "no \"results\""},
      {"norows.json", R"({"format_version": 2, "machine": {}, "results": []})",
       absl::StatusCode::kInvalidArgument, "no measured rows"},
      {"badsample.json",
       R"({"format_version": 2, "machine": {}, "results": [{"job": "j", "backend": "b",
           "metric": "median_time_per_iteration", "value": 1, "samples": ["x"]}]})",
       absl::StatusCode::kInvalidArgument, "not a positive number"},
      {"zero.json",
       R"({"format_version": 2, "machine": {}, "results": [{"job": "j", "backend": "b",
           "metric": "median_time_per_iteration", "value": 0, "samples": [0]}]})",
       absl::StatusCode::kInvalidArgument, "not a positive number"},
      {"huge.json",
       R"({"format_version": 2, "machine": {}, "results": [{"job": "j", "backend": "b",
           "metric": "median_time_per_iteration", "value": 1e999, "samples": [1]}]})",
       absl::StatusCode::kInvalidArgument, ""},
      {"bigversion.json", R"({"format_version": 99999999999999, "machine": {}, "results": []})",
       absl::StatusCode::kFailedPrecondition, "format version 99999999999999"},
  };
  for (const Case& c : cases) {
    const std::string path = WriteTemp(c.name, c.content);
    absl::StatusOr<Baseline> baseline = LoadBaseline(path);
    ASSERT_FALSE(baseline.ok()) << c.name;
    EXPECT_EQ(baseline.status().code(), c.code) << c.name << ": " << baseline.status();
    EXPECT_THAT(baseline.status().message(), HasSubstr(c.says)) << c.name;
    EXPECT_THAT(baseline.status().message(), HasSubstr(path)) << c.name;
    EXPECT_THAT(std::string(baseline.status().message()), Not(HasSubstr("\n"))) << c.name;
  }
  absl::StatusOr<Baseline> directory = LoadBaseline(::testing::TempDir());
  EXPECT_EQ(directory.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(directory.status().message(), HasSubstr("not a regular file"));
  absl::StatusOr<Baseline> device = LoadBaseline("/dev/zero");
  EXPECT_EQ(device.status().code(), absl::StatusCode::kInvalidArgument);
  const std::string twice = WriteTemp(
      "twice.json",
      R"({"format_version": 2, "machine": {}, "results": [
          {"job": "j", "backend": "b", "metric": "median_time_per_iteration", "value": 1, "samples": [1]},
          {"job": "j", "backend": "b", "metric": "median_time_per_iteration", "value": 2, "samples": [2]}]})");
  absl::StatusOr<Baseline> duplicated = LoadBaseline(twice);
  EXPECT_EQ(duplicated.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(duplicated.status().message(), HasSubstr("two median times for j/b"));
  absl::StatusOr<Baseline> missing = LoadBaseline(::testing::TempDir() + "/no/such.json");
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(missing.status().message(), HasSubstr("No such file"));
}

TEST(LoadBaselineTest, FieldsOfTheWrongTypeReadAsAbsentNotAsACrash) {
  absl::StatusOr<Baseline> baseline = LoadBaseline(WriteTemp(
      "types.json",
      R"({"format_version": 2, "machine": {"cpu_count": "two", "cpu_model": 7, "kernel": null},
          "run": {"started": []}, "results": [{"job": "j", "backend": "b",
          "metric": "median_time_per_iteration", "value": 5, "samples": [5, 6]},
          {"job": 1, "metric": "p99_ns"}]})"));
  ASSERT_TRUE(baseline.ok()) << baseline.status();
  EXPECT_EQ(baseline->machine.cpu_count, 0);
  EXPECT_EQ(baseline->machine.cpu_model, "unknown");
  EXPECT_EQ(baseline->started, "");
  ASSERT_EQ(baseline->rows.size(), 1u);
}

TEST(CompareTest, SaysFasterSlowerOrNoChangeFromTheRepetitions) {
  const std::string before_json =
      ToJson(Tables({Five("j/fast_now", 200), Five("j/slow_now", 100), Five("j/same", 100),
                     Five("j/gone", 100)}),
             ThisMachine(), SomeRun());
  absl::StatusOr<Baseline> baseline = LoadBaseline(WriteTemp("before.json", before_json));
  ASSERT_TRUE(baseline.ok()) << baseline.status();
  std::vector<Measurement> same;
  for (double ns : {99.5, 100.5, 101.5, 102.5, 103.5}) {
    same.push_back(Measurement{"j/same", ns, {}, "", 1000});
  }
  const std::vector<Table> after = Tables(
      {Five("j/fast_now", 100), Five("j/slow_now", 200), same, Five("j/new", 50)});
  const Comparison comparison = Compare(*baseline, after, ThisMachine());
  EXPECT_TRUE(comparison.machine_warning.empty());
  std::map<std::string, std::string> verdicts;
  for (const ComparedRow& row : comparison.rows) verdicts[row.backend] = row.verdict;
  EXPECT_EQ(verdicts["fast_now"], "faster");
  EXPECT_EQ(verdicts["slow_now"], "slower");
  EXPECT_EQ(verdicts["same"], "no significant change");
  EXPECT_EQ(comparison.only_before, (std::vector<std::string>{"j/gone"}));
  EXPECT_EQ(comparison.only_after, (std::vector<std::string>{"j/new"}));

  const std::string text = FormatComparison(comparison);
  EXPECT_THAT(text, HasSubstr("j/fast_now"));
  EXPECT_THAT(text, HasSubstr("-49.5%"));
  EXPECT_THAT(text, HasSubstr("+98.0%"));
  EXPECT_THAT(text, HasSubstr("0.008"));
  EXPECT_THAT(text, HasSubstr("wants 9 or more"));
  EXPECT_THAT(text, HasSubstr("1 only in the baseline: j/gone"));

  const std::string json = ToJson(after, ThisMachine(), SomeRun(), &comparison);
  EXPECT_THAT(json, HasSubstr("\"metric\": \"before_ns\", \"value\": 202"));
  EXPECT_THAT(json, HasSubstr("\"metric\": \"change\", \"value\": 0.50495"));
  EXPECT_THAT(json, HasSubstr("\"verdict\": \"faster\""));
  EXPECT_THAT(json, HasSubstr("\"metric\": \"utest_p\""));
  const std::string html = ToHtml(after, ThisMachine(), SomeRun(), &comparison);
  EXPECT_THAT(html, HasSubstr("class=\"before\""));
  EXPECT_THAT(html, HasSubstr("before 202 ns, -49.5%, faster (p 0.00794)"));
  EXPECT_THAT(html, HasSubstr("before.json"));
}

TEST(CompareTest, WarnsButComparesWhenTheMachineDiffers) {
  absl::StatusOr<Baseline> baseline = LoadBaseline(WriteTemp(
      "xeon.json", ToJson(Tables({Five("j/a", 100)}), Machine{2, "Intel Xeon", "6.18.44"},
                          SomeRun())));
  ASSERT_TRUE(baseline.ok()) << baseline.status();
  const Comparison comparison = Compare(*baseline, Tables({Five("j/a", 100)}), ThisMachine());
  EXPECT_THAT(comparison.machine_warning, HasSubstr("Intel Xeon"));
  EXPECT_THAT(comparison.machine_warning, HasSubstr("AMD EPYC"));
  EXPECT_EQ(comparison.rows.size(), 1u);
  EXPECT_THAT(FormatComparison(comparison), HasSubstr("warning: the baseline ran on another"));
  EXPECT_EQ(MachineWarning(ThisMachine(), ThisMachine()), "");
}

TEST(CompareTest, OneRepetitionIsReportedNotTested) {
  absl::StatusOr<Baseline> baseline = LoadBaseline(WriteTemp(
      "one.json", ToJson(Summarise({Measurement{"j/a", 100, {}, "", 10}}), ThisMachine(),
                         SomeRun())));
  ASSERT_TRUE(baseline.ok()) << baseline.status();
  const Comparison comparison =
      Compare(*baseline, Summarise({Measurement{"j/a", 50, {}, "", 10}}), ThisMachine());
  ASSERT_EQ(comparison.rows.size(), 1u);
  EXPECT_LT(comparison.rows[0].p_value, 0);
  EXPECT_EQ(comparison.rows[0].verdict, "too few repetitions to test");
}

}  // namespace
}  // namespace taskrt::bench
