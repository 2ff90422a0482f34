#include "tools/http_front/job_entry.h"

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "backends/registry.h"
#include "core/entry_registry.h"
#include "gtest/gtest.h"

namespace taskrt::http {
namespace {

TEST(JobDescription, RoundTrips) {
  for (const Job job : {Job{JobKind::kPrimes, 100000}, Job{JobKind::kHash, 0}}) {
    absl::StatusOr<Job> parsed = ParseJobDescription(JobDescription(job));
    ASSERT_TRUE(parsed.ok()) << parsed.status();
    EXPECT_EQ(parsed->kind, job.kind);
    EXPECT_EQ(parsed->size, job.size);
  }
  EXPECT_EQ(JobDescription({JobKind::kPrimes, 7}), "primes 7");
  EXPECT_EQ(JobDescription({JobKind::kHash, 2}), "hash 2");
}

TEST(JobDescription, AnythingElseIsRefusedAndQuoted) {
  for (const char* bad : {"", "primes", "primes x", "primes -1", "hash 1 2", "sort 5"}) {
    absl::StatusOr<Job> parsed = ParseJobDescription(bad);
    ASSERT_FALSE(parsed.ok()) << bad;
    EXPECT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(parsed.status().message().find(absl::StrCat("\"", bad, "\"")), absl::string_view::npos)
        << parsed.status();
  }
}

TEST(RegisterHttpFrontEntries, IsIdempotent) {
  ASSERT_TRUE(RegisterHttpFrontEntries().ok());
  EXPECT_TRUE(RegisterHttpFrontEntries().ok());
  EXPECT_TRUE(FindEntry(kJobEntryName).ok());
}

// The named entry run here, by its name, as a worker runs it.
class NamedJobEntry : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(RegisterHttpFrontEntries().ok());
    const DefaultBackends& defaults = Defaults();
    absl::StatusOr<Backends> made = NewBackends(defaults.scheduler, defaults.channel, defaults.loop, 2);
    ASSERT_TRUE(made.ok()) << made.status();
    backends_ = *std::move(made);
  }

  // Runs the entry with `description` as the owner's first message; its
  // messages and value.
  std::pair<std::vector<std::string>, int> Run(absl::string_view description) {
    absl::StatusOr<std::unique_ptr<Task>> task = Task::CreateNamed(kJobEntryName);
    EXPECT_TRUE(task.ok()) << task.status();
    if (!task.ok()) return {{}, -100};
    TaskEnvironment env{backends_.scheduler.get(), backends_.channels.get(), backends_.loop.get(), {}};
    EXPECT_TRUE((*task)->Run(env).ok());
    EXPECT_TRUE((*task)->Write(description).ok());
    std::vector<std::string> messages;
    char buffer[128];
    for (;;) {
      absl::StatusOr<size_t> got = (*task)->Read(absl::MakeSpan(buffer));
      if (!got.ok()) break;  // kOutOfRange: the entry returned and all is read
      messages.emplace_back(buffer, std::min(*got, sizeof buffer));
    }
    while (!(*task)->finished()) EXPECT_TRUE(backends_.loop->RunOnce(absl::Seconds(1)).ok());
    return {messages, *(*task)->result()};
  }

  Backends backends_;
};

TEST_F(NamedJobEntry, CountsPrimesWithProgressThenTheResult) {
  const auto [messages, result] = Run("primes 100000");
  EXPECT_EQ(result, 0);
  ASSERT_GE(messages.size(), 2u);
  EXPECT_EQ(messages.front().substr(0, 2), "p ");
  EXPECT_EQ(messages.back(), "r 9592");
}

TEST_F(NamedJobEntry, ABadDescriptionEndsTheEntryWithThree) {
  const auto [messages, result] = Run("primes many");
  EXPECT_EQ(result, 3);
  EXPECT_TRUE(messages.empty());
}

}  // namespace
}  // namespace taskrt::http
