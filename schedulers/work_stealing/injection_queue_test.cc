#include "schedulers/work_stealing/injection_queue.h"

#include <atomic>
#include <memory>
#include <thread>
#include <vector>

#include "core/scheduler.h"
#include "gtest/gtest.h"

namespace taskrt::work_stealing_internal {
namespace {

// A job that only records its id; the tests never run it.
class NumberedJob final : public Job {
 public:
  explicit NumberedJob(int id) : id(id) {}
  void RunAndDelete() override { delete this; }
  const int id;
};

int IdOf(Job* job) { return static_cast<NumberedJob*>(job)->id; }

std::vector<std::unique_ptr<NumberedJob>> MakeJobs(int n) {
  std::vector<std::unique_ptr<NumberedJob>> jobs;
  for (int i = 0; i < n; ++i) jobs.push_back(std::make_unique<NumberedJob>(i));
  return jobs;
}

// On the heap: the queue is over-aligned, and AddressSanitizer's fake
// stack frames (detect_stack_use_after_return) do not honour that.
std::unique_ptr<InjectionQueue> NewQueue() { return std::make_unique<InjectionQueue>(); }

auto Refuse() {
  return [](Job*) { return false; };
}

TEST(InjectionQueueTest, EmptyQueueGivesNothing) {
  auto owned = NewQueue();
  InjectionQueue& queue = *owned;
  EXPECT_FALSE(queue.LooksNonEmpty());
  EXPECT_EQ(queue.TryTake(1, 8, Refuse()), nullptr);
  EXPECT_EQ(queue.Take(1, 8, Refuse()), nullptr);
}

TEST(InjectionQueueTest, OneProducersJobsComeOutOldestFirst) {
  auto owned = NewQueue();
  InjectionQueue& queue = *owned;
  auto jobs = MakeJobs(10);
  for (auto& job : jobs) {
    ASSERT_TRUE(queue.Push(job.get()));
  }
  EXPECT_TRUE(queue.LooksNonEmpty());
  std::vector<int> order;
  while (Job* job = queue.TryTake(1, 1, Refuse())) order.push_back(IdOf(job));
  ASSERT_EQ(order.size(), 10u);
  for (int i = 0; i < 10; ++i) {
    EXPECT_EQ(order[i], i);
  }
  EXPECT_FALSE(queue.LooksNonEmpty());
}

TEST(InjectionQueueTest, PushesAfterATakeQueueBehindTheOlderJobs) {
  auto owned = NewQueue();
  InjectionQueue& queue = *owned;
  auto jobs = MakeJobs(6);
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(queue.Push(jobs[i].get()));
  ASSERT_EQ(IdOf(queue.Take(1, 1, Refuse())), 0);  // 1 and 2 move to the private list
  for (int i = 3; i < 6; ++i) ASSERT_TRUE(queue.Push(jobs[i].get()));
  for (int expected = 1; expected < 6; ++expected) {
    Job* job = queue.Take(1, 1, Refuse());
    ASSERT_NE(job, nullptr);
    EXPECT_EQ(IdOf(job), expected);
  }
  EXPECT_EQ(queue.Take(1, 1, Refuse()), nullptr);
}

TEST(InjectionQueueTest, TakesAShareAndSpillsAllButTheFirst) {
  auto owned = NewQueue();
  InjectionQueue& queue = *owned;
  auto jobs = MakeJobs(9);
  for (auto& job : jobs) ASSERT_TRUE(queue.Push(job.get()));
  std::vector<int> spilled;
  auto spill = [&](Job* job) {
    spilled.push_back(IdOf(job));
    return true;
  };
  // 9 queued, 3 consumers: 9 / 3 + 1 = 4 jobs, the first returned.
  Job* first = queue.Take(3, 100, spill);
  ASSERT_NE(first, nullptr);
  EXPECT_EQ(IdOf(first), 0);
  EXPECT_EQ(spilled, (std::vector<int>{1, 2, 3}));
  // The cap wins over the share.
  spilled.clear();
  EXPECT_EQ(IdOf(queue.Take(1, 2, spill)), 4);
  EXPECT_EQ(spilled, (std::vector<int>{5}));
}

TEST(InjectionQueueTest, AJobTheSpillRefusesStaysQueuedInOrder) {
  auto owned = NewQueue();
  InjectionQueue& queue = *owned;
  auto jobs = MakeJobs(5);
  for (auto& job : jobs) ASSERT_TRUE(queue.Push(job.get()));
  int room = 1;
  auto spill = [&](Job*) { return room-- > 0; };
  EXPECT_EQ(IdOf(queue.Take(1, 5, spill)), 0);  // 1 spilled, 2 refused
  EXPECT_TRUE(queue.LooksNonEmpty());
  for (int expected = 2; expected < 5; ++expected) {
    Job* job = queue.Take(1, 1, Refuse());
    ASSERT_NE(job, nullptr);
    EXPECT_EQ(IdOf(job), expected);
  }
  EXPECT_FALSE(queue.LooksNonEmpty());
}

TEST(InjectionQueueTest, CloseRefusesPushesButKeepsQueuedJobs) {
  auto owned = NewQueue();
  InjectionQueue& queue = *owned;
  auto jobs = MakeJobs(3);
  ASSERT_TRUE(queue.Push(jobs[0].get()));
  ASSERT_TRUE(queue.Push(jobs[1].get()));
  queue.Close();
  EXPECT_FALSE(queue.Push(jobs[2].get()));
  EXPECT_TRUE(queue.LooksNonEmpty());
  EXPECT_EQ(IdOf(queue.Take(1, 1, Refuse())), 0);
  EXPECT_EQ(IdOf(queue.Take(1, 1, Refuse())), 1);
  EXPECT_EQ(queue.Take(1, 1, Refuse()), nullptr);
  EXPECT_FALSE(queue.LooksNonEmpty());
  EXPECT_FALSE(queue.Push(jobs[2].get())) << "stays closed after a take";
}

// Producers race consumers and a Close: every accepted job is taken exactly
// once, and a consumer that saw the close and then an empty queue has missed
// nothing.
TEST(InjectionQueueTest, ConcurrentPushTakeAndCloseLoseNothing) {
  constexpr int kProducers = 3;
  constexpr int kConsumers = 2;
  constexpr int kJobsEach = 20000;
  for (int round = 0; round < 5; ++round) {
    auto owned = NewQueue();
    InjectionQueue& queue = *owned;
    auto jobs = MakeJobs(kProducers * kJobsEach);  // producer p owns [p * kJobsEach, ...)
    std::vector<std::atomic<int>> taken(jobs.size());
    std::atomic<int> accepted{0};
    std::atomic<bool> closed{false};
    std::atomic<int> producers_started{0};

    std::vector<std::thread> threads;
    for (int p = 0; p < kProducers; ++p) {
      threads.emplace_back([&, p] {
        producers_started.fetch_add(1);
        for (int i = p * kJobsEach; i < (p + 1) * kJobsEach; ++i) {
          if (!queue.Push(jobs[i].get())) break;
          accepted.fetch_add(1, std::memory_order_relaxed);
        }
      });
    }
    for (int c = 0; c < kConsumers; ++c) {
      threads.emplace_back([&] {
        std::vector<Job*> batch;
        auto spill = [&](Job* job) {
          batch.push_back(job);
          return true;
        };
        while (true) {
          // Read before taking: once closed, an empty take means drained.
          const bool was_closed = closed.load();
          Job* job = was_closed ? queue.Take(4, 64, spill) : queue.TryTake(4, 64, spill);
          if (job != nullptr) batch.push_back(job);
          for (Job* j : batch) taken[IdOf(j)].fetch_add(1, std::memory_order_relaxed);
          batch.clear();
          if (job == nullptr) {
            if (was_closed) break;
            std::this_thread::yield();
          }
        }
      });
    }
    while (producers_started.load() < kProducers) std::this_thread::yield();
    queue.Close();
    closed.store(true);
    for (auto& thread : threads) thread.join();

    int total = 0;
    for (auto& count : taken) {
      ASSERT_LE(count.load(), 1) << "a job was taken twice";
      total += count.load();
    }
    EXPECT_EQ(total, accepted.load()) << "round " << round;
  }
}

}  // namespace
}  // namespace taskrt::work_stealing_internal
