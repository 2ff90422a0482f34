#include "platform/process/working_directory.h"

#include <cstdlib>

#include "gtest/gtest.h"

namespace taskrt {
namespace {

TEST(FromWorkingDirectoryTest, RelativePathsUnderBazelRunAreTheUsersDirectorys) {
  ASSERT_EQ(setenv("BUILD_WORKING_DIRECTORY", "/home/user/project", 1), 0);
  EXPECT_EQ(FromWorkingDirectory("results/report.json"), "/home/user/project/results/report.json");
  EXPECT_EQ(FromWorkingDirectory("/tmp/trace.json"), "/tmp/trace.json");
  EXPECT_EQ(FromWorkingDirectory(""), "");
}

TEST(FromWorkingDirectoryTest, OutsideBazelRunPathsAreUnchanged) {
  ASSERT_EQ(unsetenv("BUILD_WORKING_DIRECTORY"), 0);
  EXPECT_EQ(FromWorkingDirectory("results/report.json"), "results/report.json");
}

}  // namespace
}  // namespace taskrt
