// report.html is a page people open in a browser: render it in one.
// Headless Chromium (Debian's chromium, installed by tools/bazel) loads a
// report built from made-up measurements, with every kind of panel (bars,
// baselines, an unavailable row, counts, the overview and a comparison with
// an earlier run), and dumps the DOM it built. The test fails when the
// browser drops a chart or a table, or logs a console error; it skips,
// saying why, where Chromium is missing or cannot start.

#include <unistd.h>

#include <fstream>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "benchmarks/baseline.h"
#include "benchmarks/report.h"
#include "benchmarks/subprocess.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace taskrt::bench {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

size_t Count(const std::string& text, const std::string& needle) {
  size_t count = 0;
  for (size_t at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1)) {
    ++count;
  }
  return count;
}

std::string FindChromium() {
  for (const char* path : {"/usr/bin/chromium", "/usr/bin/chromium-browser"}) {
    if (access(path, X_OK) == 0) return path;
  }
  return "";
}

std::vector<Measurement> Repeated(const std::string& name, double ns,
                                  std::map<std::string, double> counters = {}) {
  std::vector<Measurement> out;
  for (int i = 0; i < 5; ++i) out.push_back(Measurement{name, ns + i, counters, "", 1000});
  return out;
}

std::string SampleReport() {
  std::vector<Measurement> all;
  auto add = [&](std::vector<Measurement> more) { all.insert(all.end(), more.begin(), more.end()); };
  add(Repeated("round_trip/raw_futex", 3000, {{"syscalls", 4}, {"csw", 2}}));
  add(Repeated("round_trip/memory", 800, {{"syscalls", 0}, {"csw", 0}, {"p50_ns", 160}}));
  add(Repeated("round_trip/socketpair", 6000, {{"syscalls", 6}, {"csw", 1}, {"p50_ns", 5000}}));
  all.push_back(Measurement{"round_trip/io_uring", 0, {}, "io_uring refused <EPERM>", 0});
  add(Repeated("fan_in/pool+epoll+memory", 27e6));
  add(Repeated("fan_in/pool+epoll+socketpair", 90e6));
  add(Repeated("fan_in/steal+epoll+memory", 51e6));
  all.push_back(Measurement{"fan_in/steal+uring+memory", 0, {}, "refused", 0});
  const std::vector<Table> tables = Summarise(all);
  const Machine machine{2, "Test CPU", "6.18"};
  const RunInfo run{"2026-12-06T17:00:00Z", 5, false, "", ""};
  // The earlier run: the same jobs, memory slower then.
  std::vector<Measurement> before = Repeated("round_trip/memory", 1600);
  const std::vector<Table> before_tables = Summarise(before);
  Baseline baseline;
  baseline.path = "before/results.json";
  baseline.machine = machine;
  for (const Table& table : before_tables) {
    for (const Row& row : table.rows) {
      baseline.rows.push_back({table.job, row.backend, row.median_ns, row.samples_ns});
    }
  }
  const Comparison comparison = Compare(baseline, tables, machine);
  return ToHtml(tables, machine, run, &comparison);
}

TEST(ReportBrowserTest, ChromiumRendersEveryChartAndLogsNoError) {
  const std::string chromium = FindChromium();
  if (chromium.empty()) {
    GTEST_SKIP() << "Chromium is not installed (/usr/bin/chromium); tools/bazel installs "
                    "Debian's chromium package";
  }
  const std::string dir = ::testing::TempDir();
  const std::string page = dir + "/report.html";
  std::ofstream(page, std::ios::binary | std::ios::trunc) << SampleReport();
  std::string output;
  absl::StatusOr<int> exit_status = RunCapturingOutput(
      {"/usr/bin/timeout", "120", chromium, "--headless", "--no-sandbox", "--disable-gpu",
       "--no-first-run", "--user-data-dir=" + dir + "/chromium-profile", "--enable-logging=stderr",
       "--log-level=0", "--dump-dom", "file://" + page},
      output);
  if (!exit_status.ok() || *exit_status != 0 || output.find("<html") == std::string::npos) {
    GTEST_SKIP() << "Chromium could not render the page here (exit "
                 << (exit_status.ok() ? std::to_string(*exit_status) : exit_status.status().ToString())
                 << "): " << OneLine(output).substr(0, 600);
  }
  // Every panel's chart, the overview's table, the comparison's bar.
  EXPECT_EQ(Count(output, "<svg"), 2u) << output;
  EXPECT_EQ(Count(output, "<h2>"), 3u) << output;  // the overview and two jobs
  EXPECT_EQ(Count(output, "<table class=\"overview\">"), 1u);
  EXPECT_EQ(Count(output, "<rect "), 6u + 1u) << output;  // 6 measured rows, 1 earlier run
  EXPECT_THAT(output, HasSubstr("unavailable: io_uring refused &lt;EPERM&gt;"));
  EXPECT_THAT(output, HasSubstr("before 1.60 us, -49.9%, faster"));
  // The browser's own complaints about the page.
  EXPECT_THAT(output, Not(HasSubstr("CONSOLE")));
  EXPECT_THAT(output, Not(HasSubstr("Uncaught")));
}

}  // namespace
}  // namespace taskrt::bench
