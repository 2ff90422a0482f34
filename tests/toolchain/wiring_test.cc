// Proves that the system libraries are wired into Bazel and link in every
// build configuration: Abseil's StatusOr, liburing's ring set-up and
// GoogleTest itself.

#include <liburing.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace {

absl::StatusOr<int> ParsePositive(int value) {
  if (value <= 0) {
    return absl::InvalidArgumentError(absl::StrCat("not positive: ", value));
  }
  return value;
}

TEST(WiringTest, AbseilStatusOrCarriesValuesAndErrors) {
  absl::StatusOr<int> ok = ParsePositive(7);
  ASSERT_TRUE(ok.ok());
  EXPECT_EQ(*ok, 7);

  absl::StatusOr<int> bad = ParsePositive(-1);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(bad.status().message(), "not positive: -1");
}

TEST(WiringTest, LiburingRingInitialisesAndRunsANop) {
  io_uring ring;
  const int rc = io_uring_queue_init(8, &ring, 0);
  if (rc == -ENOSYS || rc == -EPERM) {
    GTEST_SKIP() << "io_uring refused by this kernel: " << std::strerror(-rc);
  }
  ASSERT_EQ(rc, 0) << std::strerror(-rc);

  io_uring_sqe* sqe = io_uring_get_sqe(&ring);
  ASSERT_NE(sqe, nullptr);
  io_uring_prep_nop(sqe);
  io_uring_sqe_set_data64(sqe, 42);
  ASSERT_EQ(io_uring_submit(&ring), 1);

  io_uring_cqe* cqe = nullptr;
  ASSERT_EQ(io_uring_wait_cqe(&ring, &cqe), 0);
  EXPECT_EQ(cqe->res, 0);
  EXPECT_EQ(io_uring_cqe_get_data64(cqe), 42u);
  io_uring_cqe_seen(&ring, cqe);
  io_uring_queue_exit(&ring);
}

}  // namespace
