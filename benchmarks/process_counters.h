#ifndef TASKRT_BENCHMARKS_PROCESS_COUNTERS_H_
#define TASKRT_BENCHMARKS_PROCESS_COUNTERS_H_

// What this process and the processes it started did, as the kernel counts
// it: the figures that explain a row's time (one backend makes a system
// call per message, another none; one blocks its thread per round trip,
// another never does).
//
//   system calls      a perf counter on the raw_syscalls:sys_enter
//                     tracepoint, inherited by every thread and child
//                     process started after Open(); threads of this
//                     process and child processes (a Go program, a load
//                     generator) are counted apart. Needs tracefs and
//                     perf_event_open's permission (root, CAP_PERFMON or
//                     kernel.perf_event_paranoid <= 1); without them it
//                     is unavailable and says why.
//   context switches  getrusage: voluntary (the thread blocked: a park, a
//                     wait in the kernel) and involuntary (preempted), of
//                     this process's threads and of its waited-for
//                     children.
//
// The difference of two Read()s counts whatever ran between them, on any
// thread, with the few system calls of a Read() itself.

#include <cstdint>
#include <string>

namespace taskrt::bench {

struct ProcessCounts {
  bool has_syscalls = false;  // false: system calls were not counted
  uint64_t syscalls = 0;        // by this process's threads
  uint64_t child_syscalls = 0;  // by child processes
  uint64_t all_syscalls = 0;    // both: what child_syscalls is derived from
  uint64_t voluntary_switches = 0;
  uint64_t involuntary_switches = 0;
  uint64_t child_voluntary_switches = 0;
  uint64_t child_involuntary_switches = 0;
};

// `after` minus `before`, field by field; the children's system calls are
// the difference of all of them less the threads', never below 0.
ProcessCounts operator-(const ProcessCounts& after, const ProcessCounts& before);

class ProcessCounters {
 public:
  // Starts counting; never fails (see syscalls_unavailable()). Call it
  // before starting the threads and processes to be counted.
  static ProcessCounters Open();

  ProcessCounters(ProcessCounters&& other) noexcept;
  ProcessCounters& operator=(ProcessCounters&& other) noexcept;
  ProcessCounters(const ProcessCounters&) = delete;
  ProcessCounters& operator=(const ProcessCounters&) = delete;
  ~ProcessCounters();

  // Running totals, to subtract (context switches count from the process's
  // start, system calls from Open()).
  ProcessCounts Read() const;

  // Why system calls are not counted ("perf_event_open: Permission
  // denied ..."), or empty when they are.
  const std::string& syscalls_unavailable() const { return syscalls_unavailable_; }

 private:
  ProcessCounters() = default;

  int threads_fd_ = -1;  // this process's threads
  int all_fd_ = -1;      // threads and child processes
  std::string syscalls_unavailable_;
};

}  // namespace taskrt::bench

#endif  // TASKRT_BENCHMARKS_PROCESS_COUNTERS_H_
