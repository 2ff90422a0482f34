// Task on a scheduler that runs entries "in another process": a fake whose
// StartNamedEntry runs the named entry on a thread of its own with
// RunEntryOn, on the task end of a real channel pair, as a worker process
// would; the owner sees only the RemoteOwnerEnd it returns. Also the entry
// registry's errors, and RunEntryOn and attempt() on their own.

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "backends/registry.h"
#include "core/entry_registry.h"
#include "core/remote_entry.h"
#include "core/scheduler.h"
#include "core/task.h"
#include "gtest/gtest.h"

namespace taskrt {
namespace {

using ::testing::TestWithParam;

// The owner's end: the pair's owner end, plus the entry's result once the
// thread running it is done. The thread stores the result before it closes
// the task end, so the close that wakes the owner's loop comes after it.
class FakeRemoteEnd final : public RemoteOwnerEnd {
 public:
  struct Run {
    std::atomic<bool> done{false};
    int result = 0;  // written before `done` is released
    std::atomic<bool> cancel{false};
  };

  FakeRemoteEnd(std::unique_ptr<ChannelEnd> inner, std::shared_ptr<Run> run)
      : inner_(std::move(inner)), run_(std::move(run)) {}

  std::optional<int> EntryResult() override {
    if (!run_->done.load(std::memory_order_acquire) || inner_->MessagesMayBeInFlight()) {
      return std::nullopt;
    }
    return run_->result;
  }

  ChannelMetrics metrics() const override { return inner_->metrics(); }
  absl::Status TrySend(absl::Span<const char> message) override { return inner_->TrySend(message); }
  absl::Status TryFlush() override { return inner_->TryFlush(); }
  absl::StatusOr<size_t> TryReceive(absl::Span<char> out) override {
    return inner_->TryReceive(out);
  }
  Readiness send_readiness() const override { return inner_->send_readiness(); }
  Readiness receive_readiness() const override { return inner_->receive_readiness(); }
  Readiness AcquireReadiness(ChannelDirection direction) override {
    return inner_->AcquireReadiness(direction);
  }
  void ReleaseReadiness(ChannelDirection direction) override { inner_->ReleaseReadiness(direction); }
  absl::Status WaitUntilReady(ChannelDirection direction, absl::Time deadline) override {
    return inner_->WaitUntilReady(direction, deadline);
  }
  bool ReceiveReady() override { return inner_->ReceiveReady(); }
  bool MessagesMayBeInFlight() override { return inner_->MessagesMayBeInFlight(); }
  // A worker learns of the owner's close through the broker: here, at once.
  void Close() override {
    run_->cancel.store(true, std::memory_order_release);
    inner_->Close();
  }
  size_t max_message_size() const override { return inner_->max_message_size(); }
  void RequestCancel() override { run_->cancel.store(true, std::memory_order_release); }

 private:
  const std::unique_ptr<ChannelEnd> inner_;
  const std::shared_ptr<Run> run_;
};

// Runs every named entry on a thread of its own, as if in a worker process,
// with the attempt number it was given. Schedule() is refused: a closure
// cannot leave the process.
class FakeRemoteScheduler final : public Scheduler {
 public:
  FakeRemoteScheduler(ChannelFactory* channels, int attempt)
      : channels_(channels), attempt_(attempt) {}
  ~FakeRemoteScheduler() override { JoinAll(); }

  absl::StatusOr<std::unique_ptr<RemoteOwnerEnd>> StartNamedEntry(
      absl::string_view entry_name, const ChannelOptions& options) override {
    started_.push_back(std::string(entry_name));
    absl::StatusOr<RegisteredEntry> entry = FindEntry(entry_name);
    if (!entry.ok()) return entry.status();
    absl::StatusOr<ChannelPair> pair = channels_->CreatePair(options);
    if (!pair.ok()) return pair.status();
    auto run = std::make_shared<FakeRemoteEnd::Run>();
    std::unique_ptr<ChannelEnd> task_end = std::move(pair->task_end);
    threads_.emplace_back([entry = *std::move(entry), task_end = std::move(task_end), run,
                           attempt = attempt_] {
      run->result = RunEntryOn(entry, *task_end, attempt, &run->cancel);
      run->done.store(true, std::memory_order_release);
      task_end->Close();
    });
    return std::make_unique<FakeRemoteEnd>(std::move(pair->owner_end), std::move(run));
  }

  void JoinAll() {
    for (std::thread& thread : threads_) thread.join();
    threads_.clear();
  }

  const std::vector<std::string>& started() const { return started_; }

  SchedulerMetrics metrics() const override { return {}; }
  absl::Status Schedule(Work) override {
    return absl::FailedPreconditionError("FakeRemoteScheduler runs named entries only");
  }
  absl::Status Shutdown() override {
    JoinAll();
    return absl::OkStatus();
  }
  bool IsCurrentThreadOwned() const override { return false; }
  size_t concurrency() const override { return 1; }
  std::string name() const override { return "fake_remote"; }
  SchedulerCapabilities capabilities() const override {
    return {.runs_named_entries_elsewhere = true};
  }

 private:
  ChannelFactory* const channels_;
  const int attempt_;
  std::vector<std::thread> threads_;  // the test's thread alone
  std::vector<std::string> started_;
};

// Registered once per process: the registry has no unregister.
void RegisterTestEntries() {
  static const bool registered = [] {
    absl::Status status = RegisterEntry("test.three_messages", [](TaskContext& context) {
      for (const char* message : {"one", "two", "three"}) {
        if (!context.Write(absl::string_view(message)).ok()) return -1;
      }
      return 7;
    });
    EXPECT_TRUE(status.ok()) << status;
    status = RegisterEntry("test.echo_attempt", [](TaskContext& context) {
      char buffer[16];
      absl::StatusOr<size_t> got = context.Read(absl::MakeSpan(buffer));
      if (!got.ok() || *got > sizeof(buffer)) return -1;
      const std::string reply =
          absl::StrCat(absl::string_view(buffer, *got), ":", context.attempt());
      if (!context.Write(reply).ok()) return -2;
      return context.attempt();
    });
    EXPECT_TRUE(status.ok()) << status;
    status = RegisterEntry("test.until_cancelled", [](TaskContext& context) {
      // Writes until the owner is gone; the write fails once its end closed.
      while (!context.cancel_requested()) {
        if (!context.Write(absl::string_view("tick")).ok()) break;
      }
      return context.cancel_requested() ? 1 : 0;
    });
    EXPECT_TRUE(status.ok()) << status;
    return true;
  }();
  (void)registered;
}

class TaskRemoteTest : public TestWithParam<int> {
 protected:
  void SetUp() override {
    RegisterTestEntries();
    const DefaultBackends& defaults = Defaults();
    absl::StatusOr<std::unique_ptr<ChannelFactory>> channels =
        NewChannelFactoryNamed(defaults.channel);
    ASSERT_TRUE(channels.ok()) << channels.status();
    channels_ = *std::move(channels);
    absl::StatusOr<std::unique_ptr<EventLoop>> loop = NewLoopNamed(defaults.loop);
    ASSERT_TRUE(loop.ok()) << loop.status();
    loop_ = *std::move(loop);
    scheduler_ = std::make_unique<FakeRemoteScheduler>(channels_.get(), GetParam());
    std::printf("remote entries over %s, loop %s, attempt %d\n", channels_->name().c_str(),
                loop_->name().c_str(), GetParam());
  }

  void TearDown() override { scheduler_->JoinAll(); }

  TaskEnvironment Environment() {
    TaskEnvironment env;
    env.scheduler = scheduler_.get();
    env.loop = loop_.get();  // no channel factory: the scheduler makes the channel
    return env;
  }

  void RunLoopUntilFinished(Task& task) {
    while (!task.finished()) {
      absl::StatusOr<int> ran = loop_->RunOnce(absl::InfiniteDuration());
      ASSERT_TRUE(ran.ok()) << ran.status();
    }
  }

  std::unique_ptr<ChannelFactory> channels_;
  std::unique_ptr<EventLoop> loop_;
  std::unique_ptr<FakeRemoteScheduler> scheduler_;
};

TEST_P(TaskRemoteTest, MessagesFinalCallAndResult) {
  absl::StatusOr<std::unique_ptr<Task>> task = Task::CreateNamed("test.three_messages");
  ASSERT_TRUE(task.ok()) << task.status();
  EXPECT_EQ((*task)->entry_name(), "test.three_messages");
  std::vector<std::string> received;
  int calls = 0;
  int final_calls = 0;
  bool called_after_final = false;
  ASSERT_TRUE((*task)
                  ->BindCallback([&](Task& t) {
                    ++calls;
                    if (final_calls > 0) called_after_final = true;
                    char buffer[16];
                    // One message per call: the rest must come in later calls.
                    absl::StatusOr<size_t> got = t.TryRead(absl::MakeSpan(buffer));
                    if (got.ok()) received.emplace_back(buffer, *got);
                    if (t.finished()) {
                      ++final_calls;
                      while ((got = t.TryRead(absl::MakeSpan(buffer))).ok()) {
                        received.emplace_back(buffer, *got);
                      }
                    }
                  })
                  .ok());
  ASSERT_TRUE((*task)->Run(Environment()).ok());
  EXPECT_EQ((*task)->state(), TaskState::kRunning);
  RunLoopUntilFinished(**task);
  // Every call the loop still has posted runs in one more round.
  ASSERT_TRUE(loop_->RunOnce(absl::ZeroDuration()).ok());
  EXPECT_EQ(received, (std::vector<std::string>{"one", "two", "three"}));
  EXPECT_EQ(final_calls, 1);
  EXPECT_FALSE(called_after_final);
  EXPECT_GE(calls, 1);
  absl::StatusOr<int> result = (*task)->result();
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(*result, 7);
  EXPECT_EQ(scheduler_->started(), std::vector<std::string>{"test.three_messages"});
}

TEST_P(TaskRemoteTest, OwnerWritesAndTheEntrySeesItsAttempt) {
  absl::StatusOr<std::unique_ptr<Task>> task = Task::CreateNamed("test.echo_attempt");
  ASSERT_TRUE(task.ok()) << task.status();
  ASSERT_TRUE((*task)->Run(Environment()).ok());
  ASSERT_TRUE((*task)->Write(absl::string_view("hello")).ok());
  // The owner's blocking read, as a Kore owner may do outside the loop.
  char buffer[32];
  absl::StatusOr<size_t> got = (*task)->Read(absl::MakeSpan(buffer));
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(absl::string_view(buffer, *got), absl::StrCat("hello:", GetParam()));
  EXPECT_FALSE((*task)->result().ok());  // never early
  RunLoopUntilFinished(**task);
  absl::StatusOr<int> result = (*task)->result();
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(*result, GetParam());
}

TEST_P(TaskRemoteTest, DestroyingARunningTaskCancelsItsEntry) {
  absl::StatusOr<std::unique_ptr<Task>> task = Task::CreateNamed("test.until_cancelled");
  ASSERT_TRUE(task.ok()) << task.status();
  ASSERT_TRUE((*task)->Run(Environment()).ok());
  char buffer[8];
  absl::StatusOr<size_t> got = (*task)->Read(absl::MakeSpan(buffer));  // it runs
  ASSERT_TRUE(got.ok()) << got.status();
  task->reset();
  scheduler_->JoinAll();  // returns only because the entry saw the close
}

TEST_P(TaskRemoteTest, RequestCancelReachesTheEntryThroughTheScheduler) {
  absl::StatusOr<std::unique_ptr<Task>> task = Task::CreateNamed("test.until_cancelled");
  ASSERT_TRUE(task.ok()) << task.status();
  ASSERT_TRUE((*task)
                  ->BindCallback([](Task& t) {
                    char buffer[8];
                    while (t.TryRead(absl::MakeSpan(buffer)).ok()) {
                    }
                  })
                  .ok());
  ASSERT_TRUE((*task)->Run(Environment()).ok());
  char buffer[8];
  ASSERT_TRUE((*task)->Read(absl::MakeSpan(buffer)).ok());  // it runs
  (*task)->RequestCancel();
  EXPECT_TRUE((*task)->cancel_requested());
  RunLoopUntilFinished(**task);
  absl::StatusOr<int> result = (*task)->result();
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(*result, 1);  // returned because it saw the request, not a closed channel
}

TEST_P(TaskRemoteTest, UnknownNameIsNotFoundBeforeAnythingStarts) {
  absl::StatusOr<std::unique_ptr<Task>> task = Task::CreateNamed("test.never_registered");
  ASSERT_FALSE(task.ok());
  EXPECT_EQ(task.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(task.status().message().find("test.never_registered"), std::string::npos)
      << task.status();
  EXPECT_TRUE(scheduler_->started().empty());
}

TEST_P(TaskRemoteTest, ATaskFromAClosureIsRefusedAndStaysCreated) {
  absl::StatusOr<std::unique_ptr<Task>> task = Task::Create([](TaskContext&) { return 0; });
  ASSERT_TRUE(task.ok()) << task.status();
  EXPECT_TRUE((*task)->entry_name().empty());
  absl::Status run = (*task)->Run(Environment());
  EXPECT_EQ(run.code(), absl::StatusCode::kFailedPrecondition) << run;
  EXPECT_NE(run.message().find("Task::CreateNamed"), std::string::npos) << run;
  EXPECT_EQ((*task)->state(), TaskState::kCreated);
  EXPECT_TRUE(scheduler_->started().empty());
}

INSTANTIATE_TEST_SUITE_P(Attempts, TaskRemoteTest, ::testing::Values(1, 3));

// The same named task on the default local scheduler: the registered entry
// runs here, with attempt 1.
TEST(TaskNamedLocalTest, RunsTheRegisteredEntryHereWithAttemptOne) {
  RegisterTestEntries();
  const DefaultBackends& defaults = Defaults();
  absl::StatusOr<Backends> backends =
      NewBackends(defaults.scheduler, defaults.channel, defaults.loop, defaults.workers);
  ASSERT_TRUE(backends.ok()) << backends.status();
  absl::StatusOr<std::unique_ptr<Task>> task = Task::CreateNamed("test.echo_attempt");
  ASSERT_TRUE(task.ok()) << task.status();
  TaskEnvironment env;
  env.scheduler = backends->scheduler.get();
  env.channels = backends->channels.get();
  env.loop = backends->loop.get();
  ASSERT_TRUE((*task)->Run(env).ok());
  ASSERT_TRUE((*task)->Write(absl::string_view("hi")).ok());
  char buffer[32];
  absl::StatusOr<size_t> got = (*task)->Read(absl::MakeSpan(buffer));
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(absl::string_view(buffer, *got), "hi:1");
  while (!(*task)->finished()) ASSERT_TRUE(backends->loop->RunOnce(absl::InfiniteDuration()).ok());
  EXPECT_EQ(*(*task)->result(), 1);
}

TEST(TaskNamedLocalTest, ALocalSchedulerDoesNotStartNamedEntries) {
  const DefaultBackends& defaults = Defaults();
  absl::StatusOr<std::unique_ptr<Scheduler>> scheduler =
      NewSchedulerNamed(defaults.scheduler, defaults.workers);
  ASSERT_TRUE(scheduler.ok()) << scheduler.status();
  EXPECT_FALSE((*scheduler)->capabilities().runs_named_entries_elsewhere);
  absl::StatusOr<std::unique_ptr<RemoteOwnerEnd>> end =
      (*scheduler)->StartNamedEntry("test.three_messages", ChannelOptions{});
  EXPECT_EQ(end.status().code(), absl::StatusCode::kUnimplemented) << end.status();
}

TEST(RunEntryOnTest, RunsOnTheGivenEndWithTheGivenAttemptAndCancelFlag) {
  absl::StatusOr<std::unique_ptr<ChannelFactory>> channels =
      NewChannelFactoryNamed(Defaults().channel);
  ASSERT_TRUE(channels.ok()) << channels.status();
  absl::StatusOr<ChannelPair> pair = (*channels)->CreatePair(ChannelOptions{});
  ASSERT_TRUE(pair.ok()) << pair.status();
  std::atomic<bool> cancel{true};
  const RegisteredEntry entry = [](TaskContext& context) {
    const std::string note = absl::StrCat(context.attempt(), context.cancel_requested() ? "c" : "");
    return context.Write(note).ok() ? 5 : -1;
  };
  EXPECT_EQ(RunEntryOn(entry, *pair->task_end, 2, &cancel), 5);
  EXPECT_EQ(RunEntryOn(entry, *pair->task_end, 4, nullptr), 5);
  char buffer[8];
  absl::StatusOr<size_t> got = Receive(*pair->owner_end, absl::MakeSpan(buffer));
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(absl::string_view(buffer, *got), "2c");
  got = Receive(*pair->owner_end, absl::MakeSpan(buffer));
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(absl::string_view(buffer, *got), "4");
}

TEST(EntryRegistryTest, RefusesBadNamesEmptyEntriesAndDuplicates) {
  const RegisteredEntry entry = [](TaskContext&) { return 0; };
  EXPECT_EQ(RegisterEntry("", entry).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(RegisterEntry(std::string(129, 'a'), entry).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(RegisterEntry("has space", entry).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(RegisterEntry("slash/no", entry).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(RegisterEntry(absl::string_view("nul\0", 4), entry).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(RegisterEntry("registry.empty", RegisteredEntry()).code(),
            absl::StatusCode::kInvalidArgument);
  // Refused names are not registered.
  EXPECT_EQ(FindEntry("has space").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(FindEntry("registry.empty").status().code(), absl::StatusCode::kNotFound);

  const std::string longest(128, 'z');
  ASSERT_TRUE(RegisterEntry(longest, entry).ok());
  ASSERT_TRUE(RegisterEntry("registry.A-z_0.9:x", entry).ok());
  absl::Status again = RegisterEntry("registry.A-z_0.9:x", entry);
  EXPECT_EQ(again.code(), absl::StatusCode::kAlreadyExists);
  EXPECT_NE(again.message().find("registry.A-z_0.9:x"), std::string::npos) << again;

  absl::StatusOr<RegisteredEntry> found = FindEntry("registry.A-z_0.9:x");
  ASSERT_TRUE(found.ok()) << found.status();
  EXPECT_TRUE(static_cast<bool>(*found));
  absl::StatusOr<RegisteredEntry> missing = FindEntry("registry.missing");
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(missing.status().message().find("registry.missing"), std::string::npos);

  const std::vector<std::string> names = RegisteredEntryNames();
  EXPECT_TRUE(std::is_sorted(names.begin(), names.end()));
  EXPECT_NE(std::find(names.begin(), names.end(), longest), names.end());
  EXPECT_NE(std::find(names.begin(), names.end(), "registry.A-z_0.9:x"), names.end());
}

TEST(EntryRegistryTest, ConcurrentRegistrationsOfOneNameLetExactlyOneWin) {
  constexpr int kThreads = 4;
  std::atomic<int> won{0};
  std::atomic<int> taken{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < kThreads; ++i) {
    threads.emplace_back([&, i] {
      absl::Status status = RegisterEntry("registry.race", [i](TaskContext&) { return i; });
      if (status.ok()) won.fetch_add(1);
      if (status.code() == absl::StatusCode::kAlreadyExists) taken.fetch_add(1);
      (void)FindEntry("registry.race");
      (void)RegisteredEntryNames();
    });
  }
  for (std::thread& thread : threads) thread.join();
  EXPECT_EQ(won.load(), 1);
  EXPECT_EQ(taken.load(), kThreads - 1);
}

}  // namespace
}  // namespace taskrt
