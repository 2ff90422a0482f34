// Runtime::Create chooses its scheduler by capability: one that runs every
// unit as a stackful task on one thread is accepted whatever it is called,
// any other (a thread pool, say) is refused with kInvalidArgument. The
// task calls themselves are covered by the conformance suite
// (tests/conformance/spl_tests.cc), on every scheduler with the capability.

#include "spl/spl_task.h"

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "backends/registry.h"
#include "core/scheduler.h"
#include "gtest/gtest.h"

namespace taskrt::spl {
namespace {

// A scheduler that reports `capabilities` under `name` and is never asked
// to run anything: creating (and destroying) a runtime schedules no work.
class FakeScheduler : public Scheduler {
 public:
  FakeScheduler(std::string name, SchedulerCapabilities capabilities)
      : name_(std::move(name)), capabilities_(capabilities) {}

  absl::Status Schedule(Work) override {
    ADD_FAILURE() << "the runtime scheduled work while being created";
    return absl::FailedPreconditionError("fake scheduler runs nothing");
  }
  absl::Status Shutdown() override { return absl::OkStatus(); }
  SchedulerMetrics metrics() const override { return {}; }
  bool IsCurrentThreadOwned() const override { return false; }
  size_t concurrency() const override { return 4; }
  std::string name() const override { return name_; }
  SchedulerCapabilities capabilities() const override { return capabilities_; }

 private:
  const std::string name_;
  const SchedulerCapabilities capabilities_;
};

TEST(SplRuntimeCreate, RefusesASchedulerOfManyThreads) {
  FakeScheduler pool("a_thread_pool(4)", {.honours_worker_count = true});
  absl::StatusOr<std::unique_ptr<Runtime>> runtime = Runtime::Create(pool);
  ASSERT_EQ(runtime.status().code(), absl::StatusCode::kInvalidArgument) << runtime.status();
  EXPECT_NE(runtime.status().message().find("single_thread_stackful_tasks"), std::string::npos)
      << "the message names the missing capability: " << runtime.status();
  EXPECT_NE(runtime.status().message().find("a_thread_pool(4)"), std::string::npos)
      << "and the scheduler refused: " << runtime.status();
}

TEST(SplRuntimeCreate, AsksTheCapabilityNotTheName) {
  // Called as the registered scheduler that has the capability is called.
  const std::vector<const SchedulerDescriptor*> stackful =
      SchedulersWith({.single_thread_stackful_tasks = true});
  ASSERT_FALSE(stackful.empty()) << "no registered scheduler has stackful tasks";
  FakeScheduler misnamed(std::string(stackful[0]->name), {});
  EXPECT_EQ(Runtime::Create(misnamed).status().code(), absl::StatusCode::kInvalidArgument)
      << "a scheduler without the capability is refused whatever its name";

  FakeScheduler capable("any_name(1)", {.single_thread_stackful_tasks = true});
  absl::StatusOr<std::unique_ptr<Runtime>> runtime = Runtime::Create(capable);
  ASSERT_TRUE(runtime.ok()) << runtime.status();
  EXPECT_EQ((*runtime)->task_count(), 0u);
}

TEST(SplRuntimeCreate, CallsThatNeedATaskAreRefusedOutsideTheRuntime) {
  FakeScheduler capable("any_name(1)", {.single_thread_stackful_tasks = true});
  absl::StatusOr<std::unique_ptr<Runtime>> runtime = Runtime::Create(capable);
  ASSERT_TRUE(runtime.ok()) << runtime.status();
  // Not on the scheduler's thread: the public rule, and nothing scheduled.
  EXPECT_EQ((*runtime)->Kill().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ((*runtime)->LateKill("x").code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ((*runtime)->SetSystem().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ((*runtime)->CoCall("x").status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ((*runtime)->CurrentName().status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_FALSE((*runtime)->Exists("x"));
}

}  // namespace
}  // namespace taskrt::spl
