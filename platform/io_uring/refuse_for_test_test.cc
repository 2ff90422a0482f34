#include "platform/io_uring/refuse_for_test.h"

#include <linux/io_uring.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <string>

#include "absl/status/status.h"
#include "gtest/gtest-spi.h"
#include "gtest/gtest.h"
#include "platform/io_uring/ring.h"

namespace taskrt::io_uring_platform {
namespace {

// An errno no kernel gives io_uring_setup by itself.
constexpr int kUnusualError = EHOSTDOWN;

// io_uring_setup(2) itself, not liburing: 0 (the ring closed again) or the
// errno it failed with.
int TryIoUringSetup() {
  io_uring_params params{};
  const long fd = syscall(__NR_io_uring_setup, 4, &params);
  if (fd < 0) return errno;
  close(static_cast<int>(fd));
  return 0;
}

TEST(RefuseForTestTest, IoUringSetupFailsOnTheFilteredThreadOnly) {
  int on_filtered_thread = 0;
  bool eventfd_works = false;
  absl::StatusOr<absl::Status> run = RunWithIoUringSetupRefused(kUnusualError, [&] {
    on_filtered_thread = TryIoUringSetup();
    const int fd = eventfd(0, EFD_CLOEXEC);
    eventfd_works = fd >= 0;
    if (fd >= 0) close(fd);
    return absl::OkStatus();
  });
  if (!run.ok()) GTEST_SKIP() << run.status().message();
  EXPECT_EQ(on_filtered_thread, kUnusualError) << ErrnoText(on_filtered_thread);
  EXPECT_TRUE(eventfd_works) << "other system calls pass the filter";
  // This thread never had the filter: whatever the kernel says here, it is
  // not the filter's errno.
  EXPECT_NE(TryIoUringSetup(), kUnusualError);
}

TEST(RefuseForTestTest, RunReturnsWhatTheBodyReturned) {
  absl::StatusOr<absl::Status> run =
      RunWithIoUringSetupRefused(EPERM, [] { return absl::DataLossError("from the body"); });
  if (!run.ok()) GTEST_SKIP() << run.status().message();
  EXPECT_EQ(*run, absl::DataLossError("from the body"));
}

TEST(RefuseForTestTest, TheFactoryCheckPassesABackendThatReportsTheRefusal) {
  ExpectUnavailableWhenIoUringIsRefused(
      [] { return RefusedOrError("test", "io_uring_setup", TryIoUringSetup()); });
}

TEST(RefuseForTestTest, TheFactoryCheckFailsABackendThatHidesTheRefusal) {
  if (absl::StatusOr<absl::Status> run = RunWithIoUringSetupRefused(EPERM, [] {
        return absl::OkStatus();
      });
      !run.ok()) {
    GTEST_SKIP() << run.status().message();
  }
  ::testing::TestPartResultArray failures;
  {
    ::testing::ScopedFakeTestPartResultReporter intercept(
        ::testing::ScopedFakeTestPartResultReporter::INTERCEPT_ONLY_CURRENT_THREAD, &failures);
    // Unavailable, but without the errno's text.
    ExpectUnavailableWhenIoUringIsRefused(
        [] { return absl::UnavailableError("io_uring: not today"); });
  }
  ASSERT_EQ(failures.size(), 2) << "one per errno tried";
  for (int i = 0; i < failures.size(); ++i) {
    EXPECT_TRUE(failures.GetTestPartResult(i).nonfatally_failed());
    const std::string message = failures.GetTestPartResult(i).message();
    EXPECT_NE(message.find("should name"), std::string::npos) << message;
  }
}

}  // namespace
}  // namespace taskrt::io_uring_platform
