#ifndef TASKRT_PLATFORM_IO_URING_REFUSE_FOR_TEST_H_
#define TASKRT_PLATFORM_IO_URING_REFUSE_FOR_TEST_H_

// For tests only: a kernel that refuses io_uring, on one thread, so that a
// test on a kernel that allows io_uring can check a backend's kUnavailable
// path (ring.h, "Errors").
//
// The refusal is a seccomp filter that makes io_uring_setup fail with a
// chosen errno. Installed without SECCOMP_FILTER_FLAG_TSYNC, it binds the
// calling thread only and ends with it; the thread also gets
// no_new_privs. Other system calls are unaffected. Where a filter cannot be
// installed (a CPU the filter is not written for, or a kernel or sandbox
// without seccomp) the functions say so, and the tests skip.

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace taskrt::io_uring_platform {

// Makes io_uring_setup fail with `error` on the calling thread from now on.
// OK, or kUnavailable saying why the filter cannot be installed here.
absl::Status RefuseIoUringSetupOnThisThread(int error);

// Runs `body` on a new thread on which io_uring_setup fails with `error`,
// and returns what `body` returned; or, if the filter cannot be installed
// here, the reason (the outer status; `body` did not run).
absl::StatusOr<absl::Status> RunWithIoUringSetupRefused(
    int error, absl::FunctionRef<absl::Status()> body);

// A GoogleTest check for a backend's factory: runs `create` where
// io_uring_setup fails with EPERM, then ENOSYS, and expects each time
// kUnavailable with a message that starts "io_uring: " and names the errno.
// Skips the calling test, with the reason, where the filter cannot be
// installed.
void ExpectUnavailableWhenIoUringIsRefused(absl::FunctionRef<absl::Status()> create);

}  // namespace taskrt::io_uring_platform

#endif  // TASKRT_PLATFORM_IO_URING_REFUSE_FOR_TEST_H_
