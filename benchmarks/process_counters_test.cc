#include "benchmarks/process_counters.h"

#include <spawn.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <thread>

#include "gtest/gtest.h"

extern char** environ;

namespace taskrt::bench {
namespace {

constexpr int kCalls = 1000;

void MakeCalls(int n) {
  for (int i = 0; i < n; ++i) syscall(SYS_getppid);
}

// Skips, saying why, where the kernel does not let us count system calls.
#define SKIP_UNLESS_COUNTED(counters)                                              \
  if (!(counters).syscalls_unavailable().empty()) {                                \
    GTEST_SKIP() << "system calls are not counted here: "                          \
                 << (counters).syscalls_unavailable();                             \
  }

TEST(ProcessCountersTest, CountsTheCallsOfThisThreadExactlyButForTheReads) {
  const ProcessCounters counters = ProcessCounters::Open();
  SKIP_UNLESS_COUNTED(counters);
  const ProcessCounts before = counters.Read();
  MakeCalls(kCalls);
  const ProcessCounts used = counters.Read() - before;
  ASSERT_TRUE(used.has_syscalls);
  // A Read() makes four calls: two counter reads and two getrusage.
  EXPECT_GE(used.syscalls, static_cast<uint64_t>(kCalls));
  EXPECT_LE(used.syscalls, static_cast<uint64_t>(kCalls + 4));
  EXPECT_EQ(used.child_syscalls, 0u);
}

TEST(ProcessCountersTest, CountsThreadsStartedAfterOpen) {
  const ProcessCounters counters = ProcessCounters::Open();
  SKIP_UNLESS_COUNTED(counters);
  const ProcessCounts before = counters.Read();
  std::thread worker([] { MakeCalls(kCalls); });
  worker.join();
  const ProcessCounts used = counters.Read() - before;
  // The thread's own calls, plus starting and joining it.
  EXPECT_GE(used.syscalls, static_cast<uint64_t>(kCalls));
  EXPECT_LE(used.syscalls, static_cast<uint64_t>(kCalls + 100));
  EXPECT_EQ(used.child_syscalls, 0u);
}

TEST(ProcessCountersTest, CountsChildProcessesApart) {
  const ProcessCounters counters = ProcessCounters::Open();
  SKIP_UNLESS_COUNTED(counters);
  const ProcessCounts before = counters.Read();
  // A shell that makes some hundreds of calls of its own (start-up, exec of
  // `true`, a loop of builtins that each write nothing).
  char shell[] = "/bin/sh";
  char flag[] = "-c";
  char script[] = "i=0; while [ $i -lt 200 ]; do i=$((i+1)); /bin/true; done";
  char* argv[] = {shell, flag, script, nullptr};
  pid_t pid = -1;
  ASSERT_EQ(posix_spawn(&pid, shell, nullptr, nullptr, argv, environ), 0);
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  const ProcessCounts used = counters.Read() - before;
  // 200 fork+exec+wait cycles cost far more than 200 calls in the children.
  EXPECT_GE(used.child_syscalls, 200u * 3);
  // Ours: the spawn and the wait, a handful.
  EXPECT_LT(used.syscalls, 100u);
  // The shell waited for each child: it blocked, and getrusage counts the
  // waited-for shell's switches.
  EXPECT_GE(used.child_voluntary_switches, 1u);
}

TEST(ProcessCountersTest, ContextSwitchTotalsNeverGoBackwards) {
  const ProcessCounters counters = ProcessCounters::Open();
  const ProcessCounts first = counters.Read();
  MakeCalls(10);
  const ProcessCounts second = counters.Read();
  EXPECT_GE(second.voluntary_switches, first.voluntary_switches);
  EXPECT_GE(second.involuntary_switches, first.involuntary_switches);
}

TEST(ProcessCountersTest, MovedFromCountersCountNothingAndDoNotCrash) {
  ProcessCounters counters = ProcessCounters::Open();
  ProcessCounters moved = std::move(counters);
  const ProcessCounts read = counters.Read();  // NOLINT(bugprone-use-after-move): the test
  EXPECT_FALSE(read.has_syscalls);
  if (moved.syscalls_unavailable().empty()) {
    EXPECT_TRUE(moved.Read().has_syscalls);
  }
}

}  // namespace
}  // namespace taskrt::bench
