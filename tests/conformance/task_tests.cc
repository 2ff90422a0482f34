// Conformance group: Kore task semantics (core/task.h) on the backends under
// test: states, bound callbacks and requests, the channel in both
// directions, destruction and cancellation.

#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "core/errors.h"
#include "core/task.h"
#include "gtest/gtest.h"
#include "tests/conformance/conformance.h"
#include "tests/conformance/task_fixture.h"

namespace taskrt::conformance {
namespace {

class TaskConformance : public TaskFixture {
 protected:
  static std::unique_ptr<Task> MakeTask(TaskEntry entry) {
    absl::StatusOr<std::unique_ptr<Task>> task = Task::Create(std::move(entry));
    EXPECT_TRUE(task.ok()) << task.status();
    return task.ok() ? *std::move(task) : nullptr;
  }
};

TEST_P(TaskConformance, GoesFromCreatedToRunningToFinishedWithAResult) {
  auto release = std::make_shared<Notification>();
  std::unique_ptr<Task> task = MakeTask([release](TaskContext&) {
    release->WaitForNotification();
    return 42;
  });
  EXPECT_EQ(task->state(), TaskState::kCreated);
  EXPECT_EQ(task->result().status().code(), absl::StatusCode::kFailedPrecondition);
  ASSERT_TRUE(task->Run(Env()).ok());
  EXPECT_EQ(task->state(), TaskState::kRunning);
  EXPECT_EQ(task->result().status().code(), absl::StatusCode::kFailedPrecondition);
  release->Notify();
  ASSERT_TRUE(PumpUntil([&] { return task->finished(); }));
  EXPECT_EQ(task->state(), TaskState::kFinished);
  ASSERT_TRUE(task->result().ok());
  EXPECT_EQ(*task->result(), 42);
}

// Kore's blocking calls with a deadline: a timed-out read in the entry and
// on the owner's side took nothing, so the next message arrives whole.
TEST_P(TaskConformance, TimedOutReadsTakeNothingOnEitherSide) {
  auto entry_saw = std::make_shared<std::vector<absl::StatusCode>>();
  std::unique_ptr<Task> task = MakeTask([entry_saw](TaskContext& self) {
    char buffer[64];
    absl::StatusOr<size_t> early =
        self.ReadUntil(absl::MakeSpan(buffer), absl::Now() + absl::Milliseconds(2));
    entry_saw->push_back(early.status().code());
    if (!self.Write(Bytes("timed out once")).ok()) return 1;
    absl::StatusOr<size_t> later = self.ReadUntil(absl::MakeSpan(buffer), absl::InfiniteFuture());
    if (!later.ok() || std::string(buffer, *later) != "now it comes") return 2;
    return 0;
  });
  ASSERT_TRUE(task->Run(Env()).ok());
  char buffer[64];
  absl::StatusOr<size_t> first = task->ReadUntil(absl::MakeSpan(buffer), absl::InfiniteFuture());
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ(std::string(buffer, *first), "timed out once");
  // The entry now waits for the owner: nothing is on its way here.
  EXPECT_EQ(task->ReadUntil(absl::MakeSpan(buffer), absl::InfinitePast()).status().code(),
            absl::StatusCode::kDeadlineExceeded);
  ASSERT_TRUE(task->WriteUntil(Bytes("now it comes"), absl::InfiniteFuture()).ok());
  ASSERT_TRUE(PumpUntil([&] { return task->finished(); }));
  EXPECT_EQ(*task->result(), 0);
  ASSERT_EQ(entry_saw->size(), 1u);
  EXPECT_EQ((*entry_saw)[0], absl::StatusCode::kDeadlineExceeded);
}

TEST_P(TaskConformance, CallbackSeesEveryMessageAndExactlyOneFinalCallLast) {
  constexpr int kMessages = 1000;
  std::unique_ptr<Task> task = MakeTask([](TaskContext& self) {
    for (int i = 0; i < kMessages; ++i) {
      if (!self.Write(Bytes(absl::StrCat("m", i))).ok()) return 1;
    }
    return 0;
  });
  std::vector<std::string> received;
  int calls = 0;
  int final_calls = 0;
  bool call_after_final = false;
  ASSERT_TRUE(task->BindCallback([&](Task& t) {
    ++calls;
    if (final_calls > 0) call_after_final = true;
    Drain(t, &received);
    if (t.finished()) ++final_calls;
  }).ok());
  ASSERT_TRUE(task->Run(Env()).ok());
  ASSERT_TRUE(PumpUntil([&] { return final_calls > 0; }));
  // Pump a little more: nothing may follow the final call.
  bool marker = false;
  ASSERT_TRUE(loop_->Post([&] { marker = true; }).ok());
  ASSERT_TRUE(PumpUntil([&] { return marker; }));

  EXPECT_EQ(final_calls, 1);
  EXPECT_FALSE(call_after_final);
  EXPECT_GE(calls, 1);
  ASSERT_EQ(received.size(), static_cast<size_t>(kMessages)) << "calls: " << calls;
  for (int i = 0; i < kMessages; ++i) ASSERT_EQ(received[i], absl::StrCat("m", i));
  EXPECT_EQ(*task->result(), 0);
}

TEST_P(TaskConformance, CallbackThatReadsOneMessagePerCallLosesNothing) {
  constexpr int kMessages = 50;
  std::unique_ptr<Task> task = MakeTask([](TaskContext& self) {
    for (int i = 0; i < kMessages; ++i) self.Write(Bytes(absl::StrCat(i))).IgnoreError();
    return 0;
  });
  bool finished_seen = false;
  ASSERT_TRUE(task->BindCallback([&](Task& t) {
    char buffer[16];
    t.TryRead(absl::MakeSpan(buffer)).IgnoreError();  // at most one per call
    if (t.finished()) finished_seen = true;
  }).ok());
  ASSERT_TRUE(task->Run(Env()).ok());
  ASSERT_TRUE(PumpUntil([&] { return finished_seen; }));
  // Whatever the calls left unread is still there, in order, then the end.
  std::vector<std::string> rest;
  Drain(*task, &rest);
  const int first = kMessages - static_cast<int>(rest.size());
  for (size_t i = 0; i < rest.size(); ++i) EXPECT_EQ(rest[i], absl::StrCat(first + static_cast<int>(i)));
  char byte;
  EXPECT_EQ(task->Read(absl::MakeSpan(&byte, 1)).status().code(), absl::StatusCode::kOutOfRange);
}

// The writer of OneLinePerCall's lines, then the owner's word that all
// were read.
int BurstWriter(TaskContext& self) {
  for (int i = 0; i < OneLinePerCall::kLines; ++i) {
    if (!self.Write(Bytes(absl::StrCat("line ", i))).ok()) return 1;
  }
  char ack[16];
  return self.Read(absl::MakeSpan(ack)).ok() ? 0 : 2;
}

TEST_P(TaskConformance, CallbackReadingOneMessagePerCallKeepsUpWithABurstingWriter) {
  std::unique_ptr<Task> task = MakeTask(BurstWriter);
  Task* raw = task.get();
  OneLinePerCall reader(&raw);
  ASSERT_TRUE(task->BindCallback([&reader](Task& t) { reader.ReadOne(t); }).ok());
  ASSERT_TRUE(task->Run(Env()).ok());
  ASSERT_TRUE(PumpUntil([&] { return reader.finished_calls > 0; }))
      << reader.Progress();
  EXPECT_EQ(reader.read, OneLinePerCall::kLines);
  EXPECT_EQ(reader.out_of_order, 0);
  EXPECT_EQ(reader.finished_calls, 1);
  EXPECT_EQ(*task->result(), 0);
}

TEST_P(TaskConformance, RequestReadingOneMessagePerResumeKeepsUpWithABurstingWriter) {
  std::unique_ptr<Task> task = MakeTask(BurstWriter);
  Task* raw = task.get();
  auto reader = std::make_shared<OneLinePerCall>(&raw);
  ASSERT_TRUE(task->BindRequest(reader).ok());
  ASSERT_TRUE(task->Run(Env()).ok());
  ASSERT_TRUE(PumpUntil([&] { return reader->finished_calls > 0; }))
      << reader->Progress();
  EXPECT_EQ(reader->read, OneLinePerCall::kLines);
  EXPECT_EQ(reader->out_of_order, 0);
  EXPECT_EQ(reader->finished_calls, 1);
  EXPECT_EQ(*task->result(), 0);
}

// A binding made after Run() still gets what arrived while nothing was
// bound: those arrivals raised no call that will come again.
TEST_P(TaskConformance, BindingAfterRunSeesWhatArrivedBefore) {
  std::unique_ptr<Task> task = MakeTask(BurstWriter);
  Task* raw = task.get();
  OneLinePerCall reader(&raw);
  ASSERT_TRUE(task->Run(Env()).ok());
  for (int i = 0; i < 10; ++i) ASSERT_TRUE(loop_->RunOnce(absl::ZeroDuration()).ok());
  ASSERT_TRUE(task->BindCallback([&reader](Task& t) { reader.ReadOne(t); }).ok());
  ASSERT_TRUE(PumpUntil([&] { return reader.finished_calls > 0; }))
      << reader.Progress();
  EXPECT_EQ(reader.read, OneLinePerCall::kLines);
  EXPECT_EQ(reader.out_of_order, 0);
  EXPECT_EQ(*task->result(), 0);
}

TEST_P(TaskConformance, BoundRequestIsResumedOnWritesAndOnceWhenFinished) {
  std::unique_ptr<Task> task = MakeTask([](TaskContext& self) {
    self.Write(Bytes(std::string("progress 50%"))).IgnoreError();
    self.Write(Bytes(std::string("progress 100%"))).IgnoreError();
    return 7;
  });
  Task* raw = task.get();
  auto request = std::make_shared<CountingRequest>(&raw);
  ASSERT_TRUE(task->BindRequest(request).ok());
  ASSERT_TRUE(task->Run(Env()).ok());
  ASSERT_TRUE(PumpUntil([&] { return request->finished_resumes > 0; }));
  EXPECT_EQ(request->finished_resumes, 1);
  EXPECT_EQ(request->messages, (std::vector<std::string>{"progress 50%", "progress 100%"}));
  EXPECT_EQ(*task->result(), 7);
}

TEST_P(TaskConformance, BindingBothACallbackAndARequestIsRefused) {
  std::unique_ptr<Task> with_callback = MakeTask([](TaskContext&) { return 0; });
  ASSERT_TRUE(with_callback->BindCallback([](Task&) {}).ok());
  auto request = std::make_shared<CountingRequest>(nullptr);
  absl::Status refused = with_callback->BindRequest(request);
  EXPECT_EQ(refused.code(), absl::StatusCode::kFailedPrecondition) << refused;

  std::unique_ptr<Task> with_request = MakeTask([](TaskContext&) { return 0; });
  ASSERT_TRUE(with_request->BindRequest(request).ok());
  refused = with_request->BindCallback([](Task&) {});
  EXPECT_EQ(refused.code(), absl::StatusCode::kFailedPrecondition) << refused;
}

TEST_P(TaskConformance, ChannelWorksBothWaysWithTruncationAndZeroLength) {
  std::unique_ptr<Task> task = MakeTask([](TaskContext& self) {
    char buffer[4];
    // A short buffer: prefix copied, full length returned, rest dropped.
    absl::StatusOr<size_t> n = self.Read(absl::MakeSpan(buffer));
    if (!n.ok() || *n != 10 || std::string(buffer, 4) != "0123") return 1;
    n = self.Read(absl::MakeSpan(buffer));
    if (!n.ok() || *n != 0) return 2;  // the zero-length message
    n = self.Read(absl::MakeSpan(buffer));
    if (!n.ok() || *n != 2 || std::string(buffer, 2) != "ok") return 3;
    if (!self.Write(Bytes(std::string("echo"))).ok()) return 4;
    if (!self.Write({}).ok()) return 5;
    return 0;
  });
  ASSERT_TRUE(task->Run(Env()).ok());
  ASSERT_TRUE(task->Write(Bytes(std::string("0123456789"))).ok());
  ASSERT_TRUE(task->Write({}).ok());
  ASSERT_TRUE(task->Write(Bytes(std::string("ok"))).ok());
  char buffer[16];
  absl::StatusOr<size_t> n = task->Read(absl::MakeSpan(buffer));
  ASSERT_TRUE(n.ok()) << n.status();
  EXPECT_EQ(std::string(buffer, *n), "echo");
  n = task->Read(absl::MakeSpan(buffer));
  ASSERT_TRUE(n.ok()) << n.status();
  EXPECT_EQ(*n, 0u);
  ASSERT_TRUE(PumpUntil([&] { return task->finished(); }));
  EXPECT_EQ(*task->result(), 0) << "the entry's checks failed at step " << *task->result();
  // Closed and drained: an error, never an abort.
  n = task->Read(absl::MakeSpan(buffer));
  EXPECT_EQ(n.status().code(), absl::StatusCode::kOutOfRange) << n.status();
  absl::Status late = task->Write(Bytes(std::string("late")));
  EXPECT_EQ(late.code(), absl::StatusCode::kFailedPrecondition) << late;
}

TEST_P(TaskConformance, OversizedMessagesAreRefusedOnBothSides) {
  std::unique_ptr<Task> task = MakeTask([](TaskContext& self) {
    absl::Status status = self.Write(Bytes(std::string(65, 'x')));
    if (status.code() != absl::StatusCode::kResourceExhausted) return 1;
    return self.Write(Bytes(std::string(64, 'y'))).ok() ? 0 : 2;
  });
  ASSERT_TRUE(task->Run(Env(/*max_message_size=*/64)).ok());
  absl::Status refused = task->Write(Bytes(std::string(100, 'z')));
  EXPECT_EQ(refused.code(), absl::StatusCode::kResourceExhausted) << refused;
  char buffer[128];
  absl::StatusOr<size_t> n = task->Read(absl::MakeSpan(buffer));
  ASSERT_TRUE(n.ok()) << n.status();
  EXPECT_EQ(std::string(buffer, *n), std::string(64, 'y')) << "only the allowed message arrived";
  ASSERT_TRUE(PumpUntil([&] { return task->finished(); }));
  EXPECT_EQ(*task->result(), 0);
}

TEST_P(TaskConformance, MessagesBiggerThanTheSocketBufferPassThroughTasks) {
  constexpr size_t kSize = 2 << 20;
  std::unique_ptr<Task> task = MakeTask([](TaskContext& self) {
    std::string buffer(kSize, '\0');
    absl::StatusOr<size_t> n = self.Read(absl::MakeSpan(buffer));
    if (!n.ok() || *n != kSize) return 1;
    for (char& c : buffer) c = static_cast<char>(c + 1);
    return self.Write(Bytes(buffer)).ok() ? 0 : 2;
  });
  ASSERT_TRUE(task->Run(Env(kSize)).ok());
  std::string big(kSize, '\0');
  for (size_t i = 0; i < kSize; ++i) big[i] = static_cast<char>(i * 31);
  ASSERT_TRUE(task->Write(Bytes(big)).ok());
  std::string back(kSize, '\0');
  absl::StatusOr<size_t> n = task->Read(absl::MakeSpan(back));
  ASSERT_TRUE(n.ok()) << n.status();
  ASSERT_EQ(*n, kSize);
  for (size_t i = 0; i < kSize; ++i) {
    ASSERT_EQ(back[i], static_cast<char>(static_cast<char>(i * 31) + 1)) << "byte " << i;
  }
  ASSERT_TRUE(PumpUntil([&] { return task->finished(); }));
  EXPECT_EQ(*task->result(), 0);
}

TEST_P(TaskConformance, ManyTasksWritingToOneOwner) {
  constexpr int kTasks = 40;
  constexpr int kMessages = 100;
  std::vector<std::unique_ptr<Task>> tasks;
  std::vector<std::vector<std::string>> received(kTasks);
  int finished = 0;
  for (int t = 0; t < kTasks; ++t) {
    tasks.push_back(MakeTask([t](TaskContext& self) {
      for (int i = 0; i < kMessages; ++i) self.Write(Bytes(absl::StrCat(t, ".", i))).IgnoreError();
      return t;
    }));
    ASSERT_TRUE(tasks.back()->BindCallback([&, t](Task& task) {
      Drain(task, &received[t]);
      if (task.finished()) ++finished;
    }).ok());
  }
  for (auto& task : tasks) ASSERT_TRUE(task->Run(Env()).ok());
  ASSERT_TRUE(PumpUntil([&] { return finished == kTasks; }));
  for (int t = 0; t < kTasks; ++t) {
    ASSERT_EQ(received[t].size(), static_cast<size_t>(kMessages)) << "task " << t;
    for (int i = 0; i < kMessages; ++i) ASSERT_EQ(received[t][i], absl::StrCat(t, ".", i));
    EXPECT_EQ(*tasks[t]->result(), t);
  }
}

TEST_P(TaskConformance, DestroyingARunningTaskCancelsAndDetachesIt) {
  struct Observed {
    Notification reading;
    Notification ended;
    absl::Status read_status;
    absl::Status write_status;
    bool saw_cancel = false;
  };
  auto observed = std::make_shared<Observed>();
  std::unique_ptr<Task> task = MakeTask([observed](TaskContext& self) {
    observed->reading.Notify();
    char buffer[8];
    // Blocks until the owner goes away.
    observed->read_status = self.Read(absl::MakeSpan(buffer)).status();
    observed->saw_cancel = self.cancel_requested();
    observed->write_status = self.Write(Bytes(std::string("anyone?")));
    observed->ended.Notify();
    return 0;
  });
  ASSERT_TRUE(task->BindCallback([](Task&) { ADD_FAILURE() << "callback after destroy"; }).ok());
  ASSERT_TRUE(task->Run(Env()).ok());
  ASSERT_TRUE(observed->reading.WaitForNotification());
  task.reset();
  ASSERT_TRUE(observed->ended.WaitForNotification());
  EXPECT_TRUE(observed->saw_cancel);
  EXPECT_EQ(observed->read_status.code(), absl::StatusCode::kOutOfRange) << observed->read_status;
  EXPECT_EQ(observed->write_status.code(), absl::StatusCode::kFailedPrecondition)
      << observed->write_status;
  // The loop has nothing left to call for it.
  ASSERT_TRUE(loop_->RunOnce(absl::ZeroDuration()).ok());
}

TEST_P(TaskConformance, DestroyingBeforeRunAndAfterFinishIsSafe) {
  std::unique_ptr<Task> never_run = MakeTask([](TaskContext&) { return 0; });
  never_run.reset();

  std::unique_ptr<Task> task = MakeTask([](TaskContext&) { return 3; });
  ASSERT_TRUE(task->Run(Env()).ok());
  ASSERT_TRUE(PumpUntil([&] { return task->finished(); }));
  task.reset();
  ASSERT_TRUE(loop_->RunOnce(absl::ZeroDuration()).ok());
}

TEST_P(TaskConformance, DestroyingFromItsOwnFinalCallbackIsSafe) {
  std::unique_ptr<Task> task = MakeTask([](TaskContext& self) {
    self.Write(Bytes(std::string("done"))).IgnoreError();
    return 0;
  });
  bool destroyed = false;
  ASSERT_TRUE(task->BindCallback([&](Task& t) {
    if (t.finished()) {
      task.reset();  // Kore's usual pattern: destroy in the final callback
      destroyed = true;
    }
  }).ok());
  ASSERT_TRUE(task->Run(Env()).ok());
  ASSERT_TRUE(PumpUntil([&] { return destroyed; }));
  ASSERT_TRUE(loop_->RunOnce(absl::ZeroDuration()).ok());
}

TEST_P(TaskConformance, EntrySeesRequestCancel) {
  auto started = std::make_shared<Notification>();
  std::unique_ptr<Task> task = MakeTask([started](TaskContext& self) {
    started->Notify();
    while (!self.cancel_requested()) {
    }
    return 99;
  });
  ASSERT_TRUE(task->Run(Env()).ok());
  ASSERT_TRUE(started->WaitForNotification());
  EXPECT_FALSE(task->cancel_requested());
  task->RequestCancel();
  EXPECT_TRUE(task->cancel_requested());
  ASSERT_TRUE(PumpUntil([&] { return task->finished(); }));
  EXPECT_EQ(*task->result(), 99);
}

TEST_P(TaskConformance, MisuseGetsErrors) {
  EXPECT_EQ(Task::Create(TaskEntry()).status().code(), absl::StatusCode::kInvalidArgument);

  std::unique_ptr<Task> task = MakeTask([](TaskContext&) { return 0; });
  char buffer[4];
  EXPECT_EQ(task->Write(Bytes(std::string("early"))).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(task->Read(absl::MakeSpan(buffer)).status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(task->Run(TaskEnvironment{}).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(task->BindCallback(nullptr).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(task->BindRequest(std::weak_ptr<Resumable>()).code(),
            absl::StatusCode::kInvalidArgument);

  ASSERT_TRUE(task->Run(Env()).ok());
  EXPECT_EQ(task->Run(Env()).code(), absl::StatusCode::kFailedPrecondition) << "run twice";
  ASSERT_TRUE(PumpUntil([&] { return task->finished(); }));
  EXPECT_EQ(task->BindCallback([](Task&) {}).code(), absl::StatusCode::kFailedPrecondition);
}

TEST_P(TaskConformance, RunOnAShutDownSchedulerFailsAndLeavesTheTaskCreated) {
  ASSERT_TRUE(scheduler_->Shutdown().ok());
  std::unique_ptr<Task> task = MakeTask([](TaskContext&) { return 0; });
  absl::Status status = task->Run(Env());
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition) << status;
  EXPECT_EQ(task->state(), TaskState::kCreated);
}

INSTANTIATE_TEST_SUITE_P(Conformance, TaskConformance, ::testing::ValuesIn(WorkerCounts()),
                         WorkerCountName);

}  // namespace
}  // namespace taskrt::conformance
