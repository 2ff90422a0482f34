#include "tools/http_front/job_entry.h"

#include <utility>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/types/span.h"
#include "core/entry_registry.h"

namespace taskrt::http {

std::string JobDescription(const Job& job) {
  return absl::StrCat(job.kind == JobKind::kPrimes ? "primes " : "hash ", job.size);
}

absl::StatusOr<Job> ParseJobDescription(absl::string_view text) {
  const std::vector<absl::string_view> words = absl::StrSplit(text, ' ');
  Job job{JobKind::kPrimes, 0};
  if (words.size() == 2 && (words[0] == "primes" || words[0] == "hash") &&
      absl::SimpleAtoi(words[1], &job.size)) {
    job.kind = words[0] == "primes" ? JobKind::kPrimes : JobKind::kHash;
    return job;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("not a job description (\"primes <N>\" or \"hash <N>\"): \"",
                   absl::CHexEscape(text.substr(0, 64)), "\""));
}

std::optional<uint64_t> RunJobSteps(const Job& job, StepFn step) {
  return job.kind == JobKind::kPrimes ? CountPrimesBelow(job.size, step) : HashMiB(job.size, step);
}

std::string FormatResult(const Job& job, uint64_t result) {
  return job.kind == JobKind::kPrimes ? absl::StrCat(result)
                                      : absl::StrCat(absl::Hex(result, absl::kZeroPad16));
}

int RunJob(TaskContext& self, const Job& job) {
  uint64_t last_percent = 0;
  auto step = [&](uint64_t done, uint64_t total) {
    if (self.cancel_requested()) return false;
    const uint64_t percent = done * 100 / total;
    if (percent == last_percent && done != total) return true;
    last_percent = percent;
    const std::string progress = absl::StrCat("p ", done, " ", total);
    return self.Write(absl::MakeConstSpan(progress.data(), progress.size())).ok();
  };
  std::optional<uint64_t> result = RunJobSteps(job, step);
  if (!result.has_value()) return 2;
  const std::string text = absl::StrCat("r ", FormatResult(job, *result));
  return self.Write(absl::MakeConstSpan(text.data(), text.size())).ok() ? 0 : 1;
}

absl::Status RegisterHttpFrontEntries() {
  static const absl::Status* const registered = new absl::Status(
      RegisterEntry(kJobEntryName, [](TaskContext& self) {
        char description[64];
        absl::StatusOr<size_t> got = self.Read(absl::MakeSpan(description));
        if (!got.ok() || *got > sizeof description) return 3;
        absl::StatusOr<Job> job = ParseJobDescription(absl::string_view(description, *got));
        return job.ok() ? RunJob(self, *job) : 3;
      }));
  return *registered;
}

}  // namespace taskrt::http
