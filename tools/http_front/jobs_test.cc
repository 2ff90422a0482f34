#include "tools/http_front/jobs.h"

#include <cstdint>
#include <vector>

#include "gtest/gtest.h"

namespace taskrt::http {
namespace {

bool Always(uint64_t, uint64_t) { return true; }

TEST(CountPrimesBelow, MatchesKnownCounts) {
  // pi(x) for x = 0, 2, 3, 10, 100, 10^5 and 10^6 (+ one across a segment edge).
  EXPECT_EQ(CountPrimesBelow(0, Always), 0u);
  EXPECT_EQ(CountPrimesBelow(2, Always), 0u);
  EXPECT_EQ(CountPrimesBelow(3, Always), 1u);
  EXPECT_EQ(CountPrimesBelow(10, Always), 4u);
  EXPECT_EQ(CountPrimesBelow(100, Always), 25u);
  EXPECT_EQ(CountPrimesBelow(100'000, Always), 9592u);
  EXPECT_EQ(CountPrimesBelow(1'000'000, Always), 78498u);
  EXPECT_EQ(CountPrimesBelow(10'000'000, Always), 664579u);
}

TEST(CountPrimesBelow, ReportsEveryStepAndStopsWhenAsked) {
  std::vector<uint64_t> done;
  uint64_t last_total = 0;
  ASSERT_TRUE(CountPrimesBelow(1'000'000, [&](uint64_t d, uint64_t total) {
                done.push_back(d);
                last_total = total;
                return true;
              }).has_value());
  ASSERT_EQ(done.size(), last_total);
  for (size_t i = 0; i < done.size(); ++i) EXPECT_EQ(done[i], i + 1);

  int steps = 0;
  EXPECT_FALSE(CountPrimesBelow(1'000'000, [&](uint64_t, uint64_t) { return ++steps < 2; }).has_value());
  EXPECT_EQ(steps, 2);
}

TEST(HashMiB, IsFnv1aOfThePattern) {
  uint64_t expected = 14695981039346656037ull;
  for (uint64_t m = 0; m < 2; ++m) {
    for (uint64_t j = 0; j < (1u << 20); ++j) {
      expected ^= static_cast<unsigned char>(31 * j + m);
      expected *= 1099511628211ull;
    }
  }
  EXPECT_EQ(HashMiB(2, Always), expected);
  EXPECT_EQ(HashMiB(0, Always), 14695981039346656037ull);
  EXPECT_FALSE(HashMiB(3, [](uint64_t, uint64_t) { return false; }).has_value());
}

}  // namespace
}  // namespace taskrt::http
