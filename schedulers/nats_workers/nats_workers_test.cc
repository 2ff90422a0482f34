// nats_workers end to end: a broker of the test's own, worker processes
// (this binary, started again with --nats_worker=<url>), and owners in the
// test process, through Task as a Kore owner uses it.

#include "schedulers/nats_workers/nats_workers.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "backends/registry.h"
#include "core/entry_registry.h"
#include "core/task.h"
#include "gtest/gtest.h"
#include "nats/nats.h"
#include "platform/nats/broker.h"
#include "platform/process/child_process.h"
#include "schedulers/nats_workers/test_worker.h"

namespace taskrt {
namespace {

using nats_platform::LocalBroker;
using nats_platform::LocalBrokerOptions;

constexpr char kWorkerFlag[] = "--nats_worker=";
constexpr char kAckWaitFlag[] = "--ack_wait_ms=";
// Short, so that a killed worker's job comes back soon; not a bound on
// anything the tests assert.
constexpr int kAckWaitMs = 3000;

std::string ReadText(TaskContext& context) {
  char buffer[256];
  absl::StatusOr<size_t> got = context.Read(absl::MakeSpan(buffer));
  if (!got.ok()) return "";
  return std::string(buffer, std::min(*got, sizeof buffer));
}

bool WriteText(TaskContext& context, absl::string_view text) {
  return context.Write(absl::MakeConstSpan(text.data(), text.size())).ok();
}

// Entries every process registers, as a deployment's owners and workers
// link the same entry library.
void RegisterSharedEntries() {
  // Reads N, writes "0".."N-1", returns N.
  RegisterEntry("test.count", [](TaskContext& context) {
    int count = 0;
    if (!absl::SimpleAtoi(ReadText(context), &count)) return -2;
    for (int i = 0; i < count; ++i) {
      if (!WriteText(context, absl::StrCat(i))) return -3;
    }
    return count;
  }).IgnoreError();
  // Echoes every message with its attempt until "end"; returns how many.
  RegisterEntry("test.echo", [](TaskContext& context) {
    int echoed = 0;
    for (;;) {
      const std::string message = ReadText(context);
      if (message == "end" || message.empty()) return echoed;
      if (!WriteText(context, absl::StrCat(message, "@", context.attempt()))) return -3;
      ++echoed;
    }
  }).IgnoreError();
  // Writes its pid, reads N, writes the first half of "m0".."mN-1", waits
  // for "continue", writes the rest; returns its attempt. The owner kills
  // the first attempt's process between the halves.
  RegisterEntry("test.halves", [](TaskContext& context) {
    if (!WriteText(context, absl::StrCat("pid:", getpid()))) return -3;
    int count = 0;
    if (!absl::SimpleAtoi(ReadText(context), &count)) return -2;
    for (int i = 0; i < count / 2; ++i) {
      if (!WriteText(context, absl::StrCat("m", i))) return -3;
    }
    if (ReadText(context) != "continue") return -4;
    for (int i = count / 2; i < count; ++i) {
      if (!WriteText(context, absl::StrCat("m", i))) return -3;
    }
    return context.attempt();
  }).IgnoreError();
  // Writes "tick" until asked to cancel; returns 9.
  RegisterEntry("test.until_cancelled", [](TaskContext& context) {
    while (!context.cancel_requested()) {
      if (!WriteText(context, "tick")) return -3;
    }
    return 9;
  }).IgnoreError();
  // Writes a message of the size it reads, filled with its index pattern,
  // then reads one of that size back and returns whether it was intact.
  RegisterEntry("test.big", [](TaskContext& context) {
    size_t size = 0;
    if (!absl::SimpleAtoi(ReadText(context), &size)) return -2;
    std::string big(size, '\0');
    for (size_t i = 0; i < size; ++i) big[i] = static_cast<char>(i * 7);
    if (!context.Write(absl::MakeConstSpan(big)).ok()) return -3;
    std::string back(size + 1, '\0');
    absl::StatusOr<size_t> got = context.Read(absl::MakeSpan(back));
    if (!got.ok() || *got != size) return -4;
    return back.substr(0, size) == big ? 1 : 0;
  }).IgnoreError();
}

// A worker process: this binary with --nats_worker.
class WorkerProcess {
 public:
  static absl::StatusOr<std::unique_ptr<WorkerProcess>> Start(const std::string& url) {
    absl::StatusOr<std::unique_ptr<ChildProcess>> child =
        StartTestWorker({absl::StrCat(kWorkerFlag, url), absl::StrCat(kAckWaitFlag, kAckWaitMs)});
    if (!child.ok()) return child.status();
    return std::unique_ptr<WorkerProcess>(new WorkerProcess(*std::move(child)));
  }

  // Stops it as an operator would (SIGTERM); a worker that does not end
  // cleanly (a sanitizer's report, say) fails the test.
  ~WorkerProcess() {
    if (child_->pid() <= 0) return;
    const int status = child_->Stop();
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0)
        << "the worker ended with wait status " << status << "; its output is above";
  }

  pid_t pid() const { return child_->pid(); }

  // SIGKILL, as a machine that dies; returns once it is dead.
  void KillHard() { child_->Kill(); }

 private:
  explicit WorkerProcess(std::unique_ptr<ChildProcess> child) : child_(std::move(child)) {}
  std::unique_ptr<ChildProcess> child_;
};

// Messages a task wrote, as its bound callback read them, and its final call.
struct Seen {
  std::vector<std::string> messages;
  std::vector<absl::Status> errors;
  int final_calls = 0;
};

class NatsWorkersTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<std::unique_ptr<LocalBroker>> broker = LocalBroker::Start();
    if (!broker.ok()) GTEST_SKIP() << "no NATS broker for nats_workers: " << broker.status();
    broker_ = *std::move(broker);
    const DefaultBackends& defaults = Defaults();
    absl::StatusOr<std::unique_ptr<EventLoop>> loop = NewLoopNamed(defaults.loop);
    ASSERT_TRUE(loop.ok()) << loop.status();
    loop_ = *std::move(loop);
    ASSERT_TRUE(Connect().ok());
  }

  absl::Status Connect() {
    NatsWorkersOptions options;
    options.url = broker_->url();
    options.ack_wait = absl::Milliseconds(kAckWaitMs);
    absl::StatusOr<std::unique_ptr<Scheduler>> scheduler = NewNatsWorkersScheduler(options);
    if (!scheduler.ok()) return scheduler.status();
    scheduler_ = *std::move(scheduler);
    return absl::OkStatus();
  }

  // Swaps the test's broker for one whose JetStream store outlives it,
  // for RestartBroker; returns the store's directory.
  std::string UseBrokerKeepingItsStore() {
    const char* tmp = std::getenv("TEST_TMPDIR");
    std::string store = absl::StrCat(tmp != nullptr ? tmp : "/tmp", "/store-XXXXXX");
    EXPECT_NE(mkdtemp(store.data()), nullptr);
    LocalBrokerOptions keep;
    keep.store_dir = store;
    absl::StatusOr<std::unique_ptr<LocalBroker>> broker = LocalBroker::Start(keep);
    EXPECT_TRUE(broker.ok()) << broker.status();
    scheduler_.reset();
    broker_ = *std::move(broker);
    EXPECT_TRUE(Connect().ok());
    return store;
  }

  // Stops the broker and starts it again on its port and store.
  void RestartBroker(const std::string& store) {
    LocalBrokerOptions same;
    same.port = broker_->port();
    same.store_dir = store;
    broker_->Stop();
    absl::StatusOr<std::unique_ptr<LocalBroker>> restarted = LocalBroker::Start(same);
    ASSERT_TRUE(restarted.ok()) << restarted.status();
    stopped_brokers_.push_back(std::move(broker_));
    broker_ = *std::move(restarted);
  }

  std::unique_ptr<WorkerProcess> StartWorker() {
    absl::StatusOr<std::unique_ptr<WorkerProcess>> worker = WorkerProcess::Start(broker_->url());
    EXPECT_TRUE(worker.ok()) << worker.status();
    return worker.ok() ? *std::move(worker) : nullptr;
  }

  TaskEnvironment Environment(ChannelOptions channel_options = {}) {
    TaskEnvironment env;
    env.scheduler = scheduler_.get();
    env.loop = loop_.get();
    env.channel_options = channel_options;
    return env;
  }

  // A named task, run, with a callback that records what it reads.
  std::unique_ptr<Task> Start(absl::string_view entry, Seen& seen, ChannelOptions options = {}) {
    absl::StatusOr<std::unique_ptr<Task>> task = Task::CreateNamed(entry);
    EXPECT_TRUE(task.ok()) << task.status();
    if (!task.ok()) return nullptr;
    EXPECT_TRUE((*task)
                    ->BindCallback([&seen](Task& t) {
                      std::string buffer(8 << 20, '\0');
                      for (;;) {
                        absl::StatusOr<size_t> got = t.TryRead(absl::MakeSpan(buffer));
                        if (got.ok()) {
                          seen.messages.emplace_back(buffer.data(), std::min(*got, buffer.size()));
                          continue;
                        }
                        if (!IsWouldBlock(got.status()) && !absl::IsOutOfRange(got.status())) {
                          seen.errors.push_back(got.status());
                          continue;
                        }
                        break;
                      }
                      if (t.finished()) ++seen.final_calls;
                    })
                    .ok());
    absl::Status run = (*task)->Run(Environment(options));
    EXPECT_TRUE(run.ok()) << run;
    return *std::move(task);
  }

  void RunUntilFinished(Task& task) {
    while (!task.finished()) ASSERT_TRUE(loop_->RunOnce(absl::InfiniteDuration()).ok());
  }

  // Runs the loop until `seen` holds `count` messages.
  void RunUntilMessages(const Seen& seen, size_t count) {
    while (seen.messages.size() < count) ASSERT_TRUE(loop_->RunOnce(absl::InfiniteDuration()).ok());
  }

  std::unique_ptr<LocalBroker> broker_;
  std::vector<std::unique_ptr<LocalBroker>> stopped_brokers_;
  std::unique_ptr<EventLoop> loop_;
  std::unique_ptr<Scheduler> scheduler_;
};

std::vector<std::string> Numbers(int count, absl::string_view prefix = "") {
  std::vector<std::string> out;
  for (int i = 0; i < count; ++i) out.push_back(absl::StrCat(prefix, i));
  return out;
}

TEST_F(NatsWorkersTest, RunsANamedEntryInAWorkerProcess) {
  std::unique_ptr<WorkerProcess> worker = StartWorker();
  Seen seen;
  std::unique_ptr<Task> task = Start("test.count", seen);
  ASSERT_TRUE(task->Write(absl::string_view("500")).ok());
  RunUntilFinished(*task);
  EXPECT_EQ(seen.messages, Numbers(500));
  EXPECT_TRUE(seen.errors.empty());
  EXPECT_EQ(seen.final_calls, 1);
  EXPECT_EQ(*task->result(), 500);
}

TEST_F(NatsWorkersTest, ManyTasksOnTwoWorkersThroughASmallWindow) {
  std::unique_ptr<WorkerProcess> first = StartWorker();
  std::unique_ptr<WorkerProcess> second = StartWorker();
  ChannelOptions small;
  small.buffer_bytes = 256;  // each worker waits for credit every few messages
  std::vector<Seen> seen(20);
  std::vector<std::unique_ptr<Task>> tasks;
  for (Seen& s : seen) {
    tasks.push_back(Start("test.count", s, small));
    ASSERT_TRUE(tasks.back()->Write(absl::string_view("200")).ok());
  }
  for (size_t i = 0; i < seen.size(); ++i) {
    RunUntilFinished(*tasks[i]);
    EXPECT_EQ(seen[i].messages, Numbers(200)) << "task " << i;
    EXPECT_EQ(*tasks[i]->result(), 200);
  }
}

TEST_F(NatsWorkersTest, TheOwnerTalksWithTheEntryBothWays) {
  std::unique_ptr<WorkerProcess> worker = StartWorker();
  ChannelOptions small;
  small.buffer_bytes = 256;
  Seen seen;
  std::unique_ptr<Task> task = Start("test.echo", seen, small);
  for (int m = 0; m < 30; ++m) {
    ASSERT_TRUE(task->Write(absl::StrCat("m", m)).ok());
    RunUntilMessages(seen, static_cast<size_t>(m) + 1);
  }
  ASSERT_TRUE(task->Write(absl::string_view("end")).ok());
  RunUntilFinished(*task);
  std::vector<std::string> expected;
  for (int m = 0; m < 30; ++m) expected.push_back(absl::StrCat("m", m, "@1"));
  EXPECT_EQ(seen.messages, expected);
  EXPECT_EQ(*task->result(), 30);
}

TEST_F(NatsWorkersTest, MessagesOverTheBrokersPayloadBothWays) {
  std::unique_ptr<WorkerProcess> worker = StartWorker();
  ChannelOptions options;
  options.max_message_size = 4 << 20;
  Seen seen;
  std::unique_ptr<Task> task = Start("test.big", seen, options);
  constexpr size_t kSize = 3 << 20;  // the broker's payload limit is 1 MiB
  ASSERT_TRUE(task->Write(absl::StrCat(kSize)).ok());
  RunUntilMessages(seen, 1);
  ASSERT_EQ(seen.messages[0].size(), kSize);
  ASSERT_TRUE(task->Write(absl::MakeConstSpan(seen.messages[0])).ok());
  RunUntilFinished(*task);
  EXPECT_EQ(*task->result(), 1);
}

TEST_F(NatsWorkersTest, AWorkerKilledMidTaskIsReplacedAndTheOwnerSeesEachMessageOnce) {
  std::unique_ptr<WorkerProcess> doomed = StartWorker();
  Seen seen;
  std::unique_ptr<Task> task = Start("test.halves", seen);
  ASSERT_TRUE(task->Write(absl::string_view("10")).ok());
  RunUntilMessages(seen, 1 + 5);  // its pid, then the first half
  const std::string first_words = absl::StrCat("pid:", doomed->pid());
  ASSERT_EQ(seen.messages[0], first_words);
  doomed->KillHard();
  std::unique_ptr<WorkerProcess> survivor = StartWorker();
  // Kept by the owner's end, and pulled again by the next attempt.
  ASSERT_TRUE(task->Write(absl::string_view("continue")).ok());
  RunUntilFinished(*task);
  std::vector<std::string> expected = {first_words};
  for (const std::string& m : Numbers(10, "m")) expected.push_back(m);
  EXPECT_EQ(seen.messages, expected);
  EXPECT_TRUE(seen.errors.empty());
  EXPECT_EQ(seen.final_calls, 1);
  EXPECT_GE(*task->result(), 2) << "a later attempt finished the task";
}

TEST_F(NatsWorkersTest, TasksQueuedBeforeABrokerRestartRunAfterIt) {
  const std::string store = UseBrokerKeepingItsStore();
  Seen seen[3];
  std::vector<std::unique_ptr<Task>> tasks;
  for (Seen& s : seen) {
    tasks.push_back(Start("test.count", s));
    ASSERT_TRUE(tasks.back()->Write(absl::string_view("20")).ok());
  }
  // No worker yet: the jobs wait in JetStream, on disk.
  RestartBroker(store);
  std::unique_ptr<WorkerProcess> worker = StartWorker();
  for (size_t i = 0; i < tasks.size(); ++i) {
    RunUntilFinished(*tasks[i]);
    EXPECT_EQ(seen[i].messages, Numbers(20)) << "task " << i;
    EXPECT_EQ(*tasks[i]->result(), 20);
  }
}

TEST_F(NatsWorkersTest, ABrokerRestartMidTaskRetriesItAndTheOwnerSeesEachMessageOnce) {
  const std::string store = UseBrokerKeepingItsStore();
  std::unique_ptr<WorkerProcess> worker = StartWorker();
  Seen seen;
  std::unique_ptr<Task> task = Start("test.halves", seen);
  ASSERT_TRUE(task->Write(absl::string_view("10")).ok());
  RunUntilMessages(seen, 1 + 5);  // the entry waits for "continue"
  RestartBroker(store);
  ASSERT_TRUE(task->Write(absl::string_view("continue")).ok());
  RunUntilFinished(*task);
  std::vector<std::string> expected = {seen.messages[0]};
  for (const std::string& m : Numbers(10, "m")) expected.push_back(m);
  EXPECT_EQ(seen.messages, expected);
  EXPECT_TRUE(seen.errors.empty());
  EXPECT_GE(*task->result(), 2) << "the attempt cut off by the restart cannot count";
}

// A client of the broker that is not a worker: it reads the job as it is
// queued (a plain subscriber sees it), learns the task's subject, and
// publishes there what no worker sends.
TEST_F(NatsWorkersTest, GarbageOnATasksSubjectIsDataLossAndTheTaskGoesOn) {
  natsConnection* hostile = nullptr;
  ASSERT_EQ(natsConnection_ConnectTo(&hostile, broker_->url().c_str()), NATS_OK);
  natsSubscription* jobs = nullptr;
  ASSERT_EQ(natsConnection_SubscribeSync(&jobs, hostile, "taskrt.jobs"), NATS_OK);
  ASSERT_EQ(natsConnection_Flush(hostile), NATS_OK);
  Seen seen;
  std::unique_ptr<Task> task = Start("test.count", seen);
  natsMsg* job = nullptr;
  ASSERT_EQ(natsSubscription_NextMsg(&job, jobs, 10000), NATS_OK);
  const std::vector<std::string> lines =
      absl::StrSplit(absl::string_view(natsMsg_GetData(job), natsMsg_GetDataLength(job)), '\n');
  natsMsg_Destroy(job);
  ASSERT_GE(lines.size(), 3u);
  const std::string subject = lines[2];
  auto forge = [&](char kind, uint32_t attempt, std::string rest) {
    std::string bytes(1, kind);
    for (int i = 0; i < 4; ++i) bytes.push_back(static_cast<char>(attempt >> (8 * i)));
    bytes += rest;
    natsConnection_Publish(hostile, subject.c_str(), bytes.data(), static_cast<int>(bytes.size()));
  };
  const std::string huge(8, '\xff');
  natsConnection_PublishString(hostile, subject.c_str(), "");  // no header at all
  forge('Z', 0, "unknown kind");
  forge('P', 0, huge);                          // a pull for message 2^64 - 1
  forge('L', 0, huge + huge + "forged piece");  // a piece of a message far ahead
  forge('H', 7, "not a subject");               // a hello without a reply subject
  natsMsg* reply = nullptr;
  // A hello naming a subject that would break the broker's protocol.
  std::string hello(1, 'H');
  hello += std::string("\x07\0\0\0", 4) + "_INBOX.x\r\nPUB evil 1\r\n";
  EXPECT_EQ(natsConnection_Request(&reply, hostile, subject.c_str(), hello.data(),
                                   static_cast<int>(hello.size()), 10000),
            NATS_OK);
  EXPECT_EQ(absl::string_view(natsMsg_GetData(reply), natsMsg_GetDataLength(reply)), "stop");
  natsMsg_Destroy(reply);
  ASSERT_EQ(natsConnection_Flush(hostile), NATS_OK);
  // Only now a worker: the garbage reached the owner first.
  std::unique_ptr<WorkerProcess> worker = StartWorker();
  ASSERT_TRUE(task->Write(absl::string_view("50")).ok());
  RunUntilFinished(*task);
  EXPECT_EQ(seen.messages, Numbers(50));
  ASSERT_FALSE(seen.errors.empty());
  for (const absl::Status& error : seen.errors) {
    EXPECT_EQ(error.code(), absl::StatusCode::kDataLoss) << error;
  }
  EXPECT_EQ(*task->result(), 50);
  natsSubscription_Destroy(jobs);
  natsConnection_Destroy(hostile);
}

TEST_F(NatsWorkersTest, AnEntryTheWorkerLacksIsNotFoundAtTheOwner) {
  std::unique_ptr<WorkerProcess> worker = StartWorker();
  Seen seen;
  std::unique_ptr<Task> task = Start("test.owner_only", seen);
  RunUntilFinished(*task);
  ASSERT_EQ(seen.errors.size(), 1u);
  EXPECT_EQ(seen.errors[0].code(), absl::StatusCode::kNotFound) << seen.errors[0];
  EXPECT_NE(seen.errors[0].message().find("test.owner_only"), std::string::npos) << seen.errors[0];
  EXPECT_EQ(*task->result(), -1);
}

TEST_F(NatsWorkersTest, AGivenUpTaskDoesNotHoldTheWorker) {
  {
    Seen seen;
    std::unique_ptr<Task> abandoned = Start("test.echo", seen);
  }  // destroyed before any worker took it
  std::unique_ptr<WorkerProcess> worker = StartWorker();
  Seen seen;
  std::unique_ptr<Task> task = Start("test.count", seen);
  ASSERT_TRUE(task->Write(absl::string_view("3")).ok());
  RunUntilFinished(*task);
  EXPECT_EQ(seen.messages, Numbers(3));
}

TEST_F(NatsWorkersTest, RequestCancelReachesTheEntryInItsWorker) {
  std::unique_ptr<WorkerProcess> worker = StartWorker();
  Seen seen;
  std::unique_ptr<Task> task = Start("test.until_cancelled", seen);
  RunUntilMessages(seen, 1);
  task->RequestCancel();
  RunUntilFinished(*task);
  EXPECT_EQ(*task->result(), 9);
  EXPECT_TRUE(seen.errors.empty());
  for (const std::string& message : seen.messages) ASSERT_EQ(message, "tick");
}

TEST_F(NatsWorkersTest, ClosuresAreRefused) {
  absl::Status scheduled = scheduler_->Schedule([] {});
  EXPECT_EQ(scheduled.code(), absl::StatusCode::kFailedPrecondition) << scheduled;
  absl::StatusOr<std::unique_ptr<Task>> task = Task::Create([](TaskContext&) { return 0; });
  ASSERT_TRUE(task.ok());
  EXPECT_EQ((*task)->Run(Environment()).code(), absl::StatusCode::kFailedPrecondition);
}

TEST(NatsWorkersFactoryTest, BadOptionsAreInvalidArguments) {
  NatsWorkersOptions options;
  options.url = "nats://127.0.0.1:1";
  options.ack_wait = absl::Milliseconds(10);
  EXPECT_EQ(NewNatsWorkersScheduler(options).status().code(), absl::StatusCode::kInvalidArgument);
  std::atomic<bool> stop{true};
  NatsWorkerOptions worker;
  worker.queue = options;
  worker.stop = &stop;
  EXPECT_EQ(RunWorker(worker).code(), absl::StatusCode::kInvalidArgument);  // no scheduler
  absl::StatusOr<std::unique_ptr<Scheduler>> local = NewSchedulerNamed(Defaults().scheduler, 1);
  ASSERT_TRUE(local.ok());
  worker.scheduler = local->get();
  worker.slots = 0;
  EXPECT_EQ(RunWorker(worker).code(), absl::StatusCode::kInvalidArgument);
  worker.slots = 1;
  EXPECT_EQ(RunWorker(worker).code(), absl::StatusCode::kInvalidArgument);  // the ack wait
  worker.queue.ack_wait = absl::Seconds(1);
  EXPECT_EQ(RunWorker(worker).code(), absl::StatusCode::kUnavailable);  // nobody at port 1
}

TEST(NatsWorkersFactoryTest, AnUnreachableBrokerIsUnavailable) {
  NatsWorkersOptions options;
  options.url = "nats://127.0.0.1:1";
  absl::StatusOr<std::unique_ptr<Scheduler>> scheduler = NewNatsWorkersScheduler(options);
  ASSERT_FALSE(scheduler.ok());
  EXPECT_EQ(scheduler.status().code(), absl::StatusCode::kUnavailable) << scheduler.status();
}

}  // namespace
}  // namespace taskrt

int main(int argc, char** argv) {
  taskrt::RegisterSharedEntries();
  std::string url;
  int ack_wait_ms = taskrt::kAckWaitMs;
  for (int i = 1; i < argc; ++i) {
    const absl::string_view argument = argv[i];
    if (absl::StartsWith(argument, taskrt::kWorkerFlag)) {
      url = std::string(argument.substr(std::strlen(taskrt::kWorkerFlag)));
    } else if (absl::StartsWith(argument, taskrt::kAckWaitFlag)) {
      if (!absl::SimpleAtoi(argument.substr(std::strlen(taskrt::kAckWaitFlag)), &ack_wait_ms)) {
        std::fprintf(stderr, "bad %s\n", argv[i]);
        return 2;
      }
    }
  }
  if (!url.empty()) {
    return taskrt::RunTestWorker({.url = url,
                                  .scheduler = std::string(taskrt::Defaults().scheduler),
                                  .ack_wait = absl::Milliseconds(ack_wait_ms)});
  }
  // Registered by owners only: a worker that lacks an entry.
  taskrt::RegisterEntry("test.owner_only", [](taskrt::TaskContext&) { return 0; }).IgnoreError();
  testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
