#include "benchmarks/job_registry.h"

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

namespace taskrt::bench {
namespace {

// Function-local statics: registrars arrive during static initialisation of
// other files, in an order we do not control.
std::vector<JobRegistrar>& Registrars() {
  static auto* registrars = new std::vector<JobRegistrar>;
  return *registrars;
}

std::vector<std::string>& MutableJobNames() {
  static auto* names = new std::vector<std::string>;
  return *names;
}

JobSettings& Settings() {
  static JobSettings settings;
  return settings;
}

bool registered = false;

}  // namespace

bool AddJobRegistrar(JobRegistrar registrar) {
  Registrars().push_back(registrar);
  return true;
}

void RegisterJobs(const JobSettings& settings) {
  if (registered) return;
  registered = true;
  Settings() = settings;
  for (JobRegistrar registrar : Registrars()) registrar();
}

int64_t Iterations(int64_t full) {
  if (!Settings().quick) return full;
  return std::max<int64_t>(1, full / 1000);
}

bool Quick() { return Settings().quick; }

const std::vector<std::string>& JobNames() { return MutableJobNames(); }

void RecordJobName(const std::string& name) { MutableJobNames().push_back(name); }

}  // namespace taskrt::bench
