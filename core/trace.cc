#include "core/trace.h"

#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <new>
#include <thread>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/errors.h"
#include "core/mutex.h"

namespace taskrt {
namespace trace {
namespace internal {
std::atomic<TraceRecorder*> running{nullptr};
}  // namespace internal

namespace {

struct Event {
  const char* name = nullptr;
  const char* category = nullptr;
  int64_t ts = 0;   // steady-clock nanoseconds
  int64_t dur = 0;  // 'X' only
  uint64_t id = 0;  // flows
  const char* arg_name = nullptr;  // one numeric argument, or none
  uint64_t arg = 0;
  uint32_t tid = 0;
  char phase = 0;  // 'i' instant, 'X' slice, 's' flow start, 'f' flow end
};

// Recorders' writers in progress: StopAndWrite waits for them to finish
// before it reads the ring (and before the ring can be freed).
std::atomic<uint64_t> writers_in_flight{0};
// Unit and flow ids; 0 is never one.
std::atomic<uint64_t> next_id{1};
// Message flow ids: the high bit apart from units and wake-ups, the
// direction's id, then the message's sequence number.
constexpr uint64_t kMessageFlowBit = uint64_t{1} << 63;
constexpr int kSequenceBits = 24;

int64_t SteadyNanos() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

uint32_t ThreadId() {
  thread_local const uint32_t tid = static_cast<uint32_t>(syscall(SYS_gettid));
  return tid;
}

uint64_t NewId() { return next_id.fetch_add(1, std::memory_order_relaxed); }

struct ThreadNames {
  Mutex mu;
  absl::flat_hash_map<uint32_t, std::string> names ABSL_GUARDED_BY(mu);
};
ThreadNames& Names() {
  static ThreadNames* names = new ThreadNames;  // never destroyed: threads name themselves late
  return *names;
}

// The length of the well-formed UTF-8 sequence at text[i], or 0.
size_t Utf8SequenceAt(const std::string& text, size_t i) {
  const auto byte = [&](size_t k) { return static_cast<unsigned char>(text[k]); };
  const unsigned char lead = byte(i);
  if (lead < 0x80) return 1;
  size_t length;
  uint32_t code;
  uint32_t least;
  if ((lead & 0xE0) == 0xC0) {
    length = 2, code = lead & 0x1F, least = 0x80;
  } else if ((lead & 0xF0) == 0xE0) {
    length = 3, code = lead & 0x0F, least = 0x800;
  } else if ((lead & 0xF8) == 0xF0) {
    length = 4, code = lead & 0x07, least = 0x10000;
  } else {
    return 0;
  }
  if (text.size() - i < length) return 0;
  for (size_t k = 1; k < length; ++k) {
    if ((byte(i + k) & 0xC0) != 0x80) return 0;
    code = (code << 6) | (byte(i + k) & 0x3F);
  }
  if (code < least || code > 0x10FFFF || (code >= 0xD800 && code <= 0xDFFF)) return 0;
  return length;
}

// A JSON string's contents. JSON is UTF-8: a byte that is not part of a
// well-formed sequence becomes U+FFFD, or readers refuse the whole file.
void AppendEscaped(std::string& out, const std::string& text) {
  for (size_t i = 0; i < text.size();) {
    const unsigned char c = static_cast<unsigned char>(text[i]);
    const size_t length = Utf8SequenceAt(text, i);
    if (length == 0) {
      out += "\\ufffd";
      ++i;
    } else if (c == '"' || c == '\\') {
      out.push_back('\\');
      out.push_back(static_cast<char>(c));
      ++i;
    } else if (c < 0x20) {
      absl::StrAppendFormat(&out, "\\u%04x", c);
      ++i;
    } else {
      out.append(text, i, length);
      i += length;
    }
  }
}

}  // namespace

struct TraceRecorder::Slot {
  std::atomic<bool> busy{false};
  uint64_t order = 0;  // 1 + the event's place in recording order; 0: empty
  Event event;
};

// Friend of TraceRecorder: the one way events get in.
struct Hooks {
  static void Record(const Event& event) {
    writers_in_flight.fetch_add(1, std::memory_order_seq_cst);
    if (TraceRecorder* recorder = internal::running.load(std::memory_order_seq_cst)) {
      Put(*recorder, event);
    }
    writers_in_flight.fetch_sub(1, std::memory_order_release);
  }

  static void Put(TraceRecorder& recorder, const Event& event) {
    const uint64_t order = recorder.next_.fetch_add(1, std::memory_order_relaxed) + 1;
    TraceRecorder::Slot& slot = recorder.slots_[(order - 1) % recorder.capacity_];
    if (slot.busy.exchange(true, std::memory_order_acquire)) {
      recorder.dropped_.fetch_add(1, std::memory_order_relaxed);
      return;
    }
    if (slot.order < order) {
      slot.order = order;
      slot.event = event;
    } else {
      recorder.dropped_.fetch_add(1, std::memory_order_relaxed);  // a newer one landed first
    }
    slot.busy.store(false, std::memory_order_release);
  }
};

namespace {

void Record(char phase, const char* category, const char* name, int64_t ts, uint64_t id = 0,
            const char* arg_name = nullptr, uint64_t arg = 0, int64_t dur = 0) {
  Event event;
  event.phase = phase;
  event.category = category;
  event.name = name;
  event.ts = ts;
  event.dur = dur;
  event.id = id;
  event.arg_name = arg_name;
  event.arg = arg;
  event.tid = ThreadId();
  Hooks::Record(event);
}

// A unit's run slice on an OS thread, with the spawn flow's end at its start.
class UnitRun {
 public:
  explicit UnitRun(uint64_t unit) : unit_(unit), start_(SteadyNanos()) {
    Record('f', "task", "spawn", start_, unit_);
  }
  ~UnitRun() {
    const int64_t end = SteadyNanos();
    Record('X', "task", "run", start_, 0, "unit", unit_, end - start_);
  }
  UnitRun(const UnitRun&) = delete;
  UnitRun& operator=(const UnitRun&) = delete;

 private:
  const uint64_t unit_;
  const int64_t start_;
};

class TracedJob final : public Job {
 public:
  TracedJob(Job* inner, uint64_t unit) : inner_(inner), unit_(unit) {}
  void RunAndDelete() override {
    {
      UnitRun run(unit_);
      inner_->RunAndDelete();
    }
    delete this;
  }

 private:
  Job* const inner_;
  const uint64_t unit_;
};

uint64_t MessageFlow(uint64_t direction, uint64_t sequence) {
  return kMessageFlowBit | (direction << kSequenceBits) |
         (sequence & ((uint64_t{1} << kSequenceBits) - 1));
}

// A message's instant `name` and its arrow's start or end (`phase`) on the
// calling thread, when its pair was linked (`direction` is not 0).
void RecordMessage(const char* name, char phase, uint64_t direction, uint64_t sequence,
                   size_t bytes) {
  if (direction == 0 || !Enabled()) return;
  const int64_t now = SteadyNanos();
  Record('i', "channel", name, now, 0, "bytes", bytes);
  Record(phase, "channel", "message", now, MessageFlow(direction, sequence));
}

}  // namespace

absl::StatusOr<std::unique_ptr<TraceRecorder>> TraceRecorder::Create(const std::string& path,
                                                                     size_t capacity) {
  if (capacity == 0 || capacity > kMaxCapacity) {
    return absl::InvalidArgumentError(absl::StrCat("trace: a capacity of ", capacity,
                                                   " events; give 1 to ", kMaxCapacity));
  }
  if (path.empty()) return absl::InvalidArgumentError("trace: an empty file path");
  // Refused as an error, not a crash: the capacity is the user's flag.
  std::unique_ptr<Slot[]> slots(new (std::nothrow) Slot[capacity]);
  if (slots == nullptr) {
    return absl::ResourceExhaustedError(
        absl::StrCat("trace: no memory for a ring of ", capacity, " events (",
                     capacity * sizeof(Slot), " bytes); ask for fewer"));
  }
  std::FILE* file = std::fopen(path.c_str(), "w");
  if (file == nullptr) {
    return ErrnoError(absl::StrCat("trace: cannot write ", path), errno);
  }
  return std::unique_ptr<TraceRecorder>(
      new TraceRecorder(path, file, capacity, std::move(slots)));
}

TraceRecorder::TraceRecorder(std::string path, std::FILE* file, size_t capacity,
                             std::unique_ptr<Slot[]> slots)
    : path_(std::move(path)), file_(file), capacity_(capacity), slots_(std::move(slots)) {}

TraceRecorder::~TraceRecorder() {
  Uninstall();
  if (file_ != nullptr) std::fclose(file_);
}

bool TraceRecorder::Uninstall() {
  TraceRecorder* self = this;
  if (!internal::running.compare_exchange_strong(self, nullptr, std::memory_order_seq_cst)) {
    return false;
  }
  while (writers_in_flight.load(std::memory_order_seq_cst) != 0) std::this_thread::yield();
  return true;
}

absl::Status TraceRecorder::Start() {
  if (file_ == nullptr) {
    return absl::FailedPreconditionError(
        absl::StrCat("trace: the recorder for ", path_, " has written its file already"));
  }
  TraceRecorder* none = nullptr;
  if (!internal::running.compare_exchange_strong(none, this, std::memory_order_seq_cst)) {
    return absl::FailedPreconditionError(
        none == this ? "trace: this recorder runs already"
                     : absl::StrCat("trace: another recorder runs (", none->path_,
                                    "); one at a time per process"));
  }
  return absl::OkStatus();
}

uint64_t TraceRecorder::recorded() const { return next_.load(std::memory_order_relaxed); }
uint64_t TraceRecorder::overwritten() const {
  const uint64_t n = recorded();
  return n > capacity_ ? n - capacity_ : 0;
}
uint64_t TraceRecorder::dropped() const { return dropped_.load(std::memory_order_relaxed); }

absl::StatusOr<size_t> TraceRecorder::StopAndWrite() {
  if (!Uninstall()) {
    return absl::FailedPreconditionError(
        absl::StrCat("trace: the recorder for ", path_, " is not running"));
  }

  // The ring holds the events numbered first..last (from 1), each in its
  // slot unless a collision dropped it: read in that order, no sort needed.
  const uint64_t last = recorded();
  const uint64_t first = last > capacity_ ? last - capacity_ + 1 : 1;
  const auto landed = [this](uint64_t order) -> const Slot* {
    const Slot& slot = slots_[(order - 1) % capacity_];
    // No writer is left; the acquire pairs with the last writer's release.
    (void)slot.busy.load(std::memory_order_acquire);
    return slot.order == order ? &slot : nullptr;
  };

  // Written in pieces: a whole ring's text at once would need several
  // times the ring's memory.
  constexpr size_t kPiece = size_t{1} << 20;
  std::FILE* file = std::exchange(file_, nullptr);
  int write_errno = 0;
  std::string out;
  const auto flush = [&] {
    if (write_errno == 0 && std::fwrite(out.data(), 1, out.size(), file) != out.size()) {
      write_errno = errno != 0 ? errno : EIO;
    }
    out.clear();
  };

  const int pid = static_cast<int>(getpid());
  absl::StrAppend(&out, "{\"displayTimeUnit\":\"ns\",\"otherData\":{\"recorded\":", last,
                  ",\"overwritten\":", overwritten(), ",\"dropped\":", dropped(),
                  ",\"capacity\":", capacity_, "},\n\"traceEvents\":[\n");
  absl::StrAppendFormat(&out,
                        "{\"ph\":\"M\",\"name\":\"process_name\",\"pid\":%d,\"tid\":%d,"
                        "\"args\":{\"name\":\"taskrt\"}}",
                        pid, pid);
  absl::flat_hash_set<uint32_t> lanes;
  for (uint64_t order = first; order <= last; ++order) {
    if (const Slot* slot = landed(order)) lanes.insert(slot->event.tid);
  }
  {
    ThreadNames& names = Names();
    MutexLock lock(&names.mu);
    for (const auto& [tid, name] : names.names) {
      if (!lanes.contains(tid)) continue;
      absl::StrAppendFormat(&out,
                            ",\n{\"ph\":\"M\",\"name\":\"thread_name\",\"pid\":%d,\"tid\":%u,"
                            "\"args\":{\"name\":\"",
                            pid, tid);
      AppendEscaped(out, name);
      out += "\"}}";
    }
  }
  size_t written = 0;
  for (uint64_t order = first; order <= last; ++order) {
    const Slot* slot = landed(order);
    if (slot == nullptr) continue;
    const Event& e = slot->event;
    // Microseconds with the nanoseconds exact, however long the uptime (a
    // double holds them exactly only to 2^53 ns).
    absl::StrAppendFormat(&out,
                          ",\n{\"ph\":\"%c\",\"cat\":\"%s\",\"name\":\"%s\",\"ts\":%d.%03d,"
                          "\"pid\":%d,\"tid\":%u",
                          e.phase, e.category, e.name, e.ts / 1000, e.ts % 1000, pid, e.tid);
    if (e.phase == 'X') absl::StrAppendFormat(&out, ",\"dur\":%d.%03d", e.dur / 1000, e.dur % 1000);
    if (e.phase == 'i') out += ",\"s\":\"t\"";
    if (e.phase == 's' || e.phase == 'f') absl::StrAppendFormat(&out, ",\"id\":\"0x%x\"", e.id);
    // A message's arrow ends at the receive, inside the receiver's slice
    // ("enclosing"); a spawn's or wake-up's ends on the run slice that
    // starts at that instant, the next slice of the lane (the default).
    if (e.phase == 'f' && std::strcmp(e.category, "channel") == 0) out += ",\"bp\":\"e\"";
    if (e.arg_name != nullptr) absl::StrAppendFormat(&out, ",\"args\":{\"%s\":%u}", e.arg_name, e.arg);
    out += "}";
    ++written;
    if (out.size() >= kPiece) flush();
  }
  out += "\n]}\n";
  flush();
  if (std::fclose(file) != 0 && write_errno == 0) write_errno = errno;
  if (write_errno != 0) return ErrnoError(absl::StrCat("trace: writing ", path_), write_errno);
  return written;
}

void NameThread(std::string name) {
  ThreadNames& names = Names();
  const uint32_t tid = ThreadId();
  MutexLock lock(&names.mu);
  names.names[tid] = std::move(name);
}

uint64_t RecordSpawn() {
  if (!Enabled()) return 0;
  const uint64_t unit = NewId();
  const int64_t now = SteadyNanos();
  Record('i', "task", "spawn", now, 0, "unit", unit);
  Record('s', "task", "spawn", now, unit);
  return unit;
}

Work TraceWork(Work work) {
  const uint64_t unit = RecordSpawn();
  if (unit == 0) return work;
  return [unit, work = std::move(work)]() mutable {
    UnitRun run(unit);
    std::move(work)();
  };
}

std::unique_ptr<Job> TraceJob(Job* job) {
  const uint64_t unit = RecordSpawn();
  if (unit == 0) return nullptr;
  return std::make_unique<TracedJob>(job, unit);
}

void BeginSlice(TaskTrace& task) {
  task.slice_start = SteadyNanos();
  if (!task.started) {
    task.started = true;
    Record('f', "task", "spawn", task.slice_start, task.unit);
  }
  if (task.wake_flow != 0) {
    Record('f', "task", "wake", task.slice_start, std::exchange(task.wake_flow, 0));
  }
}

void EndSlice(TaskTrace& task) {
  const int64_t now = SteadyNanos();
  Record('X', "task", "run", task.slice_start, 0, "unit", task.unit, now - task.slice_start);
  Record('i', "task", task.finished ? "end" : "park", now, 0, "unit", task.unit);
}

void RecordWake(TaskTrace& task) {
  if (!Enabled()) return;
  const uint64_t flow = NewId();
  const int64_t now = SteadyNanos();
  Record('i', "task", "wake", now, 0, "unit", task.unit);
  Record('s', "task", "wake", now, flow);
  task.wake_flow = flow;
}

int64_t ParkSpan::Now() { return SteadyNanos(); }

void ParkSpan::End() {
  const int64_t end = SteadyNanos();
  Record('X', "task", "park", start_, 0, nullptr, 0, end - start_);
}

void LinkChannelPair(ChannelTrace& a, ChannelTrace& b) {
  if (!Enabled()) return;
  const uint64_t a_to_b = NewId();
  const uint64_t b_to_a = NewId();
  a.send_flow = b.receive_flow = a_to_b;
  b.send_flow = a.receive_flow = b_to_a;
}

void RecordSend(const ChannelTrace& end, uint64_t sequence, size_t bytes) {
  RecordMessage("send", 's', end.send_flow, sequence, bytes);
}

void RecordReceive(const ChannelTrace& end, uint64_t sequence, size_t bytes) {
  RecordMessage("receive", 'f', end.receive_flow, sequence, bytes);
}

void RecordUnsent(const ChannelTrace& end, uint64_t sequence, size_t bytes) {
  RecordMessage("unsent", 'f', end.send_flow, sequence, bytes);
}

}  // namespace trace
}  // namespace taskrt
