// Runs Kore's example programs (kore_examples.c, compiled as C) on every
// scheduler x channel x loop combination of the backend registry.

#include <cstdio>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "backends/registry.h"
#include "gtest/gtest.h"
#include "kore/kore_examples.h"
#include "kore/kore_tasks.h"

namespace taskrt {
namespace {

// Kore's default number of task threads.
constexpr unsigned int kWorkers = 2;

class KoreExamples : public ::testing::TestWithParam<Combination> {
 protected:
  void SetUp() override {
    const Combination& c = GetParam();
    const std::string scheduler(c.scheduler->name);
    const std::string channel(c.channel->name);
    const std::string loop(c.loop->name);
    std::printf("[ backend  ] scheduler=%s channel=%s loop=%s workers=%u\n", scheduler.c_str(),
                channel.c_str(), loop.c_str(), kWorkers);
    if (kore_task_runtime_init(scheduler.c_str(), channel.c_str(), loop.c_str(), kWorkers) != 0) {
      const std::string error = kore_task_last_error();
      if (absl::StartsWith(error, "UNAVAILABLE")) {
        GTEST_SKIP() << "a backend is not available on this machine: " << error;
      }
      FAIL() << "kore_task_runtime_init: " << error;
    }
    initialised_ = true;
  }

  void TearDown() override {
    if (!initialised_) return;
    kore_task_runtime_shutdown();
    const char* error = kore_task_last_error();
    EXPECT_EQ(error, nullptr) << "kore_task_runtime_shutdown: " << error
                              << " (a scenario left a task behind)";
  }

 private:
  bool initialised_ = false;
};

TEST_P(KoreExamples, TasksExampleAnswersTwoHundredRequestsInFlight) {
  EXPECT_EQ(kore_example_tasks(200), 0);
}

TEST_P(KoreExamples, PipeTaskExampleDeliversEveryLineToAOneMessagePerCallCallback) {
  EXPECT_EQ(kore_example_pipe_task(/*lines=*/20000, /*burst=*/2000), 0);
}

TEST_P(KoreExamples, TaskStructsInUnzeroedMemory) {
  EXPECT_EQ(kore_example_unzeroed_structs(), 0);
}

INSTANTIATE_TEST_SUITE_P(
    AllBackends, KoreExamples, ::testing::ValuesIn(Combinations()),
    [](const ::testing::TestParamInfo<Combination>& info) { return info.param.name(); });

}  // namespace
}  // namespace taskrt
