#include "core/trace.h"

#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "core/channel_counters.h"
#include "core/trace_testing.h"
#include "gtest/gtest.h"

namespace taskrt::trace {
namespace {

using testing::EventsOf;
using testing::FlowId;
using testing::OfUnit;
using testing::ReadTrace;
using testing::WithId;

std::string TempPath(const std::string& name) { return ::testing::TempDir() + "/" + name; }

std::unique_ptr<TraceRecorder> Started(const std::string& name, size_t capacity) {
  absl::StatusOr<std::unique_ptr<TraceRecorder>> recorder =
      TraceRecorder::Create(TempPath(name), capacity);
  EXPECT_TRUE(recorder.ok()) << recorder.status();
  if (!recorder.ok()) return nullptr;
  EXPECT_TRUE((*recorder)->Start().ok());
  return *std::move(recorder);
}

TEST(TraceRecorder, RefusesCapacitiesOutsideItsRange) {
  for (size_t capacity : {size_t{0}, TraceRecorder::kMaxCapacity + 1}) {
    absl::StatusOr<std::unique_ptr<TraceRecorder>> recorder =
        TraceRecorder::Create(TempPath("capacity.json"), capacity);
    ASSERT_FALSE(recorder.ok());
    EXPECT_EQ(recorder.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(recorder.status().message().find("capacity"), std::string::npos)
        << recorder.status();
  }
}

TEST(TraceRecorder, APathThatCannotBeWrittenFailsAtCreateNamingIt) {
  const std::string path = "/nonexistent-directory-for-taskrt/trace.json";
  absl::StatusOr<std::unique_ptr<TraceRecorder>> recorder = TraceRecorder::Create(path, 16);
  ASSERT_FALSE(recorder.ok());
  EXPECT_NE(recorder.status().message().find(path), std::string::npos) << recorder.status();
  EXPECT_EQ(TraceRecorder::Create("", 16).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(TraceRecorder, OneRecorderRunsAtATime) {
  std::unique_ptr<TraceRecorder> first = Started("first.json", 16);
  ASSERT_NE(first, nullptr);
  absl::StatusOr<std::unique_ptr<TraceRecorder>> second =
      TraceRecorder::Create(TempPath("second.json"), 16);
  ASSERT_TRUE(second.ok());
  absl::Status refused = (*second)->Start();
  EXPECT_EQ(refused.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(refused.message().find("first.json"), std::string::npos) << refused;
  EXPECT_EQ(first->Start().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ((*second)->StopAndWrite().status().code(), absl::StatusCode::kFailedPrecondition);

  ASSERT_TRUE(first->StopAndWrite().ok());
  EXPECT_FALSE(Enabled());
  // Written once: a recorder does not start again.
  EXPECT_EQ(first->Start().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(first->StopAndWrite().status().code(), absl::StatusCode::kFailedPrecondition);
  // The other may run now.
  EXPECT_TRUE((*second)->Start().ok());
  EXPECT_TRUE((*second)->StopAndWrite().ok());
}

TEST(TraceRecorder, NothingIsRecordedWhileNoneRuns) {
  EXPECT_FALSE(Enabled());
  EXPECT_EQ(RecordSpawn(), 0u);
  EXPECT_EQ(TraceJob(nullptr), nullptr);
  ChannelTrace a, b;
  LinkChannelPair(a, b);
  EXPECT_EQ(a.send_flow, 0u);
  EXPECT_EQ(b.receive_flow, 0u);
}

TEST(TraceRecorder, AUnitHasASpawnARunSliceAndAFlowBetweenThemOnANamedLane) {
  std::unique_ptr<TraceRecorder> recorder = Started("unit.json", 1024);
  ASSERT_NE(recorder, nullptr);
  bool ran = false;
  Work work = TraceWork([&ran] { ran = true; });
  std::thread worker([&work] {
    NameThread("lane \"under\" test");
    std::move(work)();
  });
  worker.join();
  EXPECT_TRUE(ran);
  absl::StatusOr<size_t> written = recorder->StopAndWrite();
  ASSERT_TRUE(written.ok()) << written.status();

  const nlohmann::json trace = ReadTrace(recorder->path());
  ASSERT_TRUE(trace.is_object()) << "not JSON: " << recorder->path();
  std::vector<nlohmann::json> spawns = EventsOf(trace, "i", "spawn");
  ASSERT_EQ(spawns.size(), 1u);
  const uint64_t unit = spawns[0]["args"]["unit"].get<uint64_t>();
  EXPECT_NE(unit, 0u);
  EXPECT_EQ(EventsOf(trace, "s", "spawn", WithId(FlowId(unit))).size(), 1u);
  std::vector<nlohmann::json> flow_ends = EventsOf(trace, "f", "spawn", WithId(FlowId(unit)));
  ASSERT_EQ(flow_ends.size(), 1u);
  EXPECT_FALSE(flow_ends[0].contains("bp")) << "binds to the next slice: the run";
  std::vector<nlohmann::json> runs = EventsOf(trace, "X", "run", OfUnit(unit));
  ASSERT_EQ(runs.size(), 1u);
  EXPECT_GE(runs[0]["dur"].get<double>(), 0.0);
  EXPECT_GE(runs[0]["ts"].get<double>(), spawns[0]["ts"].get<double>());
  // The slice is on the worker's lane, which carries its name.
  const uint64_t lane = runs[0]["tid"].get<uint64_t>();
  EXPECT_NE(lane, spawns[0]["tid"].get<uint64_t>());
  EXPECT_EQ(testing::LaneNames(trace, lane),
            std::vector<std::string>{"lane \"under\" test"});
  EXPECT_EQ(trace["otherData"]["recorded"].get<uint64_t>(), 4u);
  EXPECT_EQ(*written, 4u);
  EXPECT_EQ(trace["traceEvents"].size(), 4u + 2u);  // the process's and the lane's names
}

class CountingJob final : public Job {
 public:
  explicit CountingJob(std::atomic<int>* runs) : runs_(runs) {}
  void RunAndDelete() override {
    runs_->fetch_add(1);
    delete this;
  }

 private:
  std::atomic<int>* runs_;
};

TEST(TraceRecorder, ATracedJobRunsItsJobOnceAndAnUnrunWrapperLeavesItAlone) {
  std::unique_ptr<TraceRecorder> recorder = Started("job.json", 64);
  ASSERT_NE(recorder, nullptr);
  std::atomic<int> runs{0};
  auto* job = new CountingJob(&runs);
  std::unique_ptr<Job> traced = TraceJob(job);
  ASSERT_NE(traced, nullptr);
  traced.release()->RunAndDelete();
  EXPECT_EQ(runs.load(), 1);

  // A refused ScheduleJob destroys the wrapper: the caller still owns `kept`.
  auto* kept = new CountingJob(&runs);
  TraceJob(kept).reset();
  kept->RunAndDelete();
  EXPECT_EQ(runs.load(), 2);
  ASSERT_TRUE(recorder->StopAndWrite().ok());
  const nlohmann::json trace = ReadTrace(recorder->path());
  EXPECT_EQ(EventsOf(trace, "i", "spawn").size(), 2u);
  EXPECT_EQ(EventsOf(trace, "X", "run").size(), 1u);
}

TEST(TraceRecorder, TheRingKeepsTheLastEventsAndCountsTheRest) {
  constexpr size_t kCapacity = 8;
  std::unique_ptr<TraceRecorder> recorder = Started("ring.json", kCapacity);
  ASSERT_NE(recorder, nullptr);
  std::vector<uint64_t> units;
  for (int i = 0; i < 20; ++i) units.push_back(RecordSpawn());  // two events each
  ASSERT_TRUE(recorder->StopAndWrite().ok());
  EXPECT_EQ(recorder->recorded(), 40u);
  EXPECT_EQ(recorder->overwritten(), 32u);

  const nlohmann::json trace = ReadTrace(recorder->path());
  ASSERT_TRUE(trace.is_object());
  EXPECT_EQ(trace["otherData"]["overwritten"].get<uint64_t>(), 32u);
  std::vector<nlohmann::json> spawns = EventsOf(trace, "i", "spawn");
  ASSERT_EQ(spawns.size(), kCapacity / 2);
  // The newest four units, oldest first.
  for (size_t i = 0; i < spawns.size(); ++i) {
    EXPECT_EQ(spawns[i]["args"]["unit"].get<uint64_t>(), units[units.size() - spawns.size() + i]);
  }
}

TEST(TraceRecorder, MessagesOfALinkedPairFlowFromSendToReceive) {
  std::unique_ptr<TraceRecorder> recorder = Started("messages.json", 64);
  ASSERT_NE(recorder, nullptr);
  ChannelTrace a, b;
  LinkChannelPair(a, b);
  ASSERT_NE(a.send_flow, 0u);
  EXPECT_EQ(a.send_flow, b.receive_flow);
  EXPECT_EQ(b.send_flow, a.receive_flow);
  EXPECT_NE(a.send_flow, b.send_flow);
  RecordSend(a, 1, 5);
  RecordSend(b, 1, 7);
  RecordReceive(b, 1, 5);
  RecordReceive(a, 1, 7);
  ASSERT_TRUE(recorder->StopAndWrite().ok());

  const nlohmann::json trace = ReadTrace(recorder->path());
  std::vector<nlohmann::json> starts = EventsOf(trace, "s", "message");
  std::vector<nlohmann::json> ends = EventsOf(trace, "f", "message");
  ASSERT_EQ(starts.size(), 2u);
  ASSERT_EQ(ends.size(), 2u);
  EXPECT_NE(starts[0]["id"], starts[1]["id"]);
  EXPECT_EQ(starts[0]["id"], ends[0]["id"]);  // a's message, received at b
  EXPECT_EQ(starts[1]["id"], ends[1]["id"]);
  std::vector<nlohmann::json> sends = EventsOf(trace, "i", "send");
  ASSERT_EQ(sends.size(), 2u);
  EXPECT_EQ(sends[0]["args"]["bytes"].get<uint64_t>(), 5u);
}

// A message taken back (ChannelEnd::TryTakeBackUnsent) is not received, and
// the next one sent reuses its sequence number: its flow must end first, or
// the file holds two starts of one flow id and one end.
TEST(TraceRecorder, AMessageTakenBackEndsItsFlowBeforeTheNextReusesItsNumber) {
  std::unique_ptr<TraceRecorder> recorder = Started("unsent.json", 64);
  ASSERT_NE(recorder, nullptr);
  ChannelEndCounters sender, receiver;
  LinkForTrace(sender, receiver);
  sender.Sent(4);
  sender.Unsent(4);
  sender.Sent(6);
  receiver.Received(6);
  ASSERT_TRUE(recorder->StopAndWrite().ok());

  const nlohmann::json trace = ReadTrace(recorder->path());
  ASSERT_TRUE(trace.is_object());
  std::vector<nlohmann::json> flow_events;
  for (const nlohmann::json& event : trace["traceEvents"]) {
    const std::string phase = event.value("ph", "");
    if (phase == "s" || phase == "f") flow_events.push_back(event);
  }
  // In file order, one id: start, end (taken back), start, end (received).
  ASSERT_EQ(flow_events.size(), 4u);
  for (size_t i = 0; i < flow_events.size(); ++i) {
    EXPECT_EQ(flow_events[i]["ph"], i % 2 == 0 ? "s" : "f") << i;
    EXPECT_EQ(flow_events[i]["id"], flow_events[0]["id"]) << i;
  }
  ASSERT_EQ(EventsOf(trace, "i", "unsent").size(), 1u);
  EXPECT_EQ(EventsOf(trace, "i", "unsent")[0]["args"]["bytes"].get<uint64_t>(), 4u);
}

TEST(TraceRecorder, ThreadsRecordingWhileItStopsLoseNothingButTheirLateEvents) {
  constexpr int kThreads = 4;
  constexpr int kPerThread = 20000;
  std::unique_ptr<TraceRecorder> recorder = Started("threads.json", 1000);
  ASSERT_NE(recorder, nullptr);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([] {
      for (int i = 0; i < kPerThread; ++i) RecordSpawn();
    });
  }
  while (recorder->recorded() < 2000) std::this_thread::yield();
  absl::StatusOr<size_t> written = recorder->StopAndWrite();
  for (std::thread& thread : threads) thread.join();
  ASSERT_TRUE(written.ok()) << written.status();

  const nlohmann::json trace = ReadTrace(recorder->path());
  ASSERT_TRUE(trace.is_object());
  const uint64_t recorded = trace["otherData"]["recorded"].get<uint64_t>();
  const uint64_t dropped = trace["otherData"]["dropped"].get<uint64_t>();
  EXPECT_GE(recorded, 2000u);
  const size_t events = EventsOf(trace, "i", "spawn").size() + EventsOf(trace, "s", "spawn").size();
  // Every slot of the ring is filled, less the events dropped on a collision.
  EXPECT_LE(events, 1000u);
  EXPECT_GE(events + dropped, 1000u);
}

TEST(TraceRecorder, LaneNamesThatAreNotUtf8OrHoldControlCharactersStillGiveJson) {
  std::unique_ptr<TraceRecorder> recorder = Started("names.json", 64);
  ASSERT_NE(recorder, nullptr);
  std::thread worker([] {
    // A stray byte, a truncated sequence, a surrogate, controls and an
    // accented letter that is well-formed.
    NameThread("odd \xff\xfe|\xe2\x82|\xed\xa0\x80|\x01\t\n\\|caf\xc3\xa9");
    RecordSpawn();
  });
  worker.join();
  ASSERT_TRUE(recorder->StopAndWrite().ok());

  const nlohmann::json trace = ReadTrace(recorder->path());
  ASSERT_TRUE(trace.is_object()) << "not JSON: " << recorder->path();
  std::vector<nlohmann::json> names = EventsOf(trace, "M", "thread_name");
  ASSERT_EQ(names.size(), 1u);
  EXPECT_EQ(names[0]["args"]["name"].get<std::string>(),
            "odd \xef\xbf\xbd\xef\xbf\xbd|\xef\xbf\xbd\xef\xbf\xbd|\xef\xbf\xbd\xef\xbf\xbd"
            "\xef\xbf\xbd|\x01\t\n\\|caf\xc3\xa9");
}

TEST(TraceRecorder, ADirectoryAsPathFailsAtCreateNamingIt) {
  const std::string path = ::testing::TempDir();
  absl::StatusOr<std::unique_ptr<TraceRecorder>> recorder = TraceRecorder::Create(path, 16);
  ASSERT_FALSE(recorder.ok());
  EXPECT_NE(recorder.status().message().find(path), std::string::npos) << recorder.status();
}

TEST(TraceRecorder, AFullDiskFailsStopAndWriteWithTheSystemsErrorAndStopsRecording) {
  if (access("/dev/full", W_OK) != 0) {
    GTEST_SKIP() << "no writable /dev/full here to fill a disk with";
  }
  absl::StatusOr<std::unique_ptr<TraceRecorder>> recorder = TraceRecorder::Create("/dev/full", 4096);
  ASSERT_TRUE(recorder.ok()) << recorder.status();
  ASSERT_TRUE((*recorder)->Start().ok());
  for (int i = 0; i < 1000; ++i) RecordSpawn();  // more than stdio buffers
  absl::StatusOr<size_t> written = (*recorder)->StopAndWrite();
  ASSERT_FALSE(written.ok());
  EXPECT_NE(written.status().message().find("/dev/full"), std::string::npos) << written.status();
  EXPECT_NE(written.status().message().find(std::strerror(ENOSPC)), std::string::npos)
      << written.status();
  EXPECT_FALSE(Enabled());

  // A small file fails too, at the close that flushes it.
  recorder = TraceRecorder::Create("/dev/full", 16);
  ASSERT_TRUE(recorder.ok()) << recorder.status();
  ASSERT_TRUE((*recorder)->Start().ok());
  EXPECT_FALSE((*recorder)->StopAndWrite().ok());
}

// Without sanitizers: they reserve address space of their own, which a
// limit on it breaks.
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define TASKRT_TRACE_TEST_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define TASKRT_TRACE_TEST_SANITIZED 1
#endif
#endif

TEST(TraceRecorder, TheLargestCapacityWithoutTheMemoryForItIsAnErrorNotACrash) {
#ifdef TASKRT_TRACE_TEST_SANITIZED
  GTEST_SKIP() << "a sanitizer's shadow memory does not fit under an address-space limit";
#else
  const std::string path = TempPath("largest.json");
  const pid_t child = fork();
  ASSERT_GE(child, 0) << std::strerror(errno);
  if (child == 0) {
    // The ring alone wants gigabytes: give the process far less.
    const rlimit limit{.rlim_cur = rlim_t{1} << 30, .rlim_max = rlim_t{1} << 30};
    if (setrlimit(RLIMIT_AS, &limit) != 0) _exit(3);
    absl::StatusOr<std::unique_ptr<TraceRecorder>> recorder =
        TraceRecorder::Create(path, TraceRecorder::kMaxCapacity);
    if (recorder.ok()) _exit(4);
    _exit(recorder.status().code() == absl::StatusCode::kResourceExhausted ? 0 : 5);
  }
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status)) << "the child died of signal " << WTERMSIG(status);
  EXPECT_EQ(WEXITSTATUS(status), 0);
#endif
}

// Threads that run traced units and record wake-ups and messages without
// pause, until told to stop.
class Recorders {
 public:
  explicit Recorders(int threads) {
    for (int t = 0; t < threads; ++t) {
      threads_.emplace_back([this] {
        ChannelTrace a, b;
        uint64_t sequence = 0;
        while (!stop_.load(std::memory_order_relaxed)) {
          Work work = TraceWork([&] {
            TaskTrace task{.unit = RecordSpawn()};
            RecordWake(task);
            BeginSlice(task);
            EndSlice(task);
          });
          std::unique_ptr<Job> job = TraceJob(&unused_);
          if (a.send_flow == 0) LinkChannelPair(a, b);
          RecordSend(a, ++sequence, 8);
          RecordReceive(b, sequence, 8);
          { ParkSpan park; }
          std::move(work)();
          ran_.fetch_add(1, std::memory_order_relaxed);
        }
      });
    }
  }
  ~Recorders() {
    stop_.store(true);
    for (std::thread& thread : threads_) thread.join();
  }
  uint64_t ran() const { return ran_.load(std::memory_order_relaxed); }

 private:
  class Unused final : public Job {
    void RunAndDelete() override {}
  };
  Unused unused_;
  std::atomic<bool> stop_{false};
  std::atomic<uint64_t> ran_{0};
  std::vector<std::thread> threads_;
};

TEST(TraceRecorder, ARecorderDestroyedUnwrittenWhileThreadsRecordStopsThemSafely) {
  Recorders threads(3);
  for (int round = 0; round < 20; ++round) {
    std::unique_ptr<TraceRecorder> recorder = Started("destroyed.json", 64);  // wraps at once
    ASSERT_NE(recorder, nullptr);
    const uint64_t before = recorder->recorded();
    while (recorder->recorded() < before + 500) std::this_thread::yield();
    recorder.reset();
    EXPECT_FALSE(Enabled());
  }
}

TEST(TraceRecorder, RecordersStartedAndStoppedInALoopWhileThreadsRecordEachWriteJson) {
  Recorders threads(3);
  for (int round = 0; round < 30; ++round) {
    std::unique_ptr<TraceRecorder> recorder = Started("loop.json", round % 2 == 0 ? 7 : 4096);
    ASSERT_NE(recorder, nullptr);
    const uint64_t ran = threads.ran();
    while (threads.ran() < ran + 3) std::this_thread::yield();
    absl::StatusOr<size_t> written = recorder->StopAndWrite();
    ASSERT_TRUE(written.ok()) << written.status();
    const nlohmann::json trace = ReadTrace(recorder->path());
    ASSERT_TRUE(trace.is_object()) << "round " << round << ": not JSON";
    EXPECT_EQ(trace["traceEvents"].size(),
              *written + 1 + EventsOf(trace, "M", "thread_name").size());
  }
}

}  // namespace
}  // namespace taskrt::trace
