#include "benchmarks/baseline.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"

namespace taskrt::bench {
namespace {

using nlohmann::json;

// Far more than a full run's results.json: a larger file is not one.
constexpr uintmax_t kMaxBaselineBytes = uintmax_t{256} << 20;
// compare.py's threshold.
constexpr double kSignificance = 0.05;
// Fewer repetitions than this make a weak test (compare.py's advice).
constexpr int kAdvisedRepetitions = 9;
// Without ties, the exact distribution unless both samples have more than
// this many values (scipy's choice).
constexpr size_t kExactUpTo = 8;

// Number of arrangements of n1 + n2 distinct values whose U statistic is
// each value from 0 to n1 * n2 (the exact null distribution): the
// coefficients of the Gaussian binomial coefficient [n1 + n2 choose m]_q,
// m = min(n1, n2), built as the product over i = 1..m of
// (1 - q^(n + i)) / (1 - q^i) with n the other size: each step a multiply
// and an exact division by a binomial, in one array of n1 * n2 + 1.
std::vector<double> UDistribution(size_t n1, size_t n2) {
  const size_t m = std::min(n1, n2), n = std::max(n1, n2);
  std::vector<double> ways(m * n + 1, 0);
  ways[0] = 1;
  for (size_t i = 1; i <= m; ++i) {
    // Times (1 - q^(n + i)): from the top, so each term uses the old value.
    for (size_t k = ways.size(); k-- > n + i;) ways[k] -= ways[k - (n + i)];
    // Divided by (1 - q^i): running sums with stride i.
    for (size_t k = i; k < ways.size(); ++k) ways[k] += ways[k - i];
  }
  return ways;
}

std::string FormatP(double p) {
  if (p < 0) return "-";
  char text[32];
  std::snprintf(text, sizeof text, p < 0.001 ? "%.1e" : "%.3f", p);
  return text;
}

absl::Status Malformed(const std::string& path, const std::string& what) {
  return absl::InvalidArgumentError(
      absl::StrCat("baseline ", path, ": not a results.json of compare: ", what));
}

}  // namespace

absl::StatusOr<Baseline> LoadBaseline(const std::string& path) {
  std::error_code error;
  const std::filesystem::file_status status = std::filesystem::status(path, error);
  if (error) {
    return absl::NotFoundError(
        absl::StrCat("baseline ", path, ": cannot read it: ", error.message()));
  }
  if (!std::filesystem::is_regular_file(status)) {
    return absl::InvalidArgumentError(
        absl::StrCat("baseline ", path, ": not a regular file (a results.json is one)"));
  }
  const uintmax_t size = std::filesystem::file_size(path, error);
  if (!error && size > kMaxBaselineBytes) {
    return absl::InvalidArgumentError(absl::StrCat("baseline ", path, ": ", size,
                                                   " bytes, more than a results.json holds (",
                                                   kMaxBaselineBytes, " at most)"));
  }
  std::ifstream file(path, std::ios::binary);
  if (!file) {
    const int open_error = errno;
    return absl::NotFoundError(
        absl::StrCat("baseline ", path, ": cannot read it: ", std::strerror(open_error)));
  }
  const bool empty = file.peek() == std::ifstream::traits_type::eof();
  const json document = json::parse(file, nullptr, /*allow_exceptions=*/false);
  if (document.is_discarded()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "baseline ", path, ": not JSON (", empty ? "empty" : "truncated or damaged",
        "); use a results.json that a finished run of compare wrote"));
  }
  if (!document.is_object()) return Malformed(path, "the top level is not an object");
  const auto version = document.find("format_version");
  if (version == document.end() || !version->is_number_integer()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "baseline ", path, ": written before results carried a format version (this report "
        "writes version ", kResultsFormatVersion, "); rerun the baseline with this compare"));
  }
  if (*version != kResultsFormatVersion) {
    return absl::FailedPreconditionError(absl::StrCat(
        "baseline ", path, ": results format version ", version->dump(),
        ", but this report reads version ", kResultsFormatVersion,
        "; rerun the baseline with this compare"));
  }
  Baseline baseline;
  baseline.path = path;
  const auto machine = document.find("machine");
  if (machine == document.end() || !machine->is_object()) return Malformed(path, "no \"machine\"");
  // Fields of the wrong type read as absent (json::value() would throw).
  auto text = [](const json& object, const char* key, const char* absent) {
    const auto it = object.find(key);
    return it != object.end() && it->is_string() ? it->get<std::string>() : std::string(absent);
  };
  if (const auto cpus = machine->find("cpu_count");
      cpus != machine->end() && cpus->is_number_integer() && *cpus >= 0 && *cpus <= 1 << 20) {
    baseline.machine.cpu_count = cpus->get<int>();
  }
  baseline.machine.cpu_model = text(*machine, "cpu_model", "unknown");
  baseline.machine.kernel = text(*machine, "kernel", "unknown");
  if (const auto run = document.find("run"); run != document.end() && run->is_object()) {
    baseline.started = text(*run, "started", "");
  }
  const auto results = document.find("results");
  if (results == document.end() || !results->is_array()) {
    return Malformed(path, "no \"results\" list");
  }
  for (const json& record : *results) {
    if (!record.is_object()) return Malformed(path, "a result that is not an object");
    const auto metric = record.find("metric");
    if (metric == record.end() || !metric->is_string() ||
        *metric != "median_time_per_iteration") {
      continue;
    }
    const auto job = record.find("job");
    const auto backend = record.find("backend");
    const auto value = record.find("value");
    const auto samples = record.find("samples");
    if (job == record.end() || !job->is_string() || backend == record.end() ||
        !backend->is_string() || value == record.end() || !value->is_number() ||
        samples == record.end() || !samples->is_array()) {
      return Malformed(path, "a median time without job, backend, value or samples");
    }
    // Times are positive and finite: ratios and changes divide by them.
    auto time = [](const json& number) {
      return number.is_number() && std::isfinite(number.get<double>()) && number.get<double>() > 0;
    };
    if (!time(*value)) return Malformed(path, "a median time that is not a positive number");
    BaselineRow row{job->get<std::string>(), backend->get<std::string>(), value->get<double>(),
                    {}};
    for (const json& sample : *samples) {
      if (!time(sample)) return Malformed(path, "a sample that is not a positive number");
      row.samples_ns.push_back(sample.get<double>());
    }
    for (const BaselineRow& seen : baseline.rows) {
      if (seen.job == row.job && seen.backend == row.backend) {
        return Malformed(path, absl::StrCat("two median times for ", row.job, "/", row.backend));
      }
    }
    baseline.rows.push_back(std::move(row));
  }
  if (baseline.rows.empty()) return Malformed(path, "no measured rows");
  return baseline;
}

std::string MachineWarning(const Machine& then, const Machine& now) {
  if (then.cpu_count == now.cpu_count && then.cpu_model == now.cpu_model &&
      then.kernel == now.kernel) {
    return "";
  }
  auto describe = [](const Machine& m) {
    return absl::StrCat(m.cpu_count, " CPUs, ", m.cpu_model, ", Linux ", m.kernel);
  };
  return absl::StrCat("warning: the baseline ran on another machine (", describe(then),
                      "; this run: ", describe(now),
                      "): changes below mix the code's and the machine's");
}

double MannWhitneyPValue(const std::vector<double>& a, const std::vector<double>& b) {
  const size_t n1 = a.size(), n2 = b.size();
  if (n1 < 2 || n2 < 2) return -1;
  // Ranks of the pooled values, ties getting their average rank.
  std::vector<std::pair<double, int>> pooled;  // value, sample (0: a)
  for (double v : a) pooled.emplace_back(v, 0);
  for (double v : b) pooled.emplace_back(v, 1);
  std::sort(pooled.begin(), pooled.end());
  const size_t n = pooled.size();
  double rank_sum_a = 0;
  double tie_term = 0;  // sum of t^3 - t over groups of t equal values
  bool ties = false;
  for (size_t i = 0; i < n;) {
    size_t j = i;
    while (j < n && pooled[j].first == pooled[i].first) ++j;
    const double average_rank = (static_cast<double>(i + 1) + static_cast<double>(j)) / 2;
    for (size_t k = i; k < j; ++k) {
      if (pooled[k].second == 0) rank_sum_a += average_rank;
    }
    const double t = static_cast<double>(j - i);
    if (j - i > 1) ties = true;
    tie_term += t * t * t - t;
    i = j;
  }
  const double u1 = rank_sum_a - static_cast<double>(n1 * (n1 + 1)) / 2;
  const double u2 = static_cast<double>(n1 * n2) - u1;
  const double u = std::max(u1, u2);
  if (!ties && (n1 <= kExactUpTo || n2 <= kExactUpTo)) {
    // P(U >= u) under the null, doubled.
    const std::vector<double> ways = UDistribution(n1, n2);
    double total = 0, at_least = 0;
    for (size_t k = 0; k < ways.size(); ++k) {
      total += ways[k];
      if (static_cast<double>(k) >= u) at_least += ways[k];
    }
    return std::min(1.0, 2 * at_least / total);
  }
  const double mean = static_cast<double>(n1 * n2) / 2;
  const double nn = static_cast<double>(n);
  const double variance =
      static_cast<double>(n1 * n2) / 12 * ((nn + 1) - tie_term / (nn * (nn - 1)));
  if (variance <= 0) return 1;  // every value the same
  const double z = (u - mean - 0.5) / std::sqrt(variance);
  return std::min(1.0, std::erfc(z / std::sqrt(2.0)));
}

Comparison Compare(const Baseline& baseline, const std::vector<Table>& tables,
                   const Machine& machine) {
  Comparison comparison;
  comparison.baseline_path = baseline.path;
  comparison.baseline_started = baseline.started;
  comparison.machine_warning = MachineWarning(baseline.machine, machine);
  std::map<std::pair<std::string, std::string>, const BaselineRow*> before;
  for (const BaselineRow& row : baseline.rows) before[{row.job, row.backend}] = &row;
  for (const Table& table : tables) {
    for (const Row& row : table.rows) {
      const std::string name = table.job + "/" + row.backend;
      auto it = before.find({table.job, row.backend});
      if (!row.unavailable.empty()) {
        if (it != before.end()) before.erase(it);
        continue;
      }
      if (it == before.end()) {
        comparison.only_after.push_back(name);
        continue;
      }
      const BaselineRow& then = *it->second;
      before.erase(it);
      ComparedRow compared;
      compared.job = table.job;
      compared.backend = row.backend;
      compared.before_ns = then.median_ns;
      compared.after_ns = row.median_ns;
      compared.before_repetitions = static_cast<int>(then.samples_ns.size());
      compared.after_repetitions = static_cast<int>(row.samples_ns.size());
      compared.p_value = MannWhitneyPValue(then.samples_ns, row.samples_ns);
      if (compared.p_value < 0) {
        compared.verdict = "too few repetitions to test";
      } else if (compared.p_value >= kSignificance) {
        compared.verdict = "no significant change";
      } else {
        compared.verdict = compared.after_ns < compared.before_ns ? "faster" : "slower";
      }
      comparison.rows.push_back(std::move(compared));
    }
  }
  for (const auto& [key, row] : before) comparison.only_before.push_back(key.first + "/" + key.second);
  return comparison;
}

std::string FormatComparison(const Comparison& comparison) {
  std::string out = "\n== against the baseline " + comparison.baseline_path;
  if (!comparison.baseline_started.empty()) out += " (" + comparison.baseline_started + ")";
  out += "\n";
  if (!comparison.machine_warning.empty()) out += comparison.machine_warning + "\n";
  char line[512];
  std::snprintf(line, sizeof line, "%-52s %10s %10s %8s %9s  %s\n", "job/backend", "before",
                "after", "change", "p", "verdict");
  out += line;
  int fewest = 0;
  for (const ComparedRow& row : comparison.rows) {
    const int n = std::min(row.before_repetitions, row.after_repetitions);
    fewest = fewest == 0 ? n : std::min(fewest, n);
    std::snprintf(line, sizeof line, "%-52s %10s %10s %8s %9s  %s\n",
                  (row.job + "/" + row.backend).c_str(), FormatDuration(row.before_ns).c_str(),
                  FormatDuration(row.after_ns).c_str(),
                  FormatChange(row.before_ns, row.after_ns).c_str(), FormatP(row.p_value).c_str(),
                  row.verdict.c_str());
    out += line;
  }
  if (comparison.rows.empty()) out += "(no job and backend measured in both runs)\n";
  out += absl::StrCat("p: two-sided Mann-Whitney U test over the two runs' repetitions; "
                      "below ", kSignificance, " the change is called significant.\n");
  if (fewest > 0 && fewest < kAdvisedRepetitions) {
    out += absl::StrCat("note: some rows have only ", fewest,
                        " repetition(s) in a run; the U test wants ", kAdvisedRepetitions,
                        " or more (--repetitions) to see a small change.\n");
  }
  // A --filter run leaves most of a full baseline out: name a few.
  auto list = [&](const char* where, const std::vector<std::string>& names) {
    if (names.empty()) return;
    constexpr size_t kNamed = 8;
    out += absl::StrCat(names.size(), " only in ", where, ":");
    for (size_t i = 0; i < names.size() && i < kNamed; ++i) out += " " + names[i];
    if (names.size() > kNamed) out += " ...";
    out += "\n";
  };
  list("the baseline", comparison.only_before);
  list("this run", comparison.only_after);
  return out;
}

}  // namespace taskrt::bench
