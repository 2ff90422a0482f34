#include "platform/io_uring/ring.h"

#include <liburing.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "gtest/gtest.h"
#include "platform/io_uring/refuse_for_test.h"

namespace taskrt::io_uring_platform {
namespace {

constexpr RingOptions kSmallRing{.user = "test ring", .sq_entries = 4, .cq_entries = 16};

// The probe result of a kernel that supports every opcode but `missing`.
class HandBuiltProbe {
 public:
  explicit HandBuiltProbe(std::vector<int> missing)
      : storage_(sizeof(io_uring_probe) + kOps * sizeof(io_uring_probe_op), 0) {
    probe()->last_op = kOps - 1;
    probe()->ops_len = kOps;
    for (int op = 0; op < kOps; ++op) probe()->ops[op].flags = IO_URING_OP_SUPPORTED;
    for (int op : missing) probe()->ops[op].flags = 0;
  }
  const io_uring_probe& get() { return *probe(); }

 private:
  static constexpr int kOps = 64;
  io_uring_probe* probe() { return reinterpret_cast<io_uring_probe*>(storage_.data()); }
  std::vector<unsigned char> storage_;
};

TEST(ErrnoTest, TextIsTheSystemsMessage) {
  EXPECT_EQ(ErrnoText(EPERM), std::strerror(EPERM));
  EXPECT_EQ(ErrnoText(ENOMEM), std::strerror(ENOMEM));
}

TEST(ErrnoTest, RefusalsAreTheKernelSayingNoToIoUring) {
  for (int error : {ENOSYS, EPERM, EACCES, EINVAL, EOPNOTSUPP}) {
    EXPECT_TRUE(IsRefusal(error)) << ErrnoText(error);
  }
  for (int error : {0, EINTR, EAGAIN, ENOMEM, EMFILE, EBADF, EFAULT, EBUSY}) {
    EXPECT_FALSE(IsRefusal(error)) << ErrnoText(error);
  }
}

TEST(ErrnoTest, ARefusalIsUnavailableAndOtherErrorsNameTheUser) {
  absl::Status refused = RefusedOrError("test ring", "io_uring_enter", EPERM);
  EXPECT_EQ(refused.code(), absl::StatusCode::kUnavailable) << refused;
  EXPECT_EQ(refused.message(), "io_uring: io_uring_enter refused: " + ErrnoText(EPERM));

  absl::Status failed = RefusedOrError("test ring", "io_uring_enter", ENOMEM);
  EXPECT_EQ(failed.code(), absl::StatusCode::kResourceExhausted) << failed;
  EXPECT_EQ(failed.message(), "test ring: io_uring_enter: " + ErrnoText(ENOMEM));
}

// A ring that SetUpRing() made, or the test skips saying why the kernel
// would not make one (after checking the refusal's form).
class RingTest : public ::testing::Test {
 protected:
  void SetUpWith(const RingOptions& options) {
    absl::StatusOr<RingSetup> setup = SetUpRing(&ring_, options);
    if (!setup.ok()) {
      EXPECT_EQ(setup.status().code(), absl::StatusCode::kUnavailable) << setup.status();
      EXPECT_TRUE(absl::StartsWith(setup.status().message(), "io_uring: io_uring_setup refused: "))
          << setup.status();
      GTEST_SKIP() << "io_uring is refused here: " << setup.status().message();
    }
    setup_ = *setup;
    ready_ = true;
  }
  void TearDown() override {
    if (ready_) ExitRing(&ring_);
  }

  // Fills the submission queue with no-ops, submits them in one call and
  // waits for every completion.
  void ExpectAFullQueueOfNopsToComplete() {
    const unsigned entries = ring_.sq.ring_entries;
    for (unsigned i = 0; i < entries; ++i) {
      io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
      ASSERT_NE(sqe, nullptr) << i;
      io_uring_prep_nop(sqe);
      io_uring_sqe_set_data64(sqe, i);
    }
    EXPECT_EQ(io_uring_get_sqe(&ring_), nullptr) << "the queue holds sq_entries";
    ASSERT_EQ(SubmitRetrying(&ring_), static_cast<int>(entries));
    std::vector<bool> completed(entries, false);
    for (unsigned i = 0; i < entries; ++i) {
      io_uring_cqe* cqe = nullptr;
      ASSERT_EQ(WaitRetrying(&ring_, &cqe), 0);
      const uint64_t data = io_uring_cqe_get_data64(cqe);
      EXPECT_EQ(cqe->res, 0);
      io_uring_cqe_seen(&ring_, cqe);
      ASSERT_LT(data, entries);
      EXPECT_FALSE(completed[data]) << data << " completed twice";
      completed[data] = true;
    }
  }

  io_uring ring_{};
  RingSetup setup_;
  bool ready_ = false;
};

TEST_F(RingTest, SetUpGivesTheSizesAskedForAndARingThatWorks) {
  SetUpWith(kSmallRing);
  if (IsSkipped()) return;
  EXPECT_EQ(ring_.sq.ring_entries, 4u);
  EXPECT_EQ(ring_.cq.ring_entries, 16u);
  EXPECT_FALSE(setup_.cooperative_task_running) << "not asked for";
  EXPECT_EQ(ring_.flags & IORING_SETUP_COOP_TASKRUN, 0u);
  ExpectAFullQueueOfNopsToComplete();
}

TEST_F(RingTest, CooperativeTaskRunningIsReportedAsTheRingGotIt) {
  SetUpWith({.user = "test ring", .sq_entries = 4, .cooperative_task_running = true});
  if (IsSkipped()) return;
  // Which mode the ring gets depends on the kernel; the report must match it.
  std::printf("cooperative task running: %s\n", setup_.cooperative_task_running ? "yes" : "no");
  constexpr unsigned kCooperative = IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG;
  EXPECT_EQ(ring_.flags & kCooperative, setup_.cooperative_task_running ? kCooperative : 0u);
  ExpectAFullQueueOfNopsToComplete();
}

TEST_F(RingTest, ProbingFindsTheNoOpAndNamesAnOpcodeTheKernelLacks) {
  SetUpWith(kSmallRing);
  if (IsSkipped()) return;
  EXPECT_TRUE(ProbeOpcodes(&ring_, {{IORING_OP_NOP, "IORING_OP_NOP"}}).ok());
  // Beyond any kernel's last opcode.
  absl::Status status =
      ProbeOpcodes(&ring_, {{IORING_OP_NOP, "IORING_OP_NOP"}, {255, "opcode 255"}});
  EXPECT_EQ(status.code(), absl::StatusCode::kUnavailable) << status;
  EXPECT_EQ(status.message(), "io_uring: the kernel does not support opcode 255");
}

// SetUpRing(options)'s status on a thread where io_uring_setup fails with
// `error`; the outer status says why that thread could not be made.
absl::StatusOr<absl::Status> SetUpWhereRefused(int error, const RingOptions& options) {
  return RunWithIoUringSetupRefused(error, [&] {
    io_uring ring{};
    return SetUpRing(&ring, options).status();
  });
}

TEST(SetUpRingTest, ARefusedSetUpIsUnavailableAndOtherErrorsAreNot) {
  for (bool cooperative : {false, true}) {
    RingOptions options = kSmallRing;
    options.cooperative_task_running = cooperative;
    for (int error : {EPERM, EINVAL}) {
      absl::StatusOr<absl::Status> status = SetUpWhereRefused(error, options);
      if (!status.ok()) GTEST_SKIP() << status.status().message();
      EXPECT_EQ(status->code(), absl::StatusCode::kUnavailable) << *status;
      EXPECT_EQ(status->message(), "io_uring: io_uring_setup refused: " + ErrnoText(error));
    }
    absl::StatusOr<absl::Status> status = SetUpWhereRefused(ENOMEM, options);
    if (!status.ok()) GTEST_SKIP() << status.status().message();
    EXPECT_EQ(status->code(), absl::StatusCode::kResourceExhausted) << *status;
    EXPECT_EQ(status->message(), "test ring: io_uring_setup: " + ErrnoText(ENOMEM));
  }
}

TEST(CheckFeaturesTest, NamesTheFirstMissingFeatureAndWhenItCame) {
  constexpr Feature kNeeded[] = {
      {IORING_FEAT_NODROP, "IORING_FEAT_NODROP", "Linux 5.5"},
      {IORING_FEAT_EXT_ARG, "IORING_FEAT_EXT_ARG", "Linux 5.11"},
  };
  EXPECT_TRUE(CheckFeatures(IORING_FEAT_NODROP | IORING_FEAT_EXT_ARG, kNeeded).ok());
  EXPECT_TRUE(CheckFeatures(0, {}).ok());
  absl::Status status = CheckFeatures(IORING_FEAT_NODROP, kNeeded);
  EXPECT_EQ(status.code(), absl::StatusCode::kUnavailable) << status;
  EXPECT_EQ(status.message(), "io_uring: the kernel lacks IORING_FEAT_EXT_ARG (Linux 5.11)");
  status = CheckFeatures(0, kNeeded);
  EXPECT_EQ(status.message(), "io_uring: the kernel lacks IORING_FEAT_NODROP (Linux 5.5)");
}

TEST(CheckOpcodesTest, NamesTheFirstMissingOpcode) {
  constexpr Opcode kNeeded[] = {
      {IORING_OP_SEND, "IORING_OP_SEND"},
      {IORING_OP_RECV, "IORING_OP_RECV"},
      {IORING_OP_NOP, "IORING_OP_NOP"},
  };
  EXPECT_TRUE(CheckOpcodes(HandBuiltProbe({}).get(), kNeeded).ok());
  EXPECT_TRUE(CheckOpcodes(HandBuiltProbe({IORING_OP_SEND}).get(), {}).ok());
  EXPECT_TRUE(CheckOpcodes(HandBuiltProbe({IORING_OP_POLL_ADD}).get(), kNeeded).ok());

  absl::Status status = CheckOpcodes(HandBuiltProbe({IORING_OP_RECV}).get(), kNeeded);
  EXPECT_EQ(status.code(), absl::StatusCode::kUnavailable) << status;
  EXPECT_EQ(status.message(), "io_uring: the kernel does not support IORING_OP_RECV");
  status = CheckOpcodes(HandBuiltProbe({IORING_OP_NOP, IORING_OP_SEND}).get(), kNeeded);
  EXPECT_EQ(status.message(), "io_uring: the kernel does not support IORING_OP_SEND");
}

}  // namespace
}  // namespace taskrt::io_uring_platform
