#ifndef TASKRT_TOOLS_HTTP_FRONT_JOBS_H_
#define TASKRT_TOOLS_HTTP_FRONT_JOBS_H_

// The heavy work the HTTP front hands to background tasks. Plain functions,
// so they can be tested and timed on their own.
//
// Each job works in steps and calls `step(done, total)` after each one; a
// step that returns false stops the job, which then returns nullopt (the
// task was cancelled). Steps are small: a few hundred microseconds.

#include <cstdint>
#include <optional>

#include "absl/functional/function_ref.h"

namespace taskrt::http {

using StepFn = absl::FunctionRef<bool(uint64_t done, uint64_t total)>;

// How many primes are below `below` (segmented sieve, 256 KiB segments).
std::optional<uint64_t> CountPrimesBelow(uint64_t below, StepFn step);

// FNV-1a 64 of `mib` MiB of a fixed byte pattern (byte j of MiB m is
// (31 * j + m) mod 256), one step per MiB.
std::optional<uint64_t> HashMiB(uint64_t mib, StepFn step);

}  // namespace taskrt::http

#endif  // TASKRT_TOOLS_HTTP_FRONT_JOBS_H_
