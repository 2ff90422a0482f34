#include "benchmarks/report.h"

#include <sys/utsname.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <map>
#include <string>
#include <thread>
#include <vector>

namespace taskrt::bench {
namespace {

constexpr char kBaselinePrefix[] = "raw_";

std::string Printf(const char* format, double value) {
  char text[64];
  std::snprintf(text, sizeof text, format, value);
  return text;
}

// Three significant figures without switching to exponent notation.
std::string ThreeFigures(double value) {
  return Printf(value >= 100 ? "%.0f" : value >= 10 ? "%.1f" : "%.2f", value);
}

// Ratios span 0.0002x (a task against a thread) to 300x: keep three
// significant figures at both ends.
std::string FormatRatio(double ratio) {
  if (ratio > 0 && ratio < 0.01) return Printf("%.2g", ratio);
  return ThreeFigures(ratio);
}

double Median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  const size_t n = values.size();
  return n % 2 == 1 ? values[n / 2] : (values[n / 2 - 1] + values[n / 2]) / 2;
}

std::string FormatRate(double per_second, const char* unit) {
  if (per_second >= 1e9) return ThreeFigures(per_second / 1e9) + " G" + unit;
  if (per_second >= 1e6) return ThreeFigures(per_second / 1e6) + " M" + unit;
  if (per_second >= 1e3) return ThreeFigures(per_second / 1e3) + " k" + unit;
  return ThreeFigures(per_second) + " " + unit;
}

// Throughput, if the job reports one: bytes or items per second.
std::string Throughput(const Row& row) {
  if (auto it = row.counters.find("bytes_per_second"); it != row.counters.end()) {
    return FormatRate(it->second, "B/s");
  }
  if (auto it = row.counters.find("items_per_second"); it != row.counters.end()) {
    return FormatRate(it->second, "items/s");
  }
  return "";
}

bool IsColumnCounter(const std::string& name) {
  return name == "p50_ns" || name == "p99_ns" || name == "bytes_per_second" ||
         name == "items_per_second" || name == kSyscallsCounter ||
         name == kVoluntarySwitchesCounter;
}

// A count per iteration, from 0.0001 to millions: three significant
// figures, and a plain 0 for none.
std::string FormatCount(double value) {
  if (value == 0) return "0";
  if (value < 0.01) return Printf("%.2g", value);
  return ThreeFigures(value);
}

std::string CounterUnit(const std::string& name) {
  auto ends_with = [&](const std::string& suffix) {
    return name.size() >= suffix.size() &&
           name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0;
  };
  if (ends_with("_ns")) return "ns";
  if (ends_with("_MiB")) return "MiB";
  if (name == "bytes_per_second") return "B/s";
  if (name == "items_per_second") return "1/s";
  if (ends_with("bytes_per_task")) return "B";
  if (ends_with("syscalls") || ends_with("csw")) return "1/iteration";
  return "";
}

std::string JsonString(const std::string& text) {
  std::string out = "\"";
  for (unsigned char c : text) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (c < 0x20) {
          char escaped[8];
          std::snprintf(escaped, sizeof escaped, "\\u%04x", c);
          out += escaped;
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  return out + "\"";
}

std::string JsonNumber(double value) {
  if (!std::isfinite(value)) return "null";
  return Printf("%.6g", value);
}

// Times a later run compares with (compare --baseline): enough digits that
// rounding makes no ties the measurements did not have.
std::string JsonTime(double value) {
  if (!std::isfinite(value)) return "null";
  return Printf("%.10g", value);
}

std::string HtmlEscape(const std::string& text) {
  std::string out;
  for (char c : text) {
    switch (c) {
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '&':
        out += "&amp;";
        break;
      case '"':
        out += "&quot;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

// The sentence under a table: who wins, by how much, against what floor.
std::string Verdict(const Table& table) {
  const Row* best = table.Best();
  if (best == nullptr) return "no backend could run this job here";
  std::string line;
  if (const Row* second = table.SecondBest(); second != nullptr) {
    line = best->backend + " wins, " + FormatRatio(second->median_ns / best->median_ns) +
           "x faster than " + second->backend;
  } else {
    line = best->backend + " is the only backend";
  }
  for (const Row& row : table.rows) {
    if (row.baseline && row.unavailable.empty()) {
      line += "; it takes " + FormatRatio(best->median_ns / row.median_ns) + "x the time of " +
              row.backend;
    }
  }
  return line;
}

}  // namespace

const Row* Table::Best() const {
  for (const Row& row : rows) {
    if (!row.baseline && row.unavailable.empty()) return &row;
  }
  return nullptr;
}

const Row* Table::SecondBest() const {
  const Row* best = Best();
  for (const Row& row : rows) {
    if (&row != best && !row.baseline && row.unavailable.empty()) {
      return best == nullptr ? nullptr : &row;
    }
  }
  return nullptr;
}

std::vector<Table> Summarise(const std::vector<Measurement>& measurements) {
  struct Collected {
    std::vector<double> ns;
    std::map<std::string, std::vector<double>> counters;
    std::string error;
  };
  std::map<std::string, std::map<std::string, Collected>> by_job;
  for (const Measurement& m : measurements) {
    const size_t slash = m.name.find('/');
    const std::string job = slash == std::string::npos ? m.name : m.name.substr(0, slash);
    const std::string backend = slash == std::string::npos ? "-" : m.name.substr(slash + 1);
    Collected& collected = by_job[job][backend];
    if (!m.error.empty()) {
      if (collected.error.empty()) collected.error = m.error;
      continue;
    }
    collected.ns.push_back(m.ns_per_iteration);
    for (const auto& [name, value] : m.counters) collected.counters[name].push_back(value);
  }

  std::vector<Table> tables;
  for (const auto& [job, backends] : by_job) {
    Table table{job, {}};
    for (const auto& [backend, collected] : backends) {
      Row row;
      row.backend = backend;
      row.baseline = backend.rfind(kBaselinePrefix, 0) == 0;
      if (!collected.error.empty() || collected.ns.empty()) {
        row.unavailable = collected.error.empty() ? "no measurement" : collected.error;
      } else {
        row.repetitions = static_cast<int>(collected.ns.size());
        row.median_ns = Median(collected.ns);
        row.samples_ns = collected.ns;
        for (const auto& [name, values] : collected.counters) row.counters[name] = Median(values);
      }
      table.rows.push_back(std::move(row));
    }
    std::stable_sort(table.rows.begin(), table.rows.end(), [](const Row& a, const Row& b) {
      auto rank = [](const Row& row) {
        return !row.unavailable.empty() ? 2 : row.baseline ? 0 : 1;
      };
      if (rank(a) != rank(b)) return rank(a) < rank(b);
      return a.median_ns < b.median_ns;
    });
    tables.push_back(std::move(table));
  }
  return tables;
}

Machine DescribeMachine() {
  Machine machine;
  machine.cpu_count = static_cast<int>(std::thread::hardware_concurrency());
  machine.cpu_model = "unknown";
  std::ifstream cpuinfo("/proc/cpuinfo");
  for (std::string line; std::getline(cpuinfo, line);) {
    if (line.rfind("model name", 0) == 0) {
      const size_t colon = line.find(':');
      if (colon != std::string::npos && colon + 2 <= line.size()) {
        machine.cpu_model = line.substr(colon + 2);
      }
      break;
    }
  }
  utsname name{};
  machine.kernel = uname(&name) == 0 ? name.release : "unknown";
  return machine;
}

std::string FormatChange(double before, double after) {
  const double percent = (after / before - 1) * 100;
  return Printf(percent >= 0 ? "+%.1f%%" : "%.1f%%", percent);
}

std::string FormatDuration(double ns) {
  if (ns >= 1e9) return ThreeFigures(ns / 1e9) + " s";
  if (ns >= 1e6) return ThreeFigures(ns / 1e6) + " ms";
  if (ns >= 1e3) return ThreeFigures(ns / 1e3) + " us";
  return ThreeFigures(ns) + " ns";
}

std::string FormatPreamble(const Machine& machine, const RunInfo& run) {
  std::string text = "taskrt comparison report, " + run.started + "\n";
  text += "machine: " + std::to_string(machine.cpu_count) + " CPUs, " + machine.cpu_model +
          ", Linux " + machine.kernel + "\n";
  text += "run: median of " + std::to_string(run.repetitions) + " repetition(s)";
  if (run.quick) text += ", --quick (a smoke run: figures are not meaningful)";
  if (!run.filter.empty()) text += ", --filter " + run.filter;
  text +=
      "\nAbsolute times drift on a shared machine, by up to 2x between runs; compare the\n"
      "ratios, which come from the same run. Repetitions of all jobs are interleaved in\n"
      "random order, so drift hits every backend alike. 'median' is the median over\n"
      "repetitions of the wall-clock time per iteration (what one iteration is, each\n"
      "job's source says: benchmarks/*.cc). p50 and p99, where shown, are percentiles of\n"
      "single operations inside the job: a long tail puts the median far above p50.\n"
      "syscalls and csw are what the kernel counted per iteration (per request for load\n"
      "jobs) over the whole benchmark run, its setup included: system calls made by the\n"
      "process's threads, and voluntary context switches (a thread blocked). Child\n"
      "processes (a Go program, the load generator) are counted apart as child_*.\n";
  if (!run.syscalls_unavailable.empty()) {
    text += "System calls are not counted here: " + run.syscalls_unavailable + "\n";
  }
  return text;
}

std::string FormatTables(const std::vector<Table>& tables) {
  std::string out;
  for (const Table& table : tables) {
    bool has_p50 = false, has_p99 = false, has_throughput = false;
    bool has_syscalls = false, has_csw = false;
    std::vector<const Row*> baselines;
    for (const Row& row : table.rows) {
      has_syscalls |= row.counters.count(kSyscallsCounter) > 0;
      has_csw |= row.counters.count(kVoluntarySwitchesCounter) > 0;
      has_p50 |= row.counters.count("p50_ns") > 0;
      has_p99 |= row.counters.count("p99_ns") > 0;
      has_throughput |= !Throughput(row).empty();
      if (row.baseline && row.unavailable.empty()) baselines.push_back(&row);
    }
    const Row* best = table.Best();

    char cell[256];
    out += "\n== " + table.job + "\n";
    std::snprintf(cell, sizeof cell, "%-40s %10s", "backend", "median");
    out += cell;
    if (has_p50) out += "        p50";
    if (has_p99) out += "        p99";
    if (has_throughput) out += "     throughput";
    if (has_syscalls) out += "   syscalls";
    if (has_csw) out += "        csw";
    for (const Row* baseline : baselines) {
      std::snprintf(cell, sizeof cell, " %22s", ("x " + baseline->backend).c_str());
      out += cell;
    }
    out += "   x best\n";

    for (const Row& row : table.rows) {
      std::snprintf(cell, sizeof cell, "%-40s", row.backend.c_str());
      out += cell;
      if (!row.unavailable.empty()) {
        out += " unavailable: " + row.unavailable + "\n";
        continue;
      }
      std::snprintf(cell, sizeof cell, " %10s", FormatDuration(row.median_ns).c_str());
      out += cell;
      auto counter_cell = [&](const char* name) {
        auto it = row.counters.find(name);
        std::snprintf(cell, sizeof cell, " %10s",
                      it == row.counters.end() ? "-" : FormatDuration(it->second).c_str());
        out += cell;
      };
      if (has_p50) counter_cell("p50_ns");
      if (has_p99) counter_cell("p99_ns");
      if (has_throughput) {
        const std::string throughput = Throughput(row);
        std::snprintf(cell, sizeof cell, " %14s", throughput.empty() ? "-" : throughput.c_str());
        out += cell;
      }
      auto count_cell = [&](const char* name) {
        auto it = row.counters.find(name);
        std::snprintf(cell, sizeof cell, " %10s",
                      it == row.counters.end() ? "-" : FormatCount(it->second).c_str());
        out += cell;
      };
      if (has_syscalls) count_cell(kSyscallsCounter);
      if (has_csw) count_cell(kVoluntarySwitchesCounter);
      for (const Row* baseline : baselines) {
        std::snprintf(cell, sizeof cell, " %21sx",
                      FormatRatio(row.median_ns / baseline->median_ns).c_str());
        out += cell;
      }
      if (row.baseline || best == nullptr) {
        out += "        -";
      } else {
        std::snprintf(cell, sizeof cell, " %7sx",
                      FormatRatio(row.median_ns / best->median_ns).c_str());
        out += cell;
      }
      for (const auto& [name, value] : row.counters) {
        if (!IsColumnCounter(name)) out += "  " + name + "=" + FormatCount(value);
      }
      out += "\n";
    }
    out += "-> " + Verdict(table) + "\n";
  }
  return out;
}

namespace {

// The comparison's row for job/backend, or nullptr.
const ComparedRow* FindCompared(const Comparison* comparison, const std::string& job,
                                const std::string& backend) {
  if (comparison == nullptr) return nullptr;
  for (const ComparedRow& row : comparison->rows) {
    if (row.job == job && row.backend == backend) return &row;
  }
  return nullptr;
}

// The overview at the top of the HTML: for each job whose rows are
// combinations of backends ("scheduler+channel", "scheduler+loop+channel"),
// a matrix with the first part down and the rest across, each cell the
// row's ratio to the job's best, coloured from green (the best) to red (30x
// and beyond, on a log scale).
std::string OverviewHtml(const std::vector<Table>& tables) {
  std::string out;
  for (const Table& table : tables) {
    std::vector<std::string> down, across;
    std::map<std::pair<std::string, std::string>, const Row*> cells;
    for (const Row& row : table.rows) {
      const size_t plus = row.backend.find('+');
      if (plus == std::string::npos || row.baseline) continue;
      const std::string first = row.backend.substr(0, plus);
      const std::string rest = row.backend.substr(plus + 1);
      if (std::find(down.begin(), down.end(), first) == down.end()) down.push_back(first);
      if (std::find(across.begin(), across.end(), rest) == across.end()) across.push_back(rest);
      cells[{first, rest}] = &row;
    }
    if (cells.size() < 2) continue;
    std::sort(down.begin(), down.end());
    std::sort(across.begin(), across.end());
    const Row* best = table.Best();
    out += "<h3>" + HtmlEscape(table.job) + "</h3>\n<table class=\"overview\"><tr><th></th>";
    for (const std::string& column : across) out += "<th>" + HtmlEscape(column) + "</th>";
    out += "</tr>\n";
    for (const std::string& line : down) {
      out += "<tr><th>" + HtmlEscape(line) + "</th>";
      for (const std::string& column : across) {
        auto it = cells.find({line, column});
        if (it == cells.end()) {
          out += "<td></td>";
        } else if (!it->second->unavailable.empty() || best == nullptr) {
          out += "<td class=\"na\" title=\"" + HtmlEscape(it->second->unavailable) + "\">n/a</td>";
        } else {
          const double ratio = it->second->median_ns / best->median_ns;
          const double badness = std::clamp(std::log10(ratio) / std::log10(30.0), 0.0, 1.0);
          out += "<td style=\"background:hsl(" + Printf("%.0f", 120 * (1 - badness)) +
                 ",65%,72%)\" title=\"" + HtmlEscape(FormatDuration(it->second->median_ns)) +
                 "\">" + FormatRatio(ratio) + "x</td>";
        }
      }
      out += "</tr>\n";
    }
    out += "</table>\n";
  }
  if (out.empty()) return out;
  return "<section><h2>Overview</h2>\n<p>Jobs run on combinations of backends: each cell is "
         "the combination's median time as a multiple of the job's fastest (1.00x, green), "
         "up to red at 30x and beyond; n/a: the combination could not run here (hover for "
         "why). The panels below have every figure.</p>\n" +
         out + "</section>\n";
}

}  // namespace

std::string ToJson(const std::vector<Table>& tables, const Machine& machine, const RunInfo& run,
                   const Comparison* comparison) {
  std::string out = "{\n  \"format_version\": " + std::to_string(kResultsFormatVersion) +
                    ",\n  \"machine\": {\"cpu_count\": " + std::to_string(machine.cpu_count) +
                    ", \"cpu_model\": " + JsonString(machine.cpu_model) +
                    ", \"kernel\": " + JsonString(machine.kernel) + "},\n";
  out += "  \"run\": {\"started\": " + JsonString(run.started) +
         ", \"repetitions\": " + std::to_string(run.repetitions) +
         ", \"quick\": " + (run.quick ? "true" : "false") +
         ", \"filter\": " + JsonString(run.filter) +
         ", \"syscalls_counted\": " + (run.syscalls_unavailable.empty() ? "true" : "false") +
         (run.syscalls_unavailable.empty()
              ? std::string()
              : ", \"syscalls_unavailable\": " + JsonString(run.syscalls_unavailable)) +
         "},\n";
  out += "  \"results\": [";
  bool first = true;
  auto add = [&](const Table& table, const Row& row, const std::string& metric,
                 const std::string& value, const std::string& unit, const std::string& extra) {
    out += first ? "\n    " : ",\n    ";
    first = false;
    out += "{\"job\": " + JsonString(table.job) + ", \"backend\": " + JsonString(row.backend) +
           ", \"metric\": " + JsonString(metric) + ", \"value\": " + value +
           ", \"unit\": " + JsonString(unit) + extra + "}";
  };
  for (const Table& table : tables) {
    const Row* best = table.Best();
    for (const Row& row : table.rows) {
      if (!row.unavailable.empty()) {
        add(table, row, "unavailable", "null", "", ", \"reason\": " + JsonString(row.unavailable));
        continue;
      }
      const std::string kind = row.baseline ? ", \"baseline\": true" : ", \"baseline\": false";
      std::string samples;
      for (double sample : row.samples_ns) {
        samples += (samples.empty() ? "" : ", ") + JsonTime(sample);
      }
      add(table, row, "median_time_per_iteration", JsonTime(row.median_ns), "ns",
          kind + ", \"repetitions\": " + std::to_string(row.repetitions) + ", \"samples\": [" +
              samples + "]");
      if (const ComparedRow* compared = FindCompared(comparison, table.job, row.backend)) {
        add(table, row, "before_ns", JsonNumber(compared->before_ns), "ns", kind);
        add(table, row, "change", JsonNumber(compared->after_ns / compared->before_ns), "x",
            kind + ", \"verdict\": " + JsonString(compared->verdict));
        if (compared->p_value >= 0) {
          add(table, row, "utest_p", JsonNumber(compared->p_value), "", kind);
        }
      }
      for (const auto& [name, value] : row.counters) {
        add(table, row, name, JsonNumber(value), CounterUnit(name), kind);
      }
      if (!row.baseline && best != nullptr) {
        add(table, row, "ratio_to_best", JsonNumber(row.median_ns / best->median_ns), "x", kind);
      }
      for (const Row& baseline : table.rows) {
        if (baseline.baseline && baseline.unavailable.empty() && &baseline != &row) {
          add(table, row, "ratio_to_" + baseline.backend,
              JsonNumber(row.median_ns / baseline.median_ns), "x", kind);
        }
      }
    }
  }
  out += "\n  ]\n}\n";
  return out;
}

std::string ToHtml(const std::vector<Table>& tables, const Machine& machine, const RunInfo& run,
                   const Comparison* comparison) {
  std::string out =
      "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>taskrt comparison "
      "report</title>\n<style>body{font-family:sans-serif;max-width:960px;margin:2em auto;"
      "color:#222}pre{background:#f4f4f4;padding:.8em;white-space:pre-wrap}"
      "section{margin:1.5em 0}h2{font-size:1.1em;margin-bottom:.2em}"
      ".verdict{margin:.2em 0 0 0;font-size:.9em}"
      "table.overview{border-collapse:collapse;font-size:12px;margin-bottom:1em}"
      "table.overview th,table.overview td{border:1px solid #fff;padding:2px 6px}"
      "table.overview td{text-align:right;min-width:4em}td.na{background:#ddd;color:#666}"
      "table.overview th{font-weight:normal;text-align:left;background:#f4f4f4}"
      "</style></head><body>\n"
      "<h1>taskrt comparison report</h1>\n<pre>" +
      HtmlEscape(FormatPreamble(machine, run)) +
      "</pre>\n<p>One panel per job. Bars are the median wall-clock time per iteration: "
      "<b>shorter is better</b>. Green: the fastest backend. Grey: a raw baseline (the "
      "same work without the runtime). The label gives the time and its ratio to the "
      "fastest backend, then the system calls and voluntary context switches per iteration where "
      "the kernel counted them.</p>\n";
  if (comparison != nullptr) {
    out += "<p>Against the earlier run <code>" + HtmlEscape(comparison->baseline_path) +
           "</code> (started " + HtmlEscape(comparison->baseline_started) +
           "): under each bar, a thin grey one is the earlier run's median, labelled with the "
           "change and the verdict of a two-sided Mann-Whitney U test over the two runs' "
           "repetitions (significant below p 0.05).</p>\n";
    if (!comparison->machine_warning.empty()) {
      out += "<p><b>" + HtmlEscape(comparison->machine_warning) + "</b></p>\n";
    }
  }
  out += OverviewHtml(tables);
  constexpr int kLabelWidth = 300, kBarWidth = 360, kValueWidth = 300;
  // A second line per row for the earlier run, when there is one.
  const int row_height = comparison != nullptr ? 36 : 22;
  const int bar_height = 16;
  for (const Table& table : tables) {
    const Row* best = table.Best();
    double max_ns = 0, min_ns = 0;
    auto widen = [&](double ns) {
      max_ns = std::max(max_ns, ns);
      min_ns = min_ns == 0 ? ns : std::min(min_ns, ns);
    };
    for (const Row& row : table.rows) {
      if (!row.unavailable.empty()) continue;
      widen(row.median_ns);
      if (const ComparedRow* compared = FindCompared(comparison, table.job, row.backend)) {
        widen(compared->before_ns);
      }
    }
    // A log scale when the rows span more than 30x; otherwise small bars
    // would vanish beside the big ones.
    const bool log_scale = min_ns > 0 && max_ns / min_ns > 30;
    auto bar_length = [&](double ns) {
      if (max_ns <= 0) return 0.0;
      if (!log_scale) return kBarWidth * ns / max_ns;
      const double low = std::log10(min_ns) - 0.3;  // the shortest bar stays visible
      return kBarWidth * (std::log10(ns) - low) / (std::log10(max_ns) - low);
    };
    const int height = row_height * static_cast<int>(table.rows.size()) + 8;
    out += "<section><h2>" + HtmlEscape(table.job) + "</h2>\n";
    out += "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" +
           std::to_string(kLabelWidth + kBarWidth + kValueWidth) + "\" height=\"" +
           std::to_string(height) + "\" font-size=\"12\" font-family=\"sans-serif\">\n";
    int y = 4;
    for (const Row& row : table.rows) {
      out += "<text x=\"" + std::to_string(kLabelWidth - 6) + "\" y=\"" + std::to_string(y + 15) +
             "\" text-anchor=\"end\">" + HtmlEscape(row.backend) + "</text>";
      if (!row.unavailable.empty()) {
        out += "<text x=\"" + std::to_string(kLabelWidth) + "\" y=\"" + std::to_string(y + 15) +
               "\" fill=\"#b00\">unavailable: " + HtmlEscape(row.unavailable) + "</text>\n";
      } else {
        const char* colour = row.baseline ? "#999" : &row == best ? "#2a2" : "#36c";
        const double length = bar_length(row.median_ns);
        out += "<rect x=\"" + std::to_string(kLabelWidth) + "\" y=\"" + std::to_string(y + 3) +
               "\" width=\"" + Printf("%.1f", std::max(1.0, length)) + "\" height=\"" +
               std::to_string(bar_height) + "\" fill=\"" + colour + "\"/>";
        std::string label = FormatDuration(row.median_ns);
        if (!row.baseline && best != nullptr) {
          label += " (" + FormatRatio(row.median_ns / best->median_ns) + "x)";
        }
        std::string counts;
        for (const char* name : {kSyscallsCounter, kVoluntarySwitchesCounter}) {
          if (auto it = row.counters.find(name); it != row.counters.end()) {
            counts += std::string(counts.empty() ? "" : ", ") + FormatCount(it->second) + " " + name;
          }
        }
        if (!counts.empty()) label += " " + counts;
        out += "<text x=\"" + Printf("%.1f", kLabelWidth + length + 4) + "\" y=\"" +
               std::to_string(y + 15) + "\">" + HtmlEscape(label) + "</text>\n";
        if (const ComparedRow* compared = FindCompared(comparison, table.job, row.backend)) {
          const double before = bar_length(compared->before_ns);
          out += "<rect class=\"before\" x=\"" + std::to_string(kLabelWidth) + "\" y=\"" +
                 std::to_string(y + bar_height + 5) + "\" width=\"" +
                 Printf("%.1f", std::max(1.0, before)) + "\" height=\"6\" fill=\"#bbb\"/>";
          std::string was = "before " + FormatDuration(compared->before_ns) + ", " +
                            FormatChange(compared->before_ns, compared->after_ns) + ", " +
                            compared->verdict;
          if (compared->p_value >= 0) was += Printf(" (p %.3g)", compared->p_value);
          out += "<text x=\"" + Printf("%.1f", kLabelWidth + before + 4) + "\" y=\"" +
                 std::to_string(y + bar_height + 12) + "\" font-size=\"10\" fill=\"#555\">" +
                 HtmlEscape(was) + "</text>\n";
        }
      }
      y += row_height;
    }
    out += "</svg>\n<p class=\"verdict\">" + HtmlEscape(Verdict(table)) +
           (log_scale ? " (log scale)" : "") + "</p></section>\n";
  }
  out += "</body></html>\n";
  return out;
}

}  // namespace taskrt::bench
