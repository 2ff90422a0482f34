#ifndef TASKRT_TOOLS_HTTP_FRONT_JOB_ENTRY_H_
#define TASKRT_TOOLS_HTTP_FRONT_JOB_ENTRY_H_

// The HTTP front's job as a task entry: what a task runs for /primes and
// /hash, and the same entry registered by name ("http_front.job") for
// schedulers that run entries in worker processes (tools/nats_worker).
//
// Task -> owner messages: "p <done> <total>" for progress (at most one per
// percent), then "r <result>" (a count in decimal, a hash in 16 hex
// digits). Entry values: 0 answered; 1 the result could not be written;
// 2 stopped early (a cancel, or a progress message that could not be
// written); 3 (the named entry only) the owner's first message was not a
// job description, or never came.
//
// The named entry reads the job's description, "primes <N>" or
// "hash <N>", as the owner's first message, then runs RunJob.
//
// Thread safety: every function may be called from any thread; RunJob on
// the entry's own thread, with its TaskContext.

#include <cstdint>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "core/task.h"
#include "tools/http_front/jobs.h"

namespace taskrt::http {

inline constexpr char kJobEntryName[] = "http_front.job";

enum class JobKind { kPrimes, kHash };
struct Job {
  JobKind kind;
  uint64_t size;
};

// "primes <N>" / "hash <N>", and back. kInvalidArgument, quoting the text,
// for anything else.
std::string JobDescription(const Job& job);
absl::StatusOr<Job> ParseJobDescription(absl::string_view text);

// Runs `job` step by step; nullopt if `step` stopped it.
std::optional<uint64_t> RunJobSteps(const Job& job, StepFn step);

// The body of a job's answer: a count in decimal, a hash in 16 hex digits.
std::string FormatResult(const Job& job, uint64_t result);

// Runs `job` in a task, writing progress and the result to the owner;
// returns 0, 1 or 2 as above.
int RunJob(TaskContext& self, const Job& job);

// Registers the named entry (kJobEntryName) in this process, for the
// server and for every worker that serves it. Idempotent: later calls
// return what the first returned (kAlreadyExists if something else took
// the name first).
absl::Status RegisterHttpFrontEntries();

}  // namespace taskrt::http

#endif  // TASKRT_TOOLS_HTTP_FRONT_JOB_ENTRY_H_
