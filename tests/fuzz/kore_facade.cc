// Fuzz target: the Kore C facade (kore/kore_tasks.h), driven by arbitrary
// sequences of calls on four tasks from the owner's thread while their
// entries run on a backend combination the input picks (every scheduler x
// channel x loop of the registry). The task structs hold garbage, as
// kore_malloc'd memory does: before create, after destroy, and whenever the
// input scribbles over them or copies a live one over another; the facade
// must never trust their bytes.
//
// Entries: one returns at once, one echoes every message until its channel
// closes, one writes five numbered messages. Ops: create, run, bind a
// callback or a request, destroy (at any point, running or not), write,
// read (only where a message is due, as a blocking read would otherwise
// wait for ever), read into a short buffer, state/finished/result, a loop
// pump, and misuse: NULL arguments, calls on destroyed tasks, a second run,
// a second create, init while running, shutdown while tasks exist, calls on
// garbage structs and on byte copies of live ones.
//
// Invariants: an echo task returns every message in order and intact; a
// writer's messages arrive in order; a short read reports the full length
// and keeps the prefix; misuse sets kore_task_last_error() and changes
// nothing; at the end, with every task destroyed, the runtime shuts down
// (no entry is left blocked) and asan finds no leak.

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <deque>
#include <string>
#include <vector>

#include "backends/registry.h"
#include "kore/kore_tasks.h"
#include "tests/fuzz/fuzz_input.h"

namespace taskrt::fuzz {
namespace {

constexpr int kTasks = 4;
constexpr int kWriterMessages = 5;
constexpr int kReturnResult = 7;
enum Kind { kReturn, kEcho, kWriter, kKindCount };

int ReturnEntry(struct kore_task*) { return kReturnResult; }

int EchoEntry(struct kore_task* t) {
  char buffer[256];
  for (;;) {
    const u_int32_t length = kore_task_channel_read(t, buffer, sizeof buffer);
    if (kore_task_last_error() != nullptr) return 1;  // closed: the task was destroyed
    kore_task_channel_write(t, buffer, std::min<u_int32_t>(length, sizeof buffer));
    if (kore_task_last_error() != nullptr) return 1;
  }
}

std::string WriterMessage(int i) { return "message " + std::to_string(i); }

int WriterEntry(struct kore_task* t) {
  for (int i = 0; i < kWriterMessages; ++i) {
    std::string message = WriterMessage(i);
    kore_task_channel_write(t, message.data(), static_cast<u_int32_t>(message.size()));
    if (kore_task_last_error() != nullptr) return 1;
  }
  return kWriterMessages;
}

std::atomic<int> callbacks{0};
std::atomic<int> resumes{0};
void Callback(struct kore_task*) { callbacks.fetch_add(1); }
void Resume(struct http_request*) { resumes.fetch_add(1); }

struct Slot {
  struct kore_task task;  // garbage until created; the facade never reads it
  bool exists = false;    // what the facade must say: created and not destroyed
  Kind kind = kReturn;
  bool ran = false;
  std::deque<std::string> echo_due;  // written to an echo task, not read back
  int writer_next = 0;               // the writer's next message to read

  // Back to "no task", keeping the struct's bytes, as freed memory does.
  void Forget() {
    const struct kore_task bytes = task;
    *this = Slot();
    task = bytes;
  }
};

struct Combination {
  std::string scheduler, channel, loop;
};

const std::vector<Combination>& Combinations() {
  static const auto* all = [] {
    auto* combinations = new std::vector<Combination>;
    for (const std::string& s : SchedulerNames()) {
      for (const std::string& c : ChannelNames()) {
        for (const std::string& l : LoopNames()) combinations->push_back({s, c, l});
      }
    }
    return combinations;
  }();
  return *all;
}

void ExpectFailed(const char* call) {
  FUZZ_CHECK(kore_task_last_error() != nullptr, "%s was accepted", call);
}
void ExpectOk(const char* call) {
  const char* error = kore_task_last_error();
  FUZZ_CHECK(error == nullptr, "%s failed: %s", call, error);
}

class KoreRun {
 public:
  explicit KoreRun(FuzzInput& in) : in_(in) {}

  void Run() {
    const Combination& backends = Combinations()[in_.Byte() % Combinations().size()];
    const uint8_t garbage = in_.Byte();
    for (Slot& slot : slots_) std::memset(&slot.task, garbage, sizeof slot.task);
    // One worker per task, so every running entry has a thread and a due
    // read always completes (a scheduler with stackful tasks suspends blocked
    // entries instead).
    if (kore_task_runtime_init(backends.scheduler.c_str(), backends.channel.c_str(),
                               backends.loop.c_str(), kTasks) != 0) {
      const std::string error = kore_task_last_error();
      // io_uring refused by the kernel (a seccomp sandbox): nothing to fuzz.
      FUZZ_CHECK(error.rfind("UNAVAILABLE", 0) == 0, "runtime_init: %s", error.c_str());
      return;
    }
    kore_task_set_request_resume(Resume);
    for (int op = 0; op < 150 && !in_.empty(); ++op) Op();
    for (Slot& slot : slots_) {
      if (slot.exists) Destroy(slot);
    }
    kore_task_runtime_shutdown();
    ExpectOk("runtime_shutdown with every task destroyed");
  }

 private:
  static bool Exists(const Slot& slot) { return slot.exists; }

  void Create(Slot& slot, Kind kind) {
    static int (*const entries[kKindCount])(struct kore_task*) = {ReturnEntry, EchoEntry,
                                                                   WriterEntry};
    const bool existed = Exists(slot);
    kore_task_create(&slot.task, entries[kind]);
    if (existed) {
      ExpectFailed("a second create of a live task");
      return;
    }
    ExpectOk("create");
    slot.Forget();
    slot.exists = true;
    slot.kind = kind;
  }

  void Destroy(Slot& slot) {
    kore_task_destroy(&slot.task);
    ExpectOk("destroy");
    FUZZ_CHECK(kore_task_state(&slot.task) == 0, "a destroyed task has a state");
    slot.Forget();
  }

  // Garbage in a struct, live or not: the facade does not read it.
  void Scribble(Slot& slot) {
    if (in_.Byte() % 2 == 0) {
      std::memset(&slot.task, in_.Byte(), sizeof slot.task);
      return;
    }
    // A byte copy of another slot's struct, live or not, is not its task.
    const Slot& other = slots_[in_.Byte() % kTasks];
    if (&other != &slot) std::memcpy(&slot.task, &other.task, sizeof slot.task);
  }

  void Write(Slot& slot, const std::string& message) {
    kore_task_channel_write(&slot.task, const_cast<char*>(message.data()),
                            static_cast<u_int32_t>(message.size()));
    if (!Exists(slot)) {
      ExpectFailed("write to a task that does not exist");
      return;
    }
    if (kore_task_last_error() == nullptr && slot.kind == kEcho) slot.echo_due.push_back(message);
  }

  // A blocking read, only where a message is due.
  void Read(Slot& slot, size_t capacity) {
    std::string expected;
    if (slot.ran && slot.kind == kEcho && !slot.echo_due.empty()) {
      expected = slot.echo_due.front();
      slot.echo_due.pop_front();
    } else if (slot.ran && slot.kind == kWriter && slot.writer_next < kWriterMessages) {
      expected = WriterMessage(slot.writer_next++);
    } else {
      if (!Exists(slot)) {
        char byte;
        kore_task_channel_read(&slot.task, &byte, 1);
        ExpectFailed("read from a task that does not exist");
      }
      return;
    }
    std::string buffer(capacity, '\0');
    const u_int32_t length = kore_task_channel_read(&slot.task, buffer.data(),
                                                    static_cast<u_int32_t>(capacity));
    ExpectOk("a read of a due message");
    FUZZ_CHECK(length == expected.size(), "read %u bytes, expected %zu", length, expected.size());
    const size_t kept = std::min(capacity, expected.size());
    FUZZ_CHECK(buffer.compare(0, kept, expected, 0, kept) == 0, "a message arrived corrupted");
  }

  void CheckState(Slot& slot) {
    const int state = kore_task_state(&slot.task);
    if (!Exists(slot)) {
      FUZZ_CHECK(state == 0, "state %d of a task that does not exist", state);
      (void)kore_task_finished(&slot.task);
      ExpectFailed("finished of a task that does not exist");
      return;
    }
    FUZZ_CHECK(state == KORE_TASK_STATE_CREATED || state == KORE_TASK_STATE_RUNNING ||
                   state == KORE_TASK_STATE_FINISHED,
               "state %d", state);
    FUZZ_CHECK(slot.ran || state == KORE_TASK_STATE_CREATED, "a task that never ran is in state %d",
               state);
    if (kore_task_finished(&slot.task) == 1 && slot.kind == kReturn) {
      FUZZ_CHECK(kore_task_result(&slot.task) == kReturnResult, "wrong result");
    }
  }

  void Misuse(Slot& slot) {
    switch (in_.Byte() % 5) {
      case 0:
        kore_task_create(nullptr, ReturnEntry);
        ExpectFailed("create of NULL");
        break;
      case 1:
        kore_task_channel_write(&slot.task, nullptr, 5);
        ExpectFailed("write of NULL data");
        break;
      case 2:
        FUZZ_CHECK(kore_task_runtime_init(std::string(Defaults().scheduler).c_str(),
                                          std::string(Defaults().channel).c_str(),
                                          std::string(Defaults().loop).c_str(), 1) == -1,
                   "a second runtime_init was accepted");
        break;
      case 3:
        if (std::any_of(std::begin(slots_), std::end(slots_),
                        [](const Slot& s) { return Exists(s); })) {
          kore_task_runtime_shutdown();
          ExpectFailed("shutdown while tasks exist");
        }
        break;
      case 4:
        kore_task_bind_callback(&slot.task, nullptr);
        ExpectFailed("bind of a NULL callback");
        break;
    }
  }

  void Op() {
    const uint8_t op = in_.Byte();
    Slot& slot = slots_[in_.Byte() % kTasks];
    switch (op % 12) {
      case 0:
        Create(slot, static_cast<Kind>(in_.Byte() % kKindCount));
        break;
      case 1:
        kore_task_run(&slot.task);
        if (Exists(slot) && !slot.ran) {
          ExpectOk("run");
          slot.ran = true;
        } else {
          ExpectFailed(Exists(slot) ? "a second run" : "run of a task that does not exist");
        }
        break;
      case 2:
        kore_task_bind_callback(&slot.task, Callback);
        break;
      case 3:
        kore_task_bind_request(&slot.task, reinterpret_cast<struct http_request*>(&slot));
        break;
      case 4:
        if (Exists(slot)) Destroy(slot);
        break;
      case 5:
      case 6:
        Write(slot, in_.Bytes(200));
        break;
      case 7:
        Read(slot, 256);
        break;
      case 8:
        Read(slot, in_.Below(24));
        break;
      case 9:
        CheckState(slot);
        FUZZ_CHECK(kore_task_loop_run_once(0) >= 0, "loop: %s", kore_task_last_error());
        break;
      case 10:
        Misuse(slot);
        break;
      case 11:
        Scribble(slot);
        break;
    }
  }

  FuzzInput& in_;
  Slot slots_[kTasks];
};

}  // namespace
}  // namespace taskrt::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  taskrt::fuzz::FuzzInput in(data, size);
  taskrt::fuzz::KoreRun(in).Run();
  return 0;
}
