#include "platform/process/child_process.h"

#include <signal.h>
#include <sys/wait.h>

#include <cstdlib>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>

#include "absl/status/status.h"
#include "gtest/gtest.h"

namespace taskrt {
namespace {

TEST(ChildProcessTest, WaitGivesTheExitStatus) {
  absl::StatusOr<std::unique_ptr<ChildProcess>> child =
      ChildProcess::Start({"/bin/sh", "-c", "exit 3"});
  ASSERT_TRUE(child.ok()) << child.status();
  const int status = (*child)->Wait();
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 3) << status;
  EXPECT_EQ((*child)->pid(), -1);
  EXPECT_EQ((*child)->Wait(), 0);  // already reaped
}

TEST(ChildProcessTest, TryWaitReapsOnlyAChildThatHasEnded) {
  absl::StatusOr<std::unique_ptr<ChildProcess>> running =
      ChildProcess::Start({"/bin/sh", "-c", "while :; do :; done"});
  ASSERT_TRUE(running.ok()) << running.status();
  EXPECT_EQ((*running)->TryWait(), std::nullopt);
  EXPECT_GT((*running)->pid(), 0);

  absl::StatusOr<std::unique_ptr<ChildProcess>> ended =
      ChildProcess::Start({"/bin/sh", "-c", "exit 4"});
  ASSERT_TRUE(ended.ok()) << ended.status();
  // Waits for the end without reaping, so that TryWait finds it ended.
  siginfo_t info{};
  ASSERT_EQ(waitid(P_PID, static_cast<id_t>((*ended)->pid()), &info, WEXITED | WNOWAIT), 0);
  const std::optional<int> status = (*ended)->TryWait();
  ASSERT_TRUE(status.has_value());
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 4) << *status;
  EXPECT_EQ((*ended)->pid(), -1);
}

TEST(ChildProcessTest, StopTerminatesAChildThatWouldRunOn) {
  absl::StatusOr<std::unique_ptr<ChildProcess>> child =
      ChildProcess::Start({"/bin/sh", "-c", "while :; do :; done"});
  ASSERT_TRUE(child.ok()) << child.status();
  const int status = (*child)->Stop();
  EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGTERM) << status;
}

TEST(ChildProcessTest, StandardErrorGoesToTheFileGiven) {
  const char* tmp = std::getenv("TEST_TMPDIR");
  const std::string path = std::string(tmp != nullptr ? tmp : "/tmp") + "/child_stderr.txt";
  absl::StatusOr<std::unique_ptr<ChildProcess>> child =
      ChildProcess::Start({"/bin/sh", "-c", "echo to-stderr >&2"}, path);
  ASSERT_TRUE(child.ok()) << child.status();
  EXPECT_EQ((*child)->Wait(), 0);
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  EXPECT_EQ(text.str(), "to-stderr\n");
}

TEST(ChildProcessTest, AProgramThatCannotRunExitsWith127) {
  absl::StatusOr<std::unique_ptr<ChildProcess>> child =
      ChildProcess::Start({"/nonexistent/program"});
  ASSERT_TRUE(child.ok()) << child.status();
  const int status = (*child)->Wait();
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 127) << status;
}

TEST(ChildProcessTest, NoProgramIsAnInvalidArgument) {
  EXPECT_EQ(ChildProcess::Start({}).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace taskrt
