// Conformance group: Kore task semantics (core/task.h) for tasks created by
// name (Task::CreateNamed), on every scheduler, those that run entries in
// other processes included (SchedulerCapabilities::runs_named_entries_elsewhere).
//
// The task group's scenarios, with entries that know only what reaches them
// through their channel: no state shared with the test, so each entry may
// run in a worker process of its own. Every process of a run (the owner and
// each worker) links this group, so every one registers the same entries.
// What an entry observes after its owner has gone reaches the test through
// a Witness, a datagram socket on this machine.

#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "core/entry_registry.h"
#include "core/errors.h"
#include "core/task.h"
#include "gtest/gtest.h"
#include "tests/conformance/conformance.h"
#include "tests/conformance/task_fixture.h"

namespace taskrt::conformance {
namespace {

// The next message, or "" when there is none (the owner closed, say).
std::string ReadText(TaskContext& self) {
  char buffer[512];
  absl::StatusOr<size_t> n = self.Read(absl::MakeSpan(buffer));
  if (!n.ok()) return "";
  return std::string(buffer, std::min(*n, sizeof buffer));
}

bool WriteText(TaskContext& self, absl::string_view text) { return self.Write(Bytes(text)).ok(); }

// One datagram socket in Linux's abstract namespace: no file to clean up,
// no path-length limit, reachable from any process on this machine.
sockaddr_un WitnessAddress(absl::string_view name, socklen_t* length) {
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  const size_t size = std::min(name.size(), sizeof address.sun_path - 1);
  std::memcpy(address.sun_path + 1, name.data(), size);  // sun_path[0] == '\0': abstract
  *length = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 + size);
  return address;
}

// Sends `report` to the witness named `name`; false if it could not.
bool TellWitness(absl::string_view name, absl::string_view report) {
  const int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  socklen_t length = 0;
  const sockaddr_un address = WitnessAddress(name, &length);
  const ssize_t sent = sendto(fd, report.data(), report.size(), 0,
                              reinterpret_cast<const sockaddr*>(&address), length);
  close(fd);
  return sent == static_cast<ssize_t>(report.size());
}

// What an entry reports after its owner is gone, when its channel can no
// longer carry it.
class Witness {
 public:
  Witness() {
    static std::atomic<int> next{0};
    name_ = absl::StrCat("taskrt-conformance-witness-", getpid(), "-", next.fetch_add(1));
    fd_ = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    EXPECT_GE(fd_, 0) << std::strerror(errno);
    // The hang guard of a report that never comes, not a speed check.
    timeval guard{.tv_sec = Notification::kHangGuard.count(), .tv_usec = 0};
    EXPECT_EQ(setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &guard, sizeof guard), 0);
    socklen_t length = 0;
    const sockaddr_un address = WitnessAddress(name_, &length);
    EXPECT_EQ(bind(fd_, reinterpret_cast<const sockaddr*>(&address), length), 0)
        << std::strerror(errno);
  }
  ~Witness() { close(fd_); }

  const std::string& name() const { return name_; }

  // The next report; "" (and a failure that says why) if none came within
  // the hang guard. A signal that interrupts the wait does not end it.
  std::string Await() {
    char buffer[512];
    ssize_t n;
    while ((n = recv(fd_, buffer, sizeof buffer, 0)) < 0 && errno == EINTR) {
    }
    if (n < 0) ADD_FAILURE() << "the witness got no report: " << std::strerror(errno);
    return n > 0 ? std::string(buffer, static_cast<size_t>(n)) : "";
  }

 private:
  std::string name_;
  int fd_ = -1;
};

constexpr int kLinesBeforeWitness = 100;

// The entries, registered once in every process that links this group.
void RegisterNamedTaskEntries() {
  // Waits for the owner's word, returns 42.
  RegisterEntry("conformance.release_then_42", [](TaskContext& self) {
    return ReadText(self) == "release" ? 42 : -1;
  }).IgnoreError();
  // A read that times out, then one that does not.
  RegisterEntry("conformance.timed_read", [](TaskContext& self) {
    char buffer[64];
    absl::StatusOr<size_t> early =
        self.ReadUntil(absl::MakeSpan(buffer), absl::Now() + absl::Milliseconds(2));
    const absl::StatusCode timed_out = early.status().code();
    if (!WriteText(self, absl::StrCat("timed out: ", absl::StatusCodeToString(timed_out)))) {
      return 1;
    }
    absl::StatusOr<size_t> later = self.ReadUntil(absl::MakeSpan(buffer), absl::InfiniteFuture());
    if (!later.ok() || std::string(buffer, *later) != "now it comes") return 2;
    return 0;
  }).IgnoreError();
  // Reads "N PREFIX", writes PREFIX0 .. PREFIX(N-1), returns N.
  RegisterEntry("conformance.count", [](TaskContext& self) {
    const std::vector<std::string> words = absl::StrSplit(ReadText(self), absl::MaxSplits(' ', 1));
    int count = 0;
    if (words.size() != 2 || !absl::SimpleAtoi(words[0], &count)) return -2;
    for (int i = 0; i < count; ++i) {
      if (!WriteText(self, absl::StrCat(words[1], i))) return -3;
    }
    return count;
  }).IgnoreError();
  // Kore's pipe_task pattern: far more lines than the channel holds, then
  // the owner's word that all were read. The first message names a witness
  // to tell once the first lines are written, or is "-".
  RegisterEntry("conformance.burst_then_ack", [](TaskContext& self) {
    const std::string witness = ReadText(self);
    for (int i = 0; i < OneLinePerCall::kLines; ++i) {
      if (!WriteText(self, absl::StrCat("line ", i))) return 1;
      if (i == kLinesBeforeWitness && witness != "-" && !TellWitness(witness, "written")) return 3;
    }
    return ReadText(self) == "all read" ? 0 : 2;
  }).IgnoreError();
  RegisterEntry("conformance.progress", [](TaskContext& self) {
    WriteText(self, "progress 50%");
    WriteText(self, "progress 100%");
    return 7;
  }).IgnoreError();
  RegisterEntry("conformance.nothing", [](TaskContext&) { return 0; }).IgnoreError();
  RegisterEntry("conformance.attempt", [](TaskContext& self) { return self.attempt(); })
      .IgnoreError();
  // Writes the process it runs in.
  RegisterEntry("conformance.pid", [](TaskContext& self) {
    return WriteText(self, absl::StrCat(getpid())) ? 0 : 1;
  }).IgnoreError();
  RegisterEntry("conformance.registered_2", [](TaskContext&) { return 2; }).IgnoreError();
  // Truncation and zero-length messages both ways; returns the failed step.
  RegisterEntry("conformance.both_ways", [](TaskContext& self) {
    char buffer[4];
    absl::StatusOr<size_t> n = self.Read(absl::MakeSpan(buffer));
    if (!n.ok() || *n != 10 || std::string(buffer, 4) != "0123") return 1;
    n = self.Read(absl::MakeSpan(buffer));
    if (!n.ok() || *n != 0) return 2;
    n = self.Read(absl::MakeSpan(buffer));
    if (!n.ok() || *n != 2 || std::string(buffer, 2) != "ok") return 3;
    if (!WriteText(self, "echo")) return 4;
    if (!self.Write({}).ok()) return 5;
    return 0;
  }).IgnoreError();
  // Under a 64-byte limit: 65 bytes refused, 64 sent.
  RegisterEntry("conformance.oversized", [](TaskContext& self) {
    if (self.Write(Bytes(std::string(65, 'x'))).code() != absl::StatusCode::kResourceExhausted) {
      return 1;
    }
    return WriteText(self, std::string(64, 'y')) ? 0 : 2;
  }).IgnoreError();
  // Reads a message of the size in the first, sends it back with every byte
  // plus one.
  RegisterEntry("conformance.increment_big", [](TaskContext& self) {
    size_t size = 0;
    if (!absl::SimpleAtoi(ReadText(self), &size)) return 1;
    std::string buffer(size, '\0');
    absl::StatusOr<size_t> n = self.Read(absl::MakeSpan(buffer));
    if (!n.ok() || *n != size) return 2;
    for (char& c : buffer) c = static_cast<char>(c + 1);
    return self.Write(Bytes(buffer)).ok() ? 0 : 3;
  }).IgnoreError();
  // Reads the witness's name, says "reading", waits in a read until the
  // owner is gone, then tells the witness what it saw.
  RegisterEntry("conformance.outlive_owner", [](TaskContext& self) {
    const std::string witness = ReadText(self);
    if (witness.empty() || !WriteText(self, "reading")) return 1;
    char buffer[8];
    const absl::Status read = self.Read(absl::MakeSpan(buffer)).status();
    const bool cancel = self.cancel_requested();
    const absl::Status write = self.Write(Bytes("anyone?"));
    // Nobody reads this result; a report that could not be sent shows as
    // the witness's empty Await().
    return TellWitness(witness, absl::StrCat(absl::StatusCodeToString(read.code()), " ", cancel,
                                             " ", absl::StatusCodeToString(write.code())))
               ? 0
               : 2;
  }).IgnoreError();
  // Says "started", then runs until asked to cancel; returns 99.
  RegisterEntry("conformance.until_cancelled", [](TaskContext& self) {
    WriteText(self, "started");
    while (!self.cancel_requested()) {
    }
    return 99;
  }).IgnoreError();
}

[[maybe_unused]] const bool kRegistered = (RegisterNamedTaskEntries(), true);

class NamedTaskConformance : public TaskFixture {
 protected:
  static std::unique_ptr<Task> Named(absl::string_view name) {
    absl::StatusOr<std::unique_ptr<Task>> task = Task::CreateNamed(name);
    EXPECT_TRUE(task.ok()) << task.status();
    return task.ok() ? *std::move(task) : nullptr;
  }


  static std::string ReadOne(Task& task) {
    char buffer[256];
    absl::StatusOr<size_t> n = task.ReadUntil(absl::MakeSpan(buffer), HangGuardDeadline());
    EXPECT_TRUE(n.ok()) << n.status();
    return n.ok() ? std::string(buffer, std::min(*n, sizeof buffer)) : "";
  }
};

TEST_P(NamedTaskConformance, GoesFromCreatedToRunningToFinishedWithAResult) {
  std::unique_ptr<Task> task = Named("conformance.release_then_42");
  ASSERT_NE(task, nullptr);
  EXPECT_EQ(task->state(), TaskState::kCreated);
  EXPECT_EQ(task->result().status().code(), absl::StatusCode::kFailedPrecondition);
  ASSERT_TRUE(task->Run(Env()).ok());
  EXPECT_EQ(task->state(), TaskState::kRunning);
  EXPECT_EQ(task->result().status().code(), absl::StatusCode::kFailedPrecondition);
  ASSERT_TRUE(task->Write(Bytes("release")).ok());
  ASSERT_TRUE(PumpUntil([&] { return task->finished(); }));
  EXPECT_EQ(task->state(), TaskState::kFinished);
  ASSERT_TRUE(task->result().ok()) << task->result().status();
  EXPECT_EQ(*task->result(), 42);
}

TEST_P(NamedTaskConformance, AnUnknownNameIsNotFoundBeforeAnythingRuns) {
  absl::StatusOr<std::unique_ptr<Task>> task = Task::CreateNamed("conformance.no_such_entry");
  ASSERT_FALSE(task.ok());
  EXPECT_EQ(task.status().code(), absl::StatusCode::kNotFound) << task.status();
  EXPECT_NE(task.status().message().find("conformance.no_such_entry"), std::string::npos)
      << "the error names the entry: " << task.status();
}

// The first run of an entry is attempt 1, wherever it runs.
TEST_P(NamedTaskConformance, AFirstRunIsAttemptOne) {
  std::unique_ptr<Task> task = Named("conformance.attempt");
  ASSERT_TRUE(task->Run(Env()).ok());
  ASSERT_TRUE(PumpUntil([&] { return task->finished(); }));
  EXPECT_EQ(*task->result(), 1);
}

// A closure cannot leave the process: where entries run elsewhere it is
// refused and the task stays as it was; elsewhere it runs.
TEST_P(NamedTaskConformance, AClosureRunsOnlyWhereEntriesRunHere) {
  absl::StatusOr<std::unique_ptr<Task>> task = Task::Create([](TaskContext&) { return 5; });
  ASSERT_TRUE(task.ok()) << task.status();
  EXPECT_EQ((*task)->entry_name(), "");
  const absl::Status run = (*task)->Run(Env());
  if (scheduler_->capabilities().runs_named_entries_elsewhere) {
    EXPECT_EQ(run.code(), absl::StatusCode::kFailedPrecondition) << run;
    EXPECT_EQ((*task)->state(), TaskState::kCreated);
  } else {
    ASSERT_TRUE(run.ok()) << run;
    ASSERT_TRUE(PumpUntil([&] { return (*task)->finished(); }));
    EXPECT_EQ(*(*task)->result(), 5);
  }
}

// An entry runs in this process unless the scheduler runs entries elsewhere.
TEST_P(NamedTaskConformance, AnEntryRunsWhereTheSchedulerSays) {
  std::unique_ptr<Task> task = Named("conformance.pid");
  ASSERT_TRUE(task->Run(Env()).ok());
  const std::string pid = ReadOne(*task);
  if (scheduler_->capabilities().runs_named_entries_elsewhere) {
    EXPECT_NE(pid, absl::StrCat(getpid())) << "the entry ran in the owner's process";
  } else {
    EXPECT_EQ(pid, absl::StrCat(getpid()));
  }
  ASSERT_TRUE(PumpUntil([&] { return task->finished(); }));
  EXPECT_EQ(*task->result(), 0);
}

// CreateNamed(name, local_entry): the local entry where entries run here,
// the registered one where they run elsewhere.
TEST_P(NamedTaskConformance, ALocalEntryRunsOnlyWhereEntriesRunHere) {
  absl::StatusOr<std::unique_ptr<Task>> task =
      Task::CreateNamed("conformance.registered_2", [](TaskContext&) { return 1; });
  ASSERT_TRUE(task.ok()) << task.status();
  EXPECT_EQ((*task)->entry_name(), "conformance.registered_2");
  ASSERT_TRUE((*task)->Run(Env()).ok());
  ASSERT_TRUE(PumpUntil([&] { return (*task)->finished(); }));
  EXPECT_EQ(*(*task)->result(), scheduler_->capabilities().runs_named_entries_elsewhere ? 2 : 1);
}

TEST_P(NamedTaskConformance, TimedOutReadsTakeNothingOnEitherSide) {
  std::unique_ptr<Task> task = Named("conformance.timed_read");
  ASSERT_TRUE(task->Run(Env()).ok());
  char buffer[64];
  absl::StatusOr<size_t> first = task->ReadUntil(absl::MakeSpan(buffer), HangGuardDeadline());
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ(std::string(buffer, *first), "timed out: DEADLINE_EXCEEDED");
  // The entry now waits for the owner: nothing is on its way here.
  EXPECT_EQ(task->ReadUntil(absl::MakeSpan(buffer), absl::InfinitePast()).status().code(),
            absl::StatusCode::kDeadlineExceeded);
  ASSERT_TRUE(task->WriteUntil(Bytes("now it comes"), HangGuardDeadline()).ok());
  ASSERT_TRUE(PumpUntil([&] { return task->finished(); }));
  EXPECT_EQ(*task->result(), 0);
}

TEST_P(NamedTaskConformance, CallbackSeesEveryMessageAndExactlyOneFinalCallLast) {
  constexpr int kMessages = 1000;
  std::unique_ptr<Task> task = Named("conformance.count");
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
  ASSERT_TRUE(task->Write(Bytes(absl::StrCat(kMessages, " m"))).ok());
  ASSERT_TRUE(PumpUntil([&] { return final_calls > 0; }));
  // Pump a little more: nothing may follow the final call.
  bool marker = false;
  ASSERT_TRUE(loop_->Post([&] { marker = true; }).ok());
  ASSERT_TRUE(PumpUntil([&] { return marker; }));

  EXPECT_EQ(final_calls, 1);
  EXPECT_FALSE(call_after_final);
  ASSERT_EQ(received.size(), static_cast<size_t>(kMessages)) << "calls: " << calls;
  for (int i = 0; i < kMessages; ++i) ASSERT_EQ(received[i], absl::StrCat("m", i));
  EXPECT_EQ(*task->result(), kMessages);
}

TEST_P(NamedTaskConformance, CallbackThatReadsOneMessagePerCallLosesNothing) {
  constexpr int kMessages = 50;
  std::unique_ptr<Task> task = Named("conformance.count");
  bool finished_seen = false;
  int read_by_calls = 0;
  ASSERT_TRUE(task->BindCallback([&](Task& t) {
    char buffer[16];
    if (t.TryRead(absl::MakeSpan(buffer)).ok()) ++read_by_calls;  // at most one per call
    if (t.finished()) finished_seen = true;
  }).ok());
  ASSERT_TRUE(task->Run(Env()).ok());
  ASSERT_TRUE(task->Write(Bytes(absl::StrCat(kMessages, " "))).ok());
  ASSERT_TRUE(PumpUntil([&] { return finished_seen; }));
  // Whatever the calls left unread is still there, in order, then the end.
  std::vector<std::string> rest;
  Drain(*task, &rest);
  EXPECT_EQ(read_by_calls + static_cast<int>(rest.size()), kMessages);
  const int first = kMessages - static_cast<int>(rest.size());
  for (size_t i = 0; i < rest.size(); ++i) {
    EXPECT_EQ(rest[i], absl::StrCat(first + static_cast<int>(i)));
  }
  char byte;
  EXPECT_EQ(task->Read(absl::MakeSpan(&byte, 1)).status().code(), absl::StatusCode::kOutOfRange);
  EXPECT_EQ(*task->result(), kMessages);
}

TEST_P(NamedTaskConformance, CallbackReadingOneMessagePerCallKeepsUpWithABurstingWriter) {
  std::unique_ptr<Task> task = Named("conformance.burst_then_ack");
  Task* raw = task.get();
  OneLinePerCall reader(&raw);
  ASSERT_TRUE(task->BindCallback([&reader](Task& t) { reader.ReadOne(t); }).ok());
  ASSERT_TRUE(task->Run(Env()).ok());
  ASSERT_TRUE(task->Write(Bytes("-")).ok());
  ASSERT_TRUE(PumpUntil([&] { return reader.finished_calls > 0; })) << reader.Progress();
  EXPECT_EQ(reader.read, OneLinePerCall::kLines);
  EXPECT_EQ(reader.out_of_order, 0);
  EXPECT_EQ(reader.finished_calls, 1);
  EXPECT_EQ(*task->result(), 0);
}

TEST_P(NamedTaskConformance, RequestReadingOneMessagePerResumeKeepsUpWithABurstingWriter) {
  std::unique_ptr<Task> task = Named("conformance.burst_then_ack");
  Task* raw = task.get();
  auto reader = std::make_shared<OneLinePerCall>(&raw);
  ASSERT_TRUE(task->BindRequest(reader).ok());
  ASSERT_TRUE(task->Run(Env()).ok());
  ASSERT_TRUE(task->Write(Bytes("-")).ok());
  ASSERT_TRUE(PumpUntil([&] { return reader->finished_calls > 0; })) << reader->Progress();
  EXPECT_EQ(reader->read, OneLinePerCall::kLines);
  EXPECT_EQ(reader->out_of_order, 0);
  EXPECT_EQ(reader->finished_calls, 1);
  EXPECT_EQ(*task->result(), 0);
}

// A binding made after Run() still gets what arrived while nothing was
// bound: the entry has written its first lines before the binding is made.
TEST_P(NamedTaskConformance, BindingAfterRunSeesWhatArrivedBefore) {
  Witness witness;
  std::unique_ptr<Task> task = Named("conformance.burst_then_ack");
  Task* raw = task.get();
  OneLinePerCall reader(&raw);
  ASSERT_TRUE(task->Run(Env()).ok());
  ASSERT_TRUE(task->Write(Bytes(witness.name())).ok());
  ASSERT_EQ(witness.Await(), "written");
  for (int i = 0; i < 10; ++i) ASSERT_TRUE(loop_->RunOnce(absl::ZeroDuration()).ok());
  ASSERT_TRUE(task->BindCallback([&reader](Task& t) { reader.ReadOne(t); }).ok());
  ASSERT_TRUE(PumpUntil([&] { return reader.finished_calls > 0; })) << reader.Progress();
  EXPECT_EQ(reader.read, OneLinePerCall::kLines);
  EXPECT_EQ(reader.out_of_order, 0);
  EXPECT_EQ(*task->result(), 0);
}

TEST_P(NamedTaskConformance, BoundRequestIsResumedOnWritesAndOnceWhenFinished) {
  std::unique_ptr<Task> task = Named("conformance.progress");
  Task* raw = task.get();
  auto request = std::make_shared<CountingRequest>(&raw);
  ASSERT_TRUE(task->BindRequest(request).ok());
  ASSERT_TRUE(task->Run(Env()).ok());
  ASSERT_TRUE(PumpUntil([&] { return request->finished_resumes > 0; }));
  EXPECT_EQ(request->finished_resumes, 1);
  EXPECT_EQ(request->messages, (std::vector<std::string>{"progress 50%", "progress 100%"}));
  EXPECT_EQ(*task->result(), 7);
}

TEST_P(NamedTaskConformance, BindingBothACallbackAndARequestIsRefused) {
  std::unique_ptr<Task> with_callback = Named("conformance.nothing");
  ASSERT_TRUE(with_callback->BindCallback([](Task&) {}).ok());
  auto request = std::make_shared<CountingRequest>(nullptr);
  absl::Status refused = with_callback->BindRequest(request);
  EXPECT_EQ(refused.code(), absl::StatusCode::kFailedPrecondition) << refused;

  std::unique_ptr<Task> with_request = Named("conformance.nothing");
  ASSERT_TRUE(with_request->BindRequest(request).ok());
  refused = with_request->BindCallback([](Task&) {});
  EXPECT_EQ(refused.code(), absl::StatusCode::kFailedPrecondition) << refused;
}

TEST_P(NamedTaskConformance, ChannelWorksBothWaysWithTruncationAndZeroLength) {
  std::unique_ptr<Task> task = Named("conformance.both_ways");
  ASSERT_TRUE(task->Run(Env()).ok());
  ASSERT_TRUE(task->Write(Bytes("0123456789")).ok());
  ASSERT_TRUE(task->Write({}).ok());
  ASSERT_TRUE(task->Write(Bytes("ok")).ok());
  char buffer[16];
  absl::StatusOr<size_t> n = task->ReadUntil(absl::MakeSpan(buffer), HangGuardDeadline());
  ASSERT_TRUE(n.ok()) << n.status();
  EXPECT_EQ(std::string(buffer, *n), "echo");
  n = task->ReadUntil(absl::MakeSpan(buffer), HangGuardDeadline());
  ASSERT_TRUE(n.ok()) << n.status();
  EXPECT_EQ(*n, 0u);
  ASSERT_TRUE(PumpUntil([&] { return task->finished(); }));
  EXPECT_EQ(*task->result(), 0) << "the entry's checks failed at step " << *task->result();
  // Closed and drained: an error, never an abort.
  n = task->Read(absl::MakeSpan(buffer));
  EXPECT_EQ(n.status().code(), absl::StatusCode::kOutOfRange) << n.status();
  absl::Status late = task->Write(Bytes("late"));
  EXPECT_EQ(late.code(), absl::StatusCode::kFailedPrecondition) << late;
}

TEST_P(NamedTaskConformance, OversizedMessagesAreRefusedOnBothSides) {
  std::unique_ptr<Task> task = Named("conformance.oversized");
  ASSERT_TRUE(task->Run(Env(/*max_message_size=*/64)).ok());
  absl::Status refused = task->Write(Bytes(std::string(100, 'z')));
  EXPECT_EQ(refused.code(), absl::StatusCode::kResourceExhausted) << refused;
  char buffer[128];
  absl::StatusOr<size_t> n = task->ReadUntil(absl::MakeSpan(buffer), HangGuardDeadline());
  ASSERT_TRUE(n.ok()) << n.status();
  EXPECT_EQ(std::string(buffer, *n), std::string(64, 'y')) << "only the allowed message arrived";
  ASSERT_TRUE(PumpUntil([&] { return task->finished(); }));
  EXPECT_EQ(*task->result(), 0);
}

TEST_P(NamedTaskConformance, MessagesBiggerThanTheSocketBufferPassThroughTasks) {
  constexpr size_t kSize = 2 << 20;
  std::unique_ptr<Task> task = Named("conformance.increment_big");
  ASSERT_TRUE(task->Run(Env(kSize)).ok());
  ASSERT_TRUE(task->Write(Bytes(absl::StrCat(kSize))).ok());
  std::string big(kSize, '\0');
  for (size_t i = 0; i < kSize; ++i) big[i] = static_cast<char>(i * 31);
  ASSERT_TRUE(task->Write(Bytes(big)).ok());
  std::string back(kSize, '\0');
  absl::StatusOr<size_t> n = task->ReadUntil(absl::MakeSpan(back), HangGuardDeadline());
  ASSERT_TRUE(n.ok()) << n.status();
  ASSERT_EQ(*n, kSize);
  for (size_t i = 0; i < kSize; ++i) {
    ASSERT_EQ(back[i], static_cast<char>(static_cast<char>(i * 31) + 1)) << "byte " << i;
  }
  ASSERT_TRUE(PumpUntil([&] { return task->finished(); }));
  EXPECT_EQ(*task->result(), 0);
}

TEST_P(NamedTaskConformance, ManyTasksWritingToOneOwner) {
  constexpr int kTasks = 40;
  constexpr int kMessages = 100;
  std::vector<std::unique_ptr<Task>> tasks;
  std::vector<std::vector<std::string>> received(kTasks);
  int finished = 0;
  for (int t = 0; t < kTasks; ++t) {
    tasks.push_back(Named("conformance.count"));
    ASSERT_TRUE(tasks.back()->BindCallback([&, t](Task& task) {
      Drain(task, &received[t]);
      if (task.finished()) ++finished;
    }).ok());
  }
  for (int t = 0; t < kTasks; ++t) {
    ASSERT_TRUE(tasks[t]->Run(Env()).ok());
    ASSERT_TRUE(tasks[t]->Write(Bytes(absl::StrCat(kMessages, " ", t, "."))).ok());
  }
  ASSERT_TRUE(PumpUntil([&] { return finished == kTasks; }));
  for (int t = 0; t < kTasks; ++t) {
    ASSERT_EQ(received[t].size(), static_cast<size_t>(kMessages)) << "task " << t;
    for (int i = 0; i < kMessages; ++i) ASSERT_EQ(received[t][i], absl::StrCat(t, ".", i));
    EXPECT_EQ(*tasks[t]->result(), kMessages);
  }
}

TEST_P(NamedTaskConformance, DestroyingARunningTaskCancelsAndDetachesIt) {
  Witness witness;
  std::unique_ptr<Task> task = Named("conformance.outlive_owner");
  bool destroyed = false;
  ASSERT_TRUE(task->BindCallback([&destroyed](Task&) {
    if (destroyed) ADD_FAILURE() << "callback after destroy";
  }).ok());
  ASSERT_TRUE(task->Run(Env()).ok());
  ASSERT_TRUE(task->Write(Bytes(witness.name())).ok());
  char buffer[16];
  absl::StatusOr<size_t> reading = task->ReadUntil(absl::MakeSpan(buffer), HangGuardDeadline());
  ASSERT_TRUE(reading.ok()) << reading.status();
  ASSERT_EQ(std::string(buffer, *reading), "reading");
  destroyed = true;
  task.reset();
  // The read it waited in ended; it was asked to cancel; its writes fail.
  EXPECT_EQ(witness.Await(), "OUT_OF_RANGE 1 FAILED_PRECONDITION");
  // The loop has nothing left to call for it.
  for (int i = 0; i < 10; ++i) ASSERT_TRUE(loop_->RunOnce(absl::ZeroDuration()).ok());
}

TEST_P(NamedTaskConformance, DestroyingBeforeRunAndAfterFinishIsSafe) {
  std::unique_ptr<Task> never_run = Named("conformance.nothing");
  never_run.reset();

  std::unique_ptr<Task> task = Named("conformance.nothing");
  ASSERT_TRUE(task->Run(Env()).ok());
  ASSERT_TRUE(PumpUntil([&] { return task->finished(); }));
  task.reset();
  ASSERT_TRUE(loop_->RunOnce(absl::ZeroDuration()).ok());
}

TEST_P(NamedTaskConformance, DestroyingFromItsOwnFinalCallbackIsSafe) {
  std::unique_ptr<Task> task = Named("conformance.progress");
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

TEST_P(NamedTaskConformance, EntrySeesRequestCancel) {
  std::unique_ptr<Task> task = Named("conformance.until_cancelled");
  ASSERT_TRUE(task->Run(Env()).ok());
  EXPECT_EQ(ReadOne(*task), "started");
  EXPECT_FALSE(task->cancel_requested());
  task->RequestCancel();
  EXPECT_TRUE(task->cancel_requested());
  ASSERT_TRUE(PumpUntil([&] { return task->finished(); }));
  EXPECT_EQ(*task->result(), 99);
}

TEST_P(NamedTaskConformance, MisuseGetsErrors) {
  EXPECT_EQ(Task::CreateNamed("conformance.nothing", TaskEntry()).status().code(),
            absl::StatusCode::kInvalidArgument);

  std::unique_ptr<Task> task = Named("conformance.nothing");
  char buffer[4];
  EXPECT_EQ(task->Write(Bytes("early")).code(), absl::StatusCode::kFailedPrecondition);
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

TEST_P(NamedTaskConformance, RunOnAShutDownSchedulerFailsAndLeavesTheTaskCreated) {
  ASSERT_TRUE(scheduler_->Shutdown().ok());
  std::unique_ptr<Task> task = Named("conformance.nothing");
  absl::Status status = task->Run(Env());
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition) << status;
  EXPECT_EQ(task->state(), TaskState::kCreated);
}

// Shutdown() refuses new tasks, not those already started.
TEST_P(NamedTaskConformance, ATaskRunBeforeShutdownStillFinishes) {
  std::unique_ptr<Task> task = Named("conformance.progress");
  ASSERT_TRUE(task->Run(Env()).ok());
  ASSERT_TRUE(scheduler_->Shutdown().ok());
  ASSERT_TRUE(PumpUntil([&] { return task->finished(); }));
  EXPECT_EQ(*task->result(), 7);
  std::vector<std::string> messages;
  Drain(*task, &messages);
  EXPECT_EQ(messages, (std::vector<std::string>{"progress 50%", "progress 100%"}));
}

INSTANTIATE_TEST_SUITE_P(Conformance, NamedTaskConformance, ::testing::ValuesIn(WorkerCounts()),
                         WorkerCountName);

}  // namespace
}  // namespace taskrt::conformance
