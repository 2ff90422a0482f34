#ifndef TASKRT_CORE_TRACE_TESTING_H_
#define TASKRT_CORE_TRACE_TESTING_H_

// Reading a trace file back in tests: the JSON as a user's tool reads it.

#include <cstdint>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_format.h"
#include "nlohmann/json.hpp"

namespace taskrt::trace::testing {

// The parsed file, or a JSON null when it is missing or not JSON.
inline nlohmann::json ReadTrace(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return nlohmann::json::parse(text.str(), nullptr, /*allow_exceptions=*/false);
}

// A flow id as the file writes it.
inline std::string FlowId(uint64_t id) { return absl::StrFormat("0x%x", id); }

// The events of phase `phase` and name `name` that `match` accepts.
inline std::vector<nlohmann::json> EventsOf(
    const nlohmann::json& trace, const std::string& phase, const std::string& name,
    const std::function<bool(const nlohmann::json&)>& match = nullptr) {
  std::vector<nlohmann::json> found;
  if (!trace.is_object() || !trace.contains("traceEvents")) return found;
  for (const nlohmann::json& event : trace["traceEvents"]) {
    if (event.value("ph", "") == phase && event.value("name", "") == name &&
        (!match || match(event))) {
      found.push_back(event);
    }
  }
  return found;
}

// The events that carry args.unit == `unit`.
inline std::function<bool(const nlohmann::json&)> OfUnit(uint64_t unit) {
  return [unit](const nlohmann::json& event) {
    return event.contains("args") && event["args"].value("unit", uint64_t{0}) == unit;
  };
}

// The flow events with id `id`.
inline std::function<bool(const nlohmann::json&)> WithId(const std::string& id) {
  return [id](const nlohmann::json& event) { return event.value("id", "") == id; };
}

// The names the file gives lane (thread) `tid`: one for a named lane.
inline std::vector<std::string> LaneNames(const nlohmann::json& trace, uint64_t tid) {
  std::vector<std::string> names;
  for (const nlohmann::json& event : EventsOf(trace, "M", "thread_name")) {
    if (event["tid"].get<uint64_t>() == tid) names.push_back(event["args"]["name"]);
  }
  return names;
}

}  // namespace taskrt::trace::testing

#endif  // TASKRT_CORE_TRACE_TESTING_H_
