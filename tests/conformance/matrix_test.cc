// The conformance matrix covers the registry: the generated targets' names
// (passed as arguments by tests/conformance/BUILD) are exactly the
// registered combinations, so a backend registered in backends/registry.cc
// but missing from backends/backends.bzl, or the other way round, fails.

#include <cstdio>
#include <set>
#include <string>

#include "backends/registry.h"
#include "gtest/gtest.h"

namespace {

std::set<std::string>& Generated() {
  static auto* names = new std::set<std::string>;
  return *names;
}

TEST(ConformanceMatrix, EveryRegisteredCombinationHasATarget) {
  std::set<std::string> registered;
  for (const taskrt::Combination& combination : taskrt::Combinations()) {
    registered.insert(combination.name());
    EXPECT_TRUE(Generated().count(combination.name()) > 0)
        << combination.name() << " is registered but has no conformance target: add its "
        << "backend to backends/backends.bzl";
  }
  for (const std::string& name : Generated()) {
    EXPECT_TRUE(registered.count(name) > 0)
        << name << " has a conformance target but is not a registered combination";
  }
  std::printf("[ matrix   ] %zu combinations registered, %zu targets generated\n",
              registered.size(), Generated().size());
  EXPECT_FALSE(registered.empty());
}

}  // namespace

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  for (int i = 1; i < argc; ++i) Generated().insert(argv[i]);
  return RUN_ALL_TESTS();
}
