#include "benchmarks/report.h"

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace taskrt::bench {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

Measurement M(const std::string& name, double ns, std::map<std::string, double> counters = {}) {
  return Measurement{name, ns, std::move(counters), "", 1000};
}

Measurement Failed(const std::string& name, const std::string& error) {
  return Measurement{name, 0, {}, error, 0};
}

size_t Count(const std::string& text, const std::string& needle) {
  size_t count = 0;
  for (size_t at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1)) {
    ++count;
  }
  return count;
}

TEST(SummariseTest, TakesTheMedianOfRepetitionsAndOfCounters) {
  const std::vector<Table> tables = Summarise({
      M("ping/in_process", 30, {{"p99_ns", 100}}),
      M("ping/in_process", 10, {{"p99_ns", 300}}),
      M("ping/in_process", 20, {{"p99_ns", 200}}),
  });
  ASSERT_EQ(tables.size(), 1u);
  EXPECT_EQ(tables[0].job, "ping");
  ASSERT_EQ(tables[0].rows.size(), 1u);
  EXPECT_EQ(tables[0].rows[0].backend, "in_process");
  EXPECT_EQ(tables[0].rows[0].repetitions, 3);
  EXPECT_DOUBLE_EQ(tables[0].rows[0].median_ns, 20);
  EXPECT_DOUBLE_EQ(tables[0].rows[0].counters.at("p99_ns"), 200);
}

TEST(SummariseTest, EvenCountsAverageTheMiddlePair) {
  const std::vector<Table> tables =
      Summarise({M("j/a", 10), M("j/a", 40), M("j/a", 20), M("j/a", 30)});
  ASSERT_EQ(tables.size(), 1u);
  EXPECT_DOUBLE_EQ(tables[0].rows[0].median_ns, 25);
}

TEST(SummariseTest, OrdersBaselinesThenFastestThenUnavailable) {
  const std::vector<Table> tables = Summarise({
      M("j/slow", 300),
      Failed("j/broken", "io_uring refused: EPERM"),
      M("j/fast", 100),
      M("j/raw_floor", 50),
      M("j/middle", 200),
  });
  ASSERT_EQ(tables.size(), 1u);
  std::vector<std::string> order;
  for (const Row& row : tables[0].rows) order.push_back(row.backend);
  EXPECT_EQ(order, (std::vector<std::string>{"raw_floor", "fast", "middle", "slow", "broken"}));
  ASSERT_NE(tables[0].Best(), nullptr);
  EXPECT_EQ(tables[0].Best()->backend, "fast");
  ASSERT_NE(tables[0].SecondBest(), nullptr);
  EXPECT_EQ(tables[0].SecondBest()->backend, "middle");
  EXPECT_TRUE(tables[0].rows[0].baseline);
  EXPECT_EQ(tables[0].rows[4].unavailable, "io_uring refused: EPERM");
}

TEST(SummariseTest, OneFailedRepetitionMakesTheBackendUnavailable) {
  const std::vector<Table> tables =
      Summarise({M("j/a", 10), Failed("j/a", "messages lost"), M("j/a", 12), M("j/b", 20)});
  ASSERT_EQ(tables.size(), 1u);
  const Row& a = tables[0].rows.back();
  EXPECT_EQ(a.backend, "a");
  EXPECT_EQ(a.unavailable, "messages lost");
  EXPECT_EQ(tables[0].Best()->backend, "b");
  EXPECT_EQ(tables[0].SecondBest(), nullptr);
}

TEST(SummariseTest, SplitsJobsAtTheFirstSlash) {
  const std::vector<Table> tables =
      Summarise({M("round_trip/kore:a+b/c", 1), M("other/x", 2), M("round_trip/y", 3)});
  ASSERT_EQ(tables.size(), 2u);
  EXPECT_EQ(tables[0].job, "other");
  EXPECT_EQ(tables[1].job, "round_trip");
  EXPECT_EQ(tables[1].rows[0].backend, "kore:a+b/c");
}

TEST(FormatTablesTest, ShowsRatiosAndNamesTheWinner) {
  const std::string text =
      FormatTables(Summarise({M("j/raw_floor", 50), M("j/fast", 100), M("j/slow", 300)}));
  EXPECT_THAT(text, HasSubstr("== j"));
  EXPECT_THAT(text, HasSubstr("x raw_floor"));
  EXPECT_THAT(text,
              HasSubstr("fast wins, 3.00x faster than slow; it takes 2.00x the time of raw_floor"));
  // slow: 6x the floor, 3x the best.
  EXPECT_THAT(text, HasSubstr("6.00x"));
  EXPECT_THAT(text, HasSubstr("3.00x"));
  EXPECT_THAT(text, Not(HasSubstr("p99")));
  EXPECT_THAT(text, Not(HasSubstr("throughput")));
}

TEST(FormatTablesTest, KeepsSignificantFiguresOfTinyRatios) {
  const std::string text = FormatTables(Summarise({M("j/raw_thread", 600'000), M("j/task", 150)}));
  EXPECT_THAT(text, HasSubstr("0.00025x"));
}

TEST(FormatTablesTest, ShowsLatencyPercentilesAndThroughputWhenTheJobHasThem) {
  const std::string text = FormatTables(Summarise({
      M("ping/a", 100, {{"p50_ns", 90}, {"p99_ns", 1500}}),
      M("stream/a", 10, {{"bytes_per_second", 800e6}}),
  }));
  EXPECT_THAT(text, HasSubstr("p50"));
  EXPECT_THAT(text, HasSubstr("1.50 us"));
  EXPECT_THAT(text, HasSubstr("throughput"));
  EXPECT_THAT(text, HasSubstr("800 MB/s"));
  EXPECT_THAT(text, HasSubstr("a is the only backend"));
}

TEST(FormatTablesTest, ShowsWhyABackendCouldNotRun) {
  const std::string text =
      FormatTables(Summarise({Failed("j/io_uring", "io_uring refused (EPERM)")}));
  EXPECT_THAT(text, HasSubstr("unavailable: io_uring refused (EPERM)"));
  EXPECT_THAT(text, HasSubstr("no backend could run this job here"));
}

TEST(FormatDurationTest, PicksAReadableUnit) {
  EXPECT_EQ(FormatDuration(812), "812 ns");
  EXPECT_EQ(FormatDuration(34'100), "34.1 us");
  EXPECT_EQ(FormatDuration(138e6), "138 ms");
  EXPECT_EQ(FormatDuration(2.5e9), "2.50 s");
  EXPECT_EQ(FormatDuration(5.25), "5.25 ns");
}

RunInfo SomeRun() { return RunInfo{"2026-11-22T03:00:00Z", 5, false, "", ""}; }
Machine TwoCores() { return Machine{2, "Some \"Quoted\" CPU", "6.1.0"}; }

TEST(ToJsonTest, CarriesTheRequiredFieldsAndTheMachine) {
  const std::string json =
      ToJson(Summarise({M("j/raw_floor", 50), M("j/fast", 100, {{"p99_ns", 400}})}), TwoCores(),
             SomeRun());
  EXPECT_THAT(json, HasSubstr("\"cpu_count\": 2"));
  EXPECT_THAT(json, HasSubstr("\"cpu_model\": \"Some \\\"Quoted\\\" CPU\""));
  EXPECT_THAT(json, HasSubstr("{\"job\": \"j\", \"backend\": \"fast\", \"metric\": "
                              "\"median_time_per_iteration\", \"value\": 100, \"unit\": \"ns\""));
  EXPECT_THAT(json, HasSubstr("\"metric\": \"p99_ns\", \"value\": 400, \"unit\": \"ns\""));
  EXPECT_THAT(json, HasSubstr("\"metric\": \"ratio_to_raw_floor\", \"value\": 2, \"unit\": \"x\""));
  EXPECT_THAT(json, HasSubstr("\"metric\": \"ratio_to_best\", \"value\": 1, \"unit\": \"x\""));
}

TEST(ToJsonTest, AnUnavailableRowHasANullValueAndItsReason) {
  const std::string json =
      ToJson(Summarise({Failed("j/io_uring", "refused\nby seccomp")}), TwoCores(), SomeRun());
  EXPECT_THAT(json, HasSubstr("\"metric\": \"unavailable\", \"value\": null"));
  EXPECT_THAT(json, HasSubstr("\"reason\": \"refused\\nby seccomp\""));
}

TEST(ToHtmlTest, DrawsOnePanelPerJobAndEscapesNames) {
  const std::string html = ToHtml(Summarise({
                                      M("a/x<y>", 10),
                                      M("b/raw_z", 5),
                                      M("b/w", 7),
                                      Failed("c/u", "refused"),
                                  }),
                                  TwoCores(), SomeRun());
  EXPECT_EQ(Count(html, "<svg"), 3u);
  EXPECT_EQ(Count(html, "<section>"), 3u);
  EXPECT_THAT(html, HasSubstr("x&lt;y&gt;"));
  EXPECT_THAT(html, Not(HasSubstr("x<y>")));
  EXPECT_THAT(html, HasSubstr("unavailable: refused"));
  EXPECT_THAT(html, HasSubstr("2 CPUs"));
  EXPECT_THAT(html, HasSubstr("ratios"));
}

TEST(ToHtmlTest, UsesALogScaleWhenRowsSpanManyOrders) {
  const std::string wide = ToHtml(Summarise({M("j/a", 10), M("j/b", 1e6)}), TwoCores(), SomeRun());
  const std::string narrow = ToHtml(Summarise({M("j/a", 10), M("j/b", 20)}), TwoCores(), SomeRun());
  EXPECT_THAT(wide, HasSubstr("(log scale)"));
  EXPECT_THAT(narrow, Not(HasSubstr("(log scale)")));
}

TEST(FormatPreambleTest, StatesTheMachineAndTheDrift) {
  RunInfo quick = SomeRun();
  quick.quick = true;
  const std::string text = FormatPreamble(TwoCores(), quick);
  EXPECT_THAT(text, HasSubstr("2 CPUs"));
  EXPECT_THAT(text, HasSubstr("drift"));
  EXPECT_THAT(text, HasSubstr("--quick"));
}

TEST(FormatTablesTest, ShowsTheKernelsCountsAsColumnsAndChildCountsBeside) {
  const std::string text = FormatTables(Summarise({
      M("ping/uring", 100, {{"syscalls", 0.5}, {"csw", 0}}),
      M("ping/socket", 200, {{"syscalls", 4}, {"csw", 2}}),
      M("ping/go_chan", 150, {{"syscalls", 0.0002}, {"child_syscalls", 0.25}}),
  }));
  EXPECT_THAT(text, HasSubstr("syscalls"));
  EXPECT_THAT(text, HasSubstr("csw"));
  // Columns, in each row: counts of 0, small fractions and whole numbers.
  EXPECT_THAT(text, HasSubstr("0.50          0"));
  EXPECT_THAT(text, HasSubstr("4.00       2.00"));
  EXPECT_THAT(text, HasSubstr("0.0002          -"));
  EXPECT_THAT(text, HasSubstr("child_syscalls=0.25"));
  EXPECT_THAT(text, Not(HasSubstr(" syscalls=")));
}

TEST(FormatTablesTest, NoCountColumnsWhenNoRowHasCounts) {
  const std::string text = FormatTables(Summarise({M("j/a", 10), M("j/b", 20)}));
  EXPECT_THAT(text, Not(HasSubstr("syscalls")));
  EXPECT_THAT(text, Not(HasSubstr("csw")));
}

TEST(ToJsonTest, CarriesTheCountsPerIterationAndWhetherSyscallsWereCounted) {
  const std::string counted =
      ToJson(Summarise({M("j/a", 10, {{"syscalls", 2}})}), TwoCores(), SomeRun());
  EXPECT_THAT(counted, HasSubstr("\"syscalls_counted\": true"));
  EXPECT_THAT(counted,
              HasSubstr("\"metric\": \"syscalls\", \"value\": 2, \"unit\": \"1/iteration\""));
  RunInfo refused = SomeRun();
  refused.syscalls_unavailable = "perf_event_open: Permission denied";
  const std::string uncounted = ToJson(Summarise({M("j/a", 10)}), TwoCores(), refused);
  EXPECT_THAT(uncounted, HasSubstr("\"syscalls_counted\": false"));
  EXPECT_THAT(uncounted,
              HasSubstr("\"syscalls_unavailable\": \"perf_event_open: Permission denied\""));
  EXPECT_THAT(FormatPreamble(TwoCores(), refused),
              HasSubstr("not counted here: perf_event_open: Permission denied"));
}

TEST(ToHtmlTest, OverviewMatrixOfCombinationsColouredByRatioToTheBest) {
  const std::string html = ToHtml(Summarise({
                                      M("fan/pool+epoll+memory", 100),
                                      M("fan/pool+epoll+socket", 200),
                                      M("fan/steal+epoll+memory", 3000),
                                      Failed("fan/steal+uring+memory", "refused"),
                                      M("fan/raw_floor", 10),
                                      M("single/a", 5),
                                  }),
                                  TwoCores(), SomeRun());
  EXPECT_THAT(html, HasSubstr("<h2>Overview</h2>"));
  EXPECT_EQ(Count(html, "<table class=\"overview\">"), 1u);  // "single" has no combinations
  EXPECT_THAT(html, HasSubstr("<th>epoll+memory</th><th>epoll+socket</th><th>uring+memory</th>"));
  // The best is green, 2x in between, 30x and beyond red; the refused one n/a.
  EXPECT_THAT(html, HasSubstr("hsl(120,65%,72%)\" title=\"100 ns\">1.00x</td>"));
  EXPECT_THAT(html, HasSubstr(">2.00x</td>"));
  EXPECT_THAT(html, HasSubstr("hsl(0,65%,72%)\" title=\"3.00 us\">30.0x</td>"));
  EXPECT_THAT(html, HasSubstr("<td class=\"na\" title=\"refused\">n/a</td>"));
  // pool has no uring+memory row: an empty cell.
  EXPECT_THAT(html, HasSubstr("<td></td>"));
  const std::string none = ToHtml(Summarise({M("j/a", 1), M("j/b", 2)}), TwoCores(), SomeRun());
  EXPECT_THAT(none, Not(HasSubstr("Overview")));
}

TEST(ToHtmlTest, LabelsBarsWithTheCounts) {
  const std::string html =
      ToHtml(Summarise({M("j/a", 10, {{"syscalls", 3}, {"csw", 0.5}})}), TwoCores(), SomeRun());
  EXPECT_THAT(html, HasSubstr("3.00 syscalls, 0.50 csw"));
}

}  // namespace
}  // namespace taskrt::bench
