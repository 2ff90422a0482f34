#ifndef TASKRT_TESTS_FAULTS_SYSCALL_FAULTS_H_
#define TASKRT_TESTS_FAULTS_SYSCALL_FAULTS_H_

// A syscall shim for tests: linked into a test binary (alwayslink), it
// defines sendmsg(), send() and recv(), so they interpose libc's, and makes
// the non-blocking calls (flags with MSG_DONTWAIT: a socket channel's)
// fail now and then the ways the kernel may: EINTR, a short write or read,
// and EAGAIN on sends (not on recv: see syscall_faults.cc). Every other
// call passes straight through.
//
// Why: on an idle machine those cases almost never happen, so the channel's
// code for them would otherwise go untested.
//
// Each thread draws from its own PRNG, seeded from TASKRT_FAULT_SEED
// (default fixed) and the order threads first call in, so a failing run's
// faults come back with its seed, as far as thread scheduling repeats. At
// exit the binary prints one line:
//   faults injected: N (eintr=..., eagain=..., short_write=..., short_read=...) over M calls

#include <cstdint>
#include <string>

namespace taskrt::faults {

struct FaultCounts {
  uint64_t calls = 0;  // MSG_DONTWAIT calls seen, faulted or not
  uint64_t eintr = 0;
  uint64_t eagain = 0;
  uint64_t short_write = 0;
  uint64_t short_read = 0;

  uint64_t injected() const { return eintr + eagain + short_write + short_read; }
};

// What has been injected so far in this process.
FaultCounts Counts();

// The exit line, for `counts`.
std::string Describe(const FaultCounts& counts);

// For a conformance main(): returns `suite_result` if it is a failure;
// otherwise fails (returns 1, saying why) when an unfiltered run injected
// no fault of some kind, so a shim that is not interposed cannot pass
// silently. A filtered run (--gtest_filter, bazel --test_filter) may be too
// small to draw every kind and is not checked.
int RequireFaultsInjected(int suite_result);

}  // namespace taskrt::faults

#endif  // TASKRT_TESTS_FAULTS_SYSCALL_FAULTS_H_
