#ifndef TASKRT_CORE_TRACE_H_
#define TASKRT_CORE_TRACE_H_

// Trace export: what the runtime did, as a Chrome trace-event JSON file
// (opens in Perfetto, ui.perfetto.dev, and in chrome://tracing).
//
// Off by default. A TraceRecorder, once started, is the process's one
// recorder: every thread's events go to it until it stops. It keeps the
// last `capacity` events in a ring, so memory stays bounded however long
// the run; older events are overwritten and counted.
//
// What is recorded, each on the lane (track) of the thread it happened on,
// with the lanes named after the threads (worker threads name themselves):
//   spawn    an instant where a unit of work was scheduled, and a flow
//            arrow from there to the unit's first run
//   run      a slice per stretch a unit ran without giving up its thread
//            (a stackful task has one per stretch between suspensions)
//   park     an instant where a stackful task suspended; a slice where an
//            OS thread slept in a blocking call
//   wake     an instant where a suspended task was made ready, with a flow
//            arrow to the run it woke
//   end      an instant where a stackful task's unit returned
//   send     an instant per message sent on a channel end, with a flow
//   receive  arrow to the instant where the peer received it (or to an
//   unsent   "unsent" instant at the sender, when it took the message
//            back). A send is recorded once the channel took the message,
//            so a receiver on another thread may record its receive a
//            little earlier.
// Units scheduled while no recorder runs are not traced, even if one starts
// while they run; messages of channel pairs created while none runs
// neither.
//
// Cost: while no recorder runs, each hook is one relaxed load of a global
// and a branch. While one runs, each event is a few atomic operations; the
// ring drops an event (and counts it) rather than wait, on the rare wrap
// where two threads would write one slot at once.
//
// Thread safety: Start and StopAndWrite from any one thread at a time; the
// hooks from any thread.
//
// Errors
//   Create       kInvalidArgument for a capacity of 0 or over kMaxCapacity;
//                kResourceExhausted when the ring's memory cannot be had;
//                the system's error (naming the path) when the file cannot
//                be opened for writing, so a bad path fails before any run
//   Start        kFailedPrecondition when a recorder runs already
//   StopAndWrite kFailedPrecondition when this one is not running; the
//                system's error when writing fails

#include <atomic>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "core/work.h"

namespace taskrt {
namespace trace {

class TraceRecorder;

namespace internal {
// The running recorder, or null.
extern std::atomic<TraceRecorder*> running;
}  // namespace internal

// Whether a recorder runs: the hooks' fast check.
inline bool Enabled() {
  return internal::running.load(std::memory_order_relaxed) != nullptr;
}

class TraceRecorder {
 public:
  static constexpr size_t kMaxCapacity = size_t{1} << 26;
  // What the command-line tools keep unless told otherwise.
  static constexpr size_t kDefaultCapacity = size_t{1} << 18;

  static absl::StatusOr<std::unique_ptr<TraceRecorder>> Create(const std::string& path,
                                                               size_t capacity);
  ~TraceRecorder();  // stops without writing if still running

  absl::Status Start();

  // Stops recording, waits for events being recorded to land, and writes
  // the file. Returns how many recorded events it wrote (the names of the
  // process and of the threads come on top).
  absl::StatusOr<size_t> StopAndWrite();

  // Events recorded since Start, overwritten by newer ones, and dropped.
  uint64_t recorded() const;
  uint64_t overwritten() const;
  uint64_t dropped() const;

  const std::string& path() const { return path_; }

  struct Slot;

 private:
  TraceRecorder(std::string path, std::FILE* file, size_t capacity, std::unique_ptr<Slot[]> slots);
  // Stops this recorder if it runs and waits for the events being recorded
  // to land; false when it was not running.
  bool Uninstall();
  friend struct Hooks;

  const std::string path_;
  std::FILE* file_;
  const size_t capacity_;
  std::unique_ptr<Slot[]> slots_;
  std::atomic<uint64_t> next_{0};
  std::atomic<uint64_t> dropped_{0};
};

// Names the calling thread's lane ("work_stealing worker 1"). Kept for the
// life of the process whether or not a recorder runs, so that a recorder
// started later names threads started earlier.
void NameThread(std::string name);

// Hooks for the schedulers. A traced unit's id is never 0.
//
// Records a spawn on the calling thread and returns the unit's id; 0, and
// nothing recorded, when no recorder runs.
uint64_t RecordSpawn();
// Wraps `work` (a spawn now, a run slice around it) when a recorder runs;
// returns it unchanged otherwise.
Work TraceWork(Work work);
// As TraceWork for a Job: null when no recorder runs, else a Job that runs
// `job` inside a run slice. Destroying the wrapper unrun leaves `job` alone
// (a refused ScheduleJob leaves the caller owning `job`).
std::unique_ptr<Job> TraceJob(Job* job);

// A stackful task's run slices, recorded by its scheduler at each switch.
struct TaskTrace {
  uint64_t unit = 0;        // 0: not traced
  uint64_t wake_flow = 0;   // the flow of the wake-up that made it ready
  int64_t slice_start = 0;  // steady-clock nanoseconds
  bool started = false;
  bool finished = false;
};
void BeginSlice(TaskTrace& task);
// Records the slice, then "end" when `task.finished`, else "park".
void EndSlice(TaskTrace& task);
// On the waker's thread, before the task is queued to run.
void RecordWake(TaskTrace& task);

// A slice named "park" around an OS thread's sleep in a blocking call.
class ParkSpan {
 public:
  ParkSpan() : start_(Enabled() ? Now() : 0) {}
  ~ParkSpan() {
    if (start_ != 0) End();
  }
  ParkSpan(const ParkSpan&) = delete;
  ParkSpan& operator=(const ParkSpan&) = delete;

 private:
  static int64_t Now();
  void End();
  int64_t start_;
};

// Channel messages: a pair's ends share flow ids, one per direction.
struct ChannelTrace {
  uint64_t send_flow = 0;     // 0: pair created while no recorder ran
  uint64_t receive_flow = 0;
};
// Gives the two ends of a new pair their flow ids, when a recorder runs.
void LinkChannelPair(ChannelTrace& a, ChannelTrace& b);
// The `sequence`th message (from 1) sent or received on an end.
void RecordSend(const ChannelTrace& end, uint64_t sequence, size_t bytes);
void RecordReceive(const ChannelTrace& end, uint64_t sequence, size_t bytes);
// The `sequence`th message sent, taken back unsent: its flow ends at the
// sender, and the next message sent reuses the sequence number.
void RecordUnsent(const ChannelTrace& end, uint64_t sequence, size_t bytes);

}  // namespace trace
}  // namespace taskrt

#endif  // TASKRT_CORE_TRACE_H_
