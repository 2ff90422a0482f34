#include "tools/nats_worker/worker_flags.h"

#include <vector>

#include "gtest/gtest.h"

namespace taskrt::nats_worker {
namespace {

absl::StatusOr<WorkerFlags> Parse(std::vector<const char*> args, const char* env_url = nullptr) {
  return ParseWorkerFlags(args, env_url, /*cpus=*/6, "the_default_scheduler");
}

TEST(WorkerFlags, DefaultsComeFromTheEnvironmentAndTheMachine) {
  absl::StatusOr<WorkerFlags> flags = Parse({}, "nats://10.0.0.5:4222");
  ASSERT_TRUE(flags.ok()) << flags.status();
  EXPECT_EQ(flags->url, "nats://10.0.0.5:4222");
  EXPECT_EQ(flags->slots, 6);
  EXPECT_EQ(flags->scheduler, "the_default_scheduler");
  EXPECT_EQ(flags->ack_wait_ms, 30'000);
  EXPECT_FALSE(flags->help);
}

TEST(WorkerFlags, FlagsOverrideTheDefaults) {
  absl::StatusOr<WorkerFlags> flags =
      Parse({"--url=nats://h:1", "--slots=3", "--scheduler=a_chosen_scheduler",
             "--ack_wait_ms=1500"},
            "nats://10.0.0.5:4222");
  ASSERT_TRUE(flags.ok()) << flags.status();
  EXPECT_EQ(flags->url, "nats://h:1");
  EXPECT_EQ(flags->slots, 3);
  EXPECT_EQ(flags->scheduler, "a_chosen_scheduler");
  EXPECT_EQ(flags->ack_wait_ms, 1500);
}

TEST(WorkerFlags, NoBrokerIsAnErrorThatSaysHowToGiveOne) {
  for (const char* env : {static_cast<const char*>(nullptr), ""}) {
    absl::StatusOr<WorkerFlags> flags = Parse({"--slots=2"}, env);
    ASSERT_FALSE(flags.ok());
    EXPECT_EQ(flags.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(flags.status().message().find("TASKRT_NATS_URL"), absl::string_view::npos);
  }
}

TEST(WorkerFlags, HelpNeedsNoBroker) {
  absl::StatusOr<WorkerFlags> flags = Parse({"--help"});
  ASSERT_TRUE(flags.ok()) << flags.status();
  EXPECT_TRUE(flags->help);
}

TEST(WorkerFlags, BadFlagsAreRefusedByName) {
  for (const char* bad : {"--slots=0", "--slots=two", "--slots", "--ack_wait_ms=-1", "--url=",
                          "--colour=red", "stray"}) {
    absl::StatusOr<WorkerFlags> flags = Parse({bad}, "nats://h:1");
    ASSERT_FALSE(flags.ok()) << bad;
    EXPECT_EQ(flags.status().code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_NE(flags.status().message().find(bad), absl::string_view::npos) << flags.status();
  }
}

}  // namespace
}  // namespace taskrt::nats_worker
