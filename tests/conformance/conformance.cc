#include "tests/conformance/conformance.h"

#include <cstdio>
#include <utility>

#include "absl/time/time.h"

namespace taskrt::conformance {
namespace {

Backends& Registered() {
  static Backends* backends = new Backends;
  return *backends;
}

}  // namespace

std::vector<size_t> WorkerCounts() { return Registered().worker_counts; }

std::string WorkerCountName(const ::testing::TestParamInfo<size_t>& info) {
  return "Workers" + std::to_string(info.param);
}

void ConformanceTest::SetUp() {
  const Backends& backends = Registered();
  ASSERT_TRUE(backends.make_scheduler && backends.make_channels && backends.make_loop)
      << "RunConformanceSuite was not given every factory";
  absl::StatusOr<std::unique_ptr<Scheduler>> scheduler = backends.make_scheduler(GetParam());
  absl::StatusOr<std::unique_ptr<ChannelFactory>> channels = backends.make_channels();
  absl::StatusOr<std::unique_ptr<EventLoop>> loop = backends.make_loop();
  absl::Status status = scheduler.status();
  status.Update(channels.status());
  status.Update(loop.status());
  if (absl::IsUnavailable(status)) {
    GTEST_SKIP() << "backend unavailable on this machine: " << status;
  }
  ASSERT_TRUE(status.ok()) << "backend could not be created: " << status;
  scheduler_ = *std::move(scheduler);
  channels_ = *std::move(channels);
  loop_ = *std::move(loop);
  std::printf("[ backend  ] scheduler=%s channel=%s loop=%s\n", scheduler_->name().c_str(),
              channels_->name().c_str(), loop_->name().c_str());
  RecordProperty("backend", scheduler_->name() + " x " + channels_->name() + " x " + loop_->name());
}

absl::StatusOr<std::unique_ptr<Scheduler>> ConformanceTest::NewScheduler() const {
  return Registered().make_scheduler(GetParam());
}

absl::StatusOr<std::unique_ptr<EventLoop>> ConformanceTest::NewLoop() const {
  return Registered().make_loop();
}

void ConformanceTest::TearDown() {
  if (scheduler_ != nullptr) {
    EXPECT_TRUE(scheduler_->Shutdown().ok());
  }
}

bool ConformanceTest::PumpUntil(const std::function<bool()>& done) {
  const absl::Time give_up = absl::Now() + absl::Seconds(120);
  while (!done()) {
    if (absl::Now() > give_up) return false;
    absl::StatusOr<int> ran = loop_->RunOnce(absl::Milliseconds(50));
    if (!ran.ok()) {
      ADD_FAILURE() << "RunOnce failed: " << ran.status();
      return false;
    }
  }
  return true;
}

int RunConformanceSuite(int argc, char** argv, Backends backends) {
  Registered() = std::move(backends);
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}

}  // namespace taskrt::conformance
