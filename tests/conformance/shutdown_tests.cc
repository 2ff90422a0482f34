// Conformance group: shutdown torture. Schedulers shut down with work in
// flight, tasks destroyed at every point of their life, event loops
// destroyed and stopped with work pending. Each case repeats over seeded
// points; none may crash, lose accepted work, leak (asan) or race (tsan),
// and each bounds its own run (the hang guards of conformance.h).

#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <atomic>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/channel.h"
#include "core/task.h"
#include "gtest/gtest.h"
#include "tests/conformance/conformance.h"

namespace taskrt::conformance {
namespace {

using ShutdownConformance = ConformanceTest;

constexpr int kRepeats = 12;

// Shutdown() runs every unit it accepted and refuses the rest, while an
// outside thread keeps scheduling and units schedule children.
TEST_P(ShutdownConformance, ShutdownWithWorkInFlightRunsEveryAcceptedUnit) {
  std::mt19937 random(1234);
  for (int repeat = 0; repeat < kRepeats; ++repeat) {
    absl::StatusOr<std::unique_ptr<Scheduler>> scheduler = NewScheduler();
    ASSERT_TRUE(scheduler.ok()) << scheduler.status();
    std::atomic<int> accepted{0};
    std::atomic<int> ran{0};
    const int shutdown_after = static_cast<int>(random() % 400);
    std::thread producer([&] {
      while (true) {
        absl::Status status = (*scheduler)->Schedule([&, s = scheduler->get()] {
          ran.fetch_add(1);
          // A child: accepted or refused, never lost.
          if (s->Schedule([&] { ran.fetch_add(1); }).ok()) accepted.fetch_add(1);
        });
        if (!status.ok()) {
          EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition) << status;
          return;
        }
        accepted.fetch_add(1);
      }
    });
    while (accepted.load() < shutdown_after) std::this_thread::yield();
    ASSERT_TRUE((*scheduler)->Shutdown().ok());
    producer.join();
    EXPECT_EQ(ran.load(), accepted.load())
        << "repeat " << repeat << ": an accepted unit was lost or ran twice";
  }
}

// Tasks destroyed before Run, right after it, after a few messages, and
// from their own callback: every started entry returns (its writes or
// reads fail once the task is gone), and nothing is left (asan checks).
TEST_P(ShutdownConformance, TasksDestroyedAtEveryPointOfTheirLife) {
  constexpr int kTasks = 40;
  enum DestroyAt { kBeforeRun, kRightAfterRun, kAfterMessages, kInOwnCallback, kPoints };
  std::mt19937 random(99);
  auto entries_returned = std::make_shared<std::atomic<int>>(0);
  std::vector<std::unique_ptr<Task>> tasks;
  std::vector<DestroyAt> destroy_at;
  int started = 0;
  int to_destroy_in_callback = 0;
  int destroyed_in_callback = 0;
  TaskEnvironment env;
  env.scheduler = scheduler_.get();
  env.channels = channels_.get();
  env.loop = loop_.get();
  for (int i = 0; i < kTasks; ++i) {
    const bool writer = i % 2 == 0;
    absl::StatusOr<std::unique_ptr<Task>> task =
        Task::Create([entries_returned, writer](TaskContext& context) {
          if (writer) {
            const std::string message = "tick";
            while (context.Write(absl::MakeConstSpan(message)).ok()) {
            }
          } else {
            char buffer[16];
            while (context.Read(absl::MakeSpan(buffer)).ok()) {
            }
          }
          entries_returned->fetch_add(1);
          return 0;
        });
    ASSERT_TRUE(task.ok()) << task.status();
    auto point = static_cast<DestroyAt>(random() % kPoints);
    // A reader sends its owner nothing, so no callback would come.
    if (!writer && point == kInOwnCallback) point = kAfterMessages;
    tasks.push_back(*std::move(task));
    destroy_at.push_back(point);
    if (point == kBeforeRun) {
      tasks.back().reset();
      continue;
    }
    if (point == kInOwnCallback) {
      ++to_destroy_in_callback;
      ASSERT_TRUE(tasks.back()->BindCallback([&destroyed_in_callback](Task& self) {
        ++destroyed_in_callback;
        delete &self;  // allowed from its own callback (core/task.h)
      }).ok());
    }
    ASSERT_TRUE(tasks.back()->Run(env).ok());
    ++started;
    if (point == kRightAfterRun) tasks.back().reset();
    if (point == kInOwnCallback) tasks.back().release();  // the callback deletes it
  }
  // With one worker, entries run one at a time in the scheduler's order
  // (FIFO or LIFO), and each holds the worker until its task is destroyed.
  // So: readers first, which need nothing from their entry; then whichever
  // writer is writing gets read, three messages, and destroyed, freeing the
  // worker for the next; the callback group goes as its writes arrive.
  for (int i = 1; i < kTasks; i += 2) {
    if (destroy_at[i] != kAfterMessages) continue;
    const std::string message = "hello";
    ASSERT_TRUE(tasks[i]->Write(absl::MakeConstSpan(message)).ok());
    tasks[i].reset();
  }
  std::vector<int> received(kTasks, 0);
  ASSERT_TRUE(PumpUntil([&] {
    bool writers_done = true;
    for (int i = 0; i < kTasks; i += 2) {
      if (destroy_at[i] != kAfterMessages || tasks[i] == nullptr) continue;
      char buffer[16];
      if (tasks[i]->TryRead(absl::MakeSpan(buffer)).ok() && ++received[i] == 3) {
        tasks[i].reset();
      } else {
        writers_done = false;
      }
    }
    return writers_done && destroyed_in_callback == to_destroy_in_callback &&
           entries_returned->load() == started;
  })) << destroyed_in_callback << " of " << to_destroy_in_callback
      << " destroyed in their callbacks, " << entries_returned->load() << " of " << started
      << " entries returned";
}

// A loop destroyed with posted work and a ready watch it never ran frees
// every closure (the token's last owner is gone).
TEST_P(ShutdownConformance, LoopDestroyedWithWorkAndWatchesPendingFreesThem) {
  std::mt19937 random(7);
  for (int repeat = 0; repeat < kRepeats; ++repeat) {
    absl::StatusOr<std::unique_ptr<EventLoop>> loop = NewLoop();
    ASSERT_TRUE(loop.ok()) << loop.status();
    auto token = std::make_shared<int>(0);
    std::weak_ptr<int> watch_token = token;
    const int ready = eventfd(1, EFD_CLOEXEC | EFD_NONBLOCK);
    ASSERT_GE(ready, 0);
    ASSERT_TRUE((*loop)->Watch({ready, POLLIN}, [token] { ++*token; }).ok());
    for (int i = 0; i < 50; ++i) {
      ASSERT_TRUE((*loop)->Post([token] { ++*token; }).ok());
    }
    // Some repeats run part of it first.
    for (int i = static_cast<int>(random() % 3); i > 0; --i) {
      ASSERT_TRUE((*loop)->RunOnce(absl::ZeroDuration()).ok());
    }
    token.reset();
    loop->reset();
    EXPECT_TRUE(watch_token.expired()) << "repeat " << repeat << ": the loop kept a closure";
    close(ready);
  }
}

// Stop() while another thread runs the loop and work keeps being posted:
// Run() returns, and what did not run is freed with the loop.
TEST_P(ShutdownConformance, StopWithPostedWorkPendingReturnsAndFreesTheRest) {
  std::mt19937 random(11);
  for (int repeat = 0; repeat < kRepeats; ++repeat) {
    absl::StatusOr<std::unique_ptr<EventLoop>> loop = NewLoop();
    ASSERT_TRUE(loop.ok()) << loop.status();
    auto token = std::make_shared<std::atomic<int>>(0);
    std::weak_ptr<std::atomic<int>> weak = token;
    std::thread runner([&] { EXPECT_TRUE((*loop)->Run().ok()); });
    const int stop_after = static_cast<int>(random() % 200);
    int posted = 0;
    for (int i = 0; i < 200; ++i) {
      if (i == stop_after) (*loop)->Stop();
      if ((*loop)->Post([token] { token->fetch_add(1); }).ok()) ++posted;
    }
    (*loop)->Stop();
    runner.join();
    EXPECT_LE(token->load(), posted);
    token.reset();
    loop->reset();
    EXPECT_TRUE(weak.expired()) << "repeat " << repeat << ": the loop kept a closure";
  }
}

INSTANTIATE_TEST_SUITE_P(Conformance, ShutdownConformance, ::testing::ValuesIn(WorkerCounts()),
                         WorkerCountName);

}  // namespace
}  // namespace taskrt::conformance
