#include "benchmarks/process_counters.h"

#include <linux/perf_event.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <string>
#include <utility>

namespace taskrt::bench {
namespace {

// The tracepoint's id, from tracefs (mounted on its own, or under debugfs);
// -1 with `why` set when neither has it.
long SyscallTracepointId(std::string& why) {
  for (const char* path : {"/sys/kernel/tracing/events/raw_syscalls/sys_enter/id",
                           "/sys/kernel/debug/tracing/events/raw_syscalls/sys_enter/id"}) {
    std::ifstream file(path);
    long id = -1;
    if (file >> id && id >= 0) return id;
  }
  why = "no raw_syscalls:sys_enter tracepoint id under /sys/kernel/tracing or "
        "/sys/kernel/debug/tracing (tracefs not mounted or not readable)";
  return -1;
}

int OpenCounter(long tracepoint, bool threads_only, std::string& why) {
  perf_event_attr attr;
  std::memset(&attr, 0, sizeof attr);
  attr.type = PERF_TYPE_TRACEPOINT;
  attr.size = sizeof attr;
  attr.config = static_cast<uint64_t>(tracepoint);
  attr.inherit = 1;
  attr.inherit_thread = threads_only ? 1 : 0;
  // pid 0 with inherit: this thread and every thread and process it (or
  // they) start from now on; cpu -1: on whichever CPU they run.
  const long fd = syscall(SYS_perf_event_open, &attr, 0, -1, -1, PERF_FLAG_FD_CLOEXEC);
  if (fd < 0) {
    const int error = errno;
    why = std::string("perf_event_open: ") + std::strerror(error) +
          (error == EACCES || error == EPERM
               ? " (needs root, CAP_PERFMON or kernel.perf_event_paranoid <= 1)"
               : "");
    return -1;
  }
  return static_cast<int>(fd);
}

uint64_t ReadCounter(int fd) {
  uint64_t value = 0;
  if (fd < 0 || read(fd, &value, sizeof value) != static_cast<ssize_t>(sizeof value)) return 0;
  return value;
}

}  // namespace

ProcessCounts operator-(const ProcessCounts& after, const ProcessCounts& before) {
  ProcessCounts d;
  d.has_syscalls = after.has_syscalls && before.has_syscalls;
  d.syscalls = after.syscalls - before.syscalls;
  d.all_syscalls = after.all_syscalls - before.all_syscalls;
  // The two totals are read one after the other: calls of this process's
  // threads between the reads land in `all` only, so the difference can be
  // off by those, in either direction.
  d.child_syscalls = d.all_syscalls > d.syscalls ? d.all_syscalls - d.syscalls : 0;
  d.voluntary_switches = after.voluntary_switches - before.voluntary_switches;
  d.involuntary_switches = after.involuntary_switches - before.involuntary_switches;
  d.child_voluntary_switches = after.child_voluntary_switches - before.child_voluntary_switches;
  d.child_involuntary_switches =
      after.child_involuntary_switches - before.child_involuntary_switches;
  return d;
}

ProcessCounters ProcessCounters::Open() {
  ProcessCounters counters;
  const long tracepoint = SyscallTracepointId(counters.syscalls_unavailable_);
  if (tracepoint < 0) return counters;
  counters.threads_fd_ = OpenCounter(tracepoint, /*threads_only=*/true,
                                     counters.syscalls_unavailable_);
  if (counters.threads_fd_ < 0) return counters;
  counters.all_fd_ = OpenCounter(tracepoint, /*threads_only=*/false,
                                 counters.syscalls_unavailable_);
  if (counters.all_fd_ < 0) {
    close(counters.threads_fd_);
    counters.threads_fd_ = -1;
  }
  return counters;
}

ProcessCounters::ProcessCounters(ProcessCounters&& other) noexcept
    : threads_fd_(std::exchange(other.threads_fd_, -1)),
      all_fd_(std::exchange(other.all_fd_, -1)),
      syscalls_unavailable_(std::move(other.syscalls_unavailable_)) {}

ProcessCounters& ProcessCounters::operator=(ProcessCounters&& other) noexcept {
  if (this != &other) {
    if (threads_fd_ >= 0) close(threads_fd_);
    if (all_fd_ >= 0) close(all_fd_);
    threads_fd_ = std::exchange(other.threads_fd_, -1);
    all_fd_ = std::exchange(other.all_fd_, -1);
    syscalls_unavailable_ = std::move(other.syscalls_unavailable_);
  }
  return *this;
}

ProcessCounters::~ProcessCounters() {
  if (threads_fd_ >= 0) close(threads_fd_);
  if (all_fd_ >= 0) close(all_fd_);
}

ProcessCounts ProcessCounters::Read() const {
  ProcessCounts counts;
  if (threads_fd_ >= 0 && all_fd_ >= 0) {
    counts.has_syscalls = true;
    // The second read's own call is in `all` but not in `threads`: the
    // child figure is one too high, the same in every Read().
    counts.syscalls = ReadCounter(threads_fd_);
    counts.all_syscalls = ReadCounter(all_fd_);
    counts.child_syscalls =
        counts.all_syscalls >= counts.syscalls ? counts.all_syscalls - counts.syscalls : 0;
  }
  rusage self{};
  getrusage(RUSAGE_SELF, &self);
  counts.voluntary_switches = static_cast<uint64_t>(self.ru_nvcsw);
  counts.involuntary_switches = static_cast<uint64_t>(self.ru_nivcsw);
  rusage children{};
  getrusage(RUSAGE_CHILDREN, &children);
  counts.child_voluntary_switches = static_cast<uint64_t>(children.ru_nvcsw);
  counts.child_involuntary_switches = static_cast<uint64_t>(children.ru_nivcsw);
  return counts;
}

}  // namespace taskrt::bench
