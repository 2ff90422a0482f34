#include "platform/io_uring/refuse_for_test.h"

#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <string>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "platform/io_uring/ring.h"

namespace taskrt::io_uring_platform {
namespace {

// The filter compares system call numbers, which differ between CPUs: it
// checks the architecture first and lets every other one through.
#if defined(__x86_64__)
constexpr unsigned kAuditArch = AUDIT_ARCH_X86_64;
#elif defined(__aarch64__)
constexpr unsigned kAuditArch = AUDIT_ARCH_AARCH64;
#endif

}  // namespace

absl::Status RefuseIoUringSetupOnThisThread([[maybe_unused]] int error) {
#if defined(__x86_64__) || defined(__aarch64__)
  sock_filter filter[] = {
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, arch)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, kAuditArch, 1, 0),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, nr)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_setup, 0, 1),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (static_cast<unsigned>(error) & SECCOMP_RET_DATA)),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
  };
  sock_fprog program{static_cast<unsigned short>(sizeof filter / sizeof filter[0]), filter};
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) {
    return absl::UnavailableError(
        absl::StrCat("cannot set no_new_privs for a seccomp filter: ", ErrnoText(errno)));
  }
  if (syscall(__NR_seccomp, SECCOMP_SET_MODE_FILTER, 0, &program) != 0) {
    return absl::UnavailableError(
        absl::StrCat("cannot install a seccomp filter here: ", ErrnoText(errno)));
  }
  return absl::OkStatus();
#else
  return absl::UnavailableError("the seccomp filter is written for x86-64 and AArch64 only");
#endif
}

absl::StatusOr<absl::Status> RunWithIoUringSetupRefused(
    int error, absl::FunctionRef<absl::Status()> body) {
  absl::Status filtered;
  absl::Status result;
  std::thread refused([&] {
    filtered = RefuseIoUringSetupOnThisThread(error);
    if (filtered.ok()) result = body();
  });
  refused.join();
  if (!filtered.ok()) return filtered;
  return result;
}

void ExpectUnavailableWhenIoUringIsRefused(absl::FunctionRef<absl::Status()> create) {
  for (int error : {EPERM, ENOSYS}) {
    absl::StatusOr<absl::Status> status = RunWithIoUringSetupRefused(error, create);
    if (!status.ok()) GTEST_SKIP() << status.status().message();
    const std::string text = ErrnoText(error);
    EXPECT_EQ(status->code(), absl::StatusCode::kUnavailable) << *status;
    EXPECT_TRUE(absl::StartsWith(status->message(), "io_uring: ")) << *status;
    EXPECT_TRUE(absl::StrContains(status->message(), text)) << *status << " should name " << text;
  }
}

}  // namespace taskrt::io_uring_platform
