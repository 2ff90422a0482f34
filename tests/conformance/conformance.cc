#include "tests/conformance/conformance.h"

#include <cstdio>
#include <cstring>
#include <string>
#include <vector>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/time.h"
#include "backends/registry.h"
#include "core/task_group.h"

namespace taskrt::conformance {
namespace {

Factories& Registered() {
  static Factories* backends = new Factories;
  return *backends;
}

}  // namespace

std::vector<size_t> WorkerCounts() { return Registered().worker_counts; }

std::string WorkerCountName(const ::testing::TestParamInfo<size_t>& info) {
  return "Workers" + std::to_string(info.param);
}

void ConformanceTest::SetUp() {
  const Factories& backends = Registered();
  ASSERT_TRUE(backends.make_scheduler && backends.make_loop)
      << "RunConformanceSuite was not given a scheduler and a loop factory";
  absl::StatusOr<std::unique_ptr<Scheduler>> scheduler = backends.make_scheduler(GetParam());
  absl::StatusOr<std::unique_ptr<ChannelFactory>> channels =
      backends.make_channels ? backends.make_channels() : std::unique_ptr<ChannelFactory>();
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
  const std::string channel =
      channels_ != nullptr ? channels_->name() : "(the scheduler's own)";
  std::printf("[ backend  ] scheduler=%s channel=%s loop=%s\n", scheduler_->name().c_str(),
              channel.c_str(), loop_->name().c_str());
  RecordProperty("backend", scheduler_->name() + " x " + channel + " x " + loop_->name());
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

int RunConformanceSuite(int argc, char** argv, Factories factories) {
  Registered() = std::move(factories);
  ::testing::InitGoogleTest(&argc, argv);
  const Factories& registered = Registered();
  if (!registered.excluded_suites.empty()) {
    std::string filter = GTEST_FLAG_GET(filter);
    filter += filter.find('-') == std::string::npos ? "-" : ":";
    filter += absl::StrJoin(registered.excluded_suites, ":");
    GTEST_FLAG_SET(filter, filter);
    std::printf("[ excluded ] %s: %s\n", absl::StrJoin(registered.excluded_suites, ", ").c_str(),
                registered.excluded_because.c_str());
  }
  return RUN_ALL_TESTS();
}

int RunConformanceSuiteFromFlags(int argc, char** argv) {
  std::string names[3];
  const char* const flags[3] = {"--scheduler=", "--channel=", "--event_loop="};
  std::vector<char*> rest;
  for (int i = 0; i < argc; ++i) {
    bool ours = false;
    for (int k = 0; k < 3; ++k) {
      if (i > 0 && absl::StartsWith(argv[i], flags[k])) {
        names[k] = argv[i] + std::strlen(flags[k]);
        ours = true;
      }
    }
    if (!ours) rest.push_back(argv[i]);
  }
  absl::StatusOr<const SchedulerDescriptor*> scheduler = FindScheduler(names[0]);
  absl::StatusOr<const ChannelDescriptor*> channel = FindChannel(names[1]);
  absl::StatusOr<const EventLoopDescriptor*> loop = FindLoop(names[2]);
  absl::Status found = scheduler.status();
  found.Update(channel.status());
  found.Update(loop.status());
  if (!found.ok()) {
    std::fprintf(stderr, "conformance: %s\n(give --scheduler=, --channel= and --event_loop=)\n",
                 found.ToString().c_str());
    return 2;
  }
  Factories factories;
  const SchedulerDescriptor* s = *scheduler;
  const ChannelDescriptor* c = *channel;
  const EventLoopDescriptor* l = *loop;
  factories.make_scheduler = [s](size_t workers) {
    return s->create(BackendOptions{.workers = static_cast<int>(workers)});
  };
  factories.make_channels = [c] { return c->create(BackendOptions{}); };
  factories.make_loop = [l] { return l->create(BackendOptions{}); };
  factories.worker_counts = s->capabilities.honours_worker_count ? std::vector<size_t>{1, 4}
                                                                 : std::vector<size_t>{1};
  if (!s->capabilities.single_thread_stackful_tasks) {
    factories.excluded_suites.push_back("Conformance/SplConformance.*");
    factories.excluded_because = absl::StrCat(
        "SPL's task module needs a scheduler with single-thread stackful tasks, which ", s->name,
        " does not have");
  }
  int rest_count = static_cast<int>(rest.size());
  rest.push_back(nullptr);
  return RunConformanceSuite(rest_count, rest.data(), std::move(factories));
}

int ForkingFib(Scheduler& scheduler, int n) {
  if (n < 2) return n;
  int a = 0;
  int b = 0;
  TaskGroup group(scheduler);
  EXPECT_TRUE(group.Spawn([&] { a = ForkingFib(scheduler, n - 1); }).ok());
  EXPECT_TRUE(group.Spawn([&] { b = ForkingFib(scheduler, n - 2); }).ok());
  group.Wait();
  return a + b;
}

}  // namespace taskrt::conformance
