#include "core/timer_wheel.h"

#include <algorithm>
#include <cstdint>
#include <deque>
#include <map>
#include <random>
#include <utility>
#include <vector>

#include "gtest/gtest.h"

namespace taskrt {
namespace {

struct TestNode : TimerWheel::Node {
  int id = 0;
};

// Advances `wheel` to `now` and returns the ids fired, in order.
std::vector<int> AdvanceTo(TimerWheel& wheel, uint64_t now) {
  std::vector<int> fired;
  wheel.Advance(now, [&](TimerWheel::Node* node) {
    EXPECT_FALSE(node->linked());
    EXPECT_LE(node->deadline, now) << "fired before its deadline";
    fired.push_back(static_cast<TestNode*>(node)->id);
  });
  return fired;
}

TEST(TimerWheelTest, EmptyWheelHasNoDeadlineAndFiresNothing) {
  TimerWheel wheel(1000);
  EXPECT_FALSE(wheel.NextDeadline().has_value());
  EXPECT_TRUE(AdvanceTo(wheel, 1'000'000).empty());
  EXPECT_EQ(wheel.elapsed(), 1'000'000u);
}

TEST(TimerWheelTest, DifferentDeadlinesFireInDeadlineOrder) {
  TimerWheel wheel;
  std::vector<TestNode> nodes(5);
  const uint64_t deadlines[] = {500, 20, 7'000'000, 64, 63};
  for (int i = 0; i < 5; ++i) {
    nodes[i].id = i;
    wheel.Insert(&nodes[i], deadlines[i]);
  }
  EXPECT_EQ(wheel.size(), 5u);
  EXPECT_EQ(AdvanceTo(wheel, 10'000'000), (std::vector<int>{1, 4, 3, 0, 2}));
  EXPECT_TRUE(wheel.empty());
}

TEST(TimerWheelTest, EqualDeadlinesFireInInsertionOrder) {
  TimerWheel wheel;
  std::vector<TestNode> nodes(100);
  for (int i = 0; i < 100; ++i) {
    nodes[i].id = i;
    wheel.Insert(&nodes[i], 123'456'789);  // high level: moved down several times
  }
  std::vector<int> expected;
  for (int i = 0; i < 100; ++i) expected.push_back(i);
  EXPECT_EQ(AdvanceTo(wheel, 123'456'788), std::vector<int>{});
  EXPECT_EQ(AdvanceTo(wheel, 123'456'789), expected);
}

TEST(TimerWheelTest, EqualDeadlinesArmedAcrossAdvancesKeepInsertionOrder) {
  TimerWheel wheel;
  std::vector<TestNode> nodes(4);
  for (int i = 0; i < 4; ++i) nodes[i].id = i;
  const uint64_t deadline = 5'000'000;
  wheel.Insert(&nodes[0], deadline);
  EXPECT_TRUE(AdvanceTo(wheel, 4'000'000).empty());  // node 0 moved down
  wheel.Insert(&nodes[1], deadline);
  EXPECT_TRUE(AdvanceTo(wheel, 4'999'990).empty());
  wheel.Insert(&nodes[2], deadline);
  wheel.Insert(&nodes[3], deadline - 1);
  EXPECT_EQ(AdvanceTo(wheel, deadline), (std::vector<int>{3, 0, 1, 2}));
}

TEST(TimerWheelTest, DeadlinesOneNanosecondApartArmedInReverseOrder) {
  TimerWheel wheel;
  constexpr int kCount = 300;  // spans several level-0 and level-1 slots
  std::vector<TestNode> nodes(kCount);
  const uint64_t base = 1'000'000'007;
  for (int i = kCount - 1; i >= 0; --i) {
    nodes[i].id = i;
    wheel.Insert(&nodes[i], base + static_cast<uint64_t>(i));
  }
  std::vector<int> fired;
  // Step one nanosecond at a time through part of it: one node per step.
  for (uint64_t now = base; now < base + 70; ++now) {
    std::vector<int> step = AdvanceTo(wheel, now);
    ASSERT_EQ(step.size(), 1u) << "at " << now;
    fired.push_back(step[0]);
  }
  for (int id : AdvanceTo(wheel, base + kCount)) fired.push_back(id);
  ASSERT_EQ(fired.size(), static_cast<size_t>(kCount));
  for (int i = 0; i < kCount; ++i) EXPECT_EQ(fired[i], i);
}

TEST(TimerWheelTest, RemovedNodesDoNotFire) {
  TimerWheel wheel;
  std::vector<TestNode> nodes(4);
  for (int i = 0; i < 4; ++i) {
    nodes[i].id = i;
    wheel.Insert(&nodes[i], 1000 + static_cast<uint64_t>(i) * 1000);
  }
  wheel.Remove(&nodes[1]);
  wheel.Remove(&nodes[3]);
  wheel.Remove(&nodes[3]);  // not inserted any more: nothing happens
  EXPECT_FALSE(nodes[1].linked());
  EXPECT_EQ(wheel.size(), 2u);
  EXPECT_EQ(AdvanceTo(wheel, 10'000), (std::vector<int>{0, 2}));
}

TEST(TimerWheelTest, RemovingTheLastNodeOfASlotClearsItsDeadline) {
  TimerWheel wheel;
  TestNode near, far;
  wheel.Insert(&near, 100);
  wheel.Insert(&far, 1'000'000);
  wheel.Remove(&near);
  const std::optional<uint64_t> next = wheel.NextDeadline();
  ASSERT_TRUE(next.has_value());
  EXPECT_GT(*next, 100u);
  EXPECT_LE(*next, 1'000'000u);
}

TEST(TimerWheelTest, NextDeadlineIsNeverLateAndAdvancingToItConverges) {
  TimerWheel wheel(17);
  TestNode node;
  node.id = 7;
  const uint64_t deadline = 987'654'321'012;
  wheel.Insert(&node, deadline);
  int visits = 0;
  std::vector<int> fired;
  while (fired.empty()) {
    const std::optional<uint64_t> next = wheel.NextDeadline();
    ASSERT_TRUE(next.has_value());
    ASSERT_LE(*next, deadline);
    fired = AdvanceTo(wheel, *next);
    ASSERT_LE(++visits, TimerWheel::kLevels);
  }
  EXPECT_EQ(fired, std::vector<int>{7});
  EXPECT_EQ(wheel.elapsed(), deadline);
}

TEST(TimerWheelTest, FarFutureDeadlines) {
  TimerWheel wheel(5);
  std::vector<TestNode> nodes(3);
  const uint64_t deadlines[] = {UINT64_MAX, uint64_t{1} << 63, (uint64_t{1} << 62) + 3};
  for (int i = 0; i < 3; ++i) {
    nodes[i].id = i;
    wheel.Insert(&nodes[i], deadlines[i]);
  }
  EXPECT_TRUE(AdvanceTo(wheel, uint64_t{1} << 62).empty());
  EXPECT_EQ(AdvanceTo(wheel, (uint64_t{1} << 62) + 3), std::vector<int>{2});
  EXPECT_EQ(AdvanceTo(wheel, UINT64_MAX), (std::vector<int>{1, 0}));
}

TEST(TimerWheelTest, PastDeadlinesFireAtTheNextAdvanceInDeadlineOrder) {
  TimerWheel wheel;
  EXPECT_TRUE(AdvanceTo(wheel, 1'000'000).empty());
  std::vector<TestNode> nodes(5);
  const uint64_t deadlines[] = {500, 10, 999'999, 10, 1'000'000};
  for (int i = 0; i < 5; ++i) {
    nodes[i].id = i;
    wheel.Insert(&nodes[i], deadlines[i]);
  }
  EXPECT_EQ(wheel.NextDeadline().value_or(0), 10u);
  // An Advance to a time behind the wheel's counts as its own time.
  std::vector<int> fired;
  wheel.Advance(0, [&](TimerWheel::Node* node) { fired.push_back(static_cast<TestNode*>(node)->id); });
  EXPECT_EQ(fired, (std::vector<int>{1, 3, 0, 2, 4}));
  EXPECT_EQ(wheel.elapsed(), 1'000'000u);
}

TEST(TimerWheelTest, NodesInsertedWhileAdvancingWaitForTheNextAdvance) {
  TimerWheel wheel;
  std::deque<TestNode> nodes(3);
  nodes[0].id = 0;
  wheel.Insert(&nodes[0], 10);
  nodes[1].id = 1;
  wheel.Insert(&nodes[1], 30);
  std::vector<int> fired;
  wheel.Advance(100, [&](TimerWheel::Node* node) {
    const int id = static_cast<TestNode*>(node)->id;
    fired.push_back(id);
    if (id == 0) {
      nodes[2].id = 2;
      wheel.Insert(&nodes[2], 20);  // already due, and before node 1
    }
  });
  // Node 1 may not overtake node 2, so the first Advance stopped at node 2.
  EXPECT_EQ(fired, std::vector<int>{0});
  EXPECT_EQ(AdvanceTo(wheel, 100), (std::vector<int>{2, 1}));
}

TEST(TimerWheelTest, ReinsertingTheFiredNodeFromTheCallback) {
  TimerWheel wheel;
  TestNode node;
  int fires = 0;
  wheel.Insert(&node, 5);
  for (uint64_t now = 5; now <= 50; now += 5) {
    wheel.Advance(now, [&](TimerWheel::Node* fired) {
      ++fires;
      wheel.Insert(fired, fired->deadline + 5);
    });
  }
  EXPECT_EQ(fires, 10);
  EXPECT_EQ(wheel.size(), 1u);
}

TEST(TimerWheelTest, RemovingANodeDueInTheSameAdvanceFromTheCallback) {
  TimerWheel wheel;
  std::vector<TestNode> nodes(3);
  for (int i = 0; i < 3; ++i) {
    nodes[i].id = i;
    wheel.Insert(&nodes[i], 40);
  }
  std::vector<int> fired;
  wheel.Advance(40, [&](TimerWheel::Node* node) {
    fired.push_back(static_cast<TestNode*>(node)->id);
    wheel.Remove(&nodes[1]);
  });
  EXPECT_EQ(fired, (std::vector<int>{0, 2}));
}

// Random inserts, removes and advances against a std::multimap keyed by
// (deadline), whose equal keys keep insertion order.
TEST(TimerWheelTest, MatchesAReferenceModel) {
  std::mt19937_64 random(20261206);
  constexpr int kNodes = 2000;
  std::vector<TestNode> nodes(kNodes);
  std::vector<std::multimap<uint64_t, int>::iterator> where(kNodes);
  std::multimap<uint64_t, int> model;
  TimerWheel wheel(1'000'000);
  uint64_t now = 1'000'000;
  for (int i = 0; i < kNodes; ++i) nodes[i].id = i;
  for (int round = 0; round < 200'000; ++round) {
    const int op = static_cast<int>(random() % 10);
    const int i = static_cast<int>(random() % kNodes);
    if (op < 5) {
      if (nodes[i].linked()) continue;
      uint64_t deadline;
      switch (random() % 4) {
        case 0: deadline = now + random() % 64; break;                 // level 0
        case 1: deadline = now + random() % 100'000; break;            // a few levels up
        case 2: deadline = now + (random() % 8) * 1000; break;         // many equal
        default: deadline = now - std::min<uint64_t>(now, random() % 5000); break;  // past
      }
      wheel.Insert(&nodes[i], deadline);
      where[i] = model.emplace(deadline, i);
    } else if (op < 7) {
      if (!nodes[i].linked()) continue;
      wheel.Remove(&nodes[i]);
      model.erase(where[i]);
    } else {
      const uint64_t step = random() % 3 == 0 ? random() % 200'000 : random() % 300;
      now += step;
      std::vector<int> expected;
      while (!model.empty() && model.begin()->first <= now) {
        expected.push_back(model.begin()->second);
        model.erase(model.begin());
      }
      ASSERT_EQ(AdvanceTo(wheel, now), expected) << "round " << round;
      ASSERT_EQ(wheel.size(), model.size());
      if (!model.empty()) {
        const std::optional<uint64_t> next = wheel.NextDeadline();
        ASSERT_TRUE(next.has_value());
        ASSERT_LE(*next, model.begin()->first);
      }
    }
  }
}

}  // namespace
}  // namespace taskrt
