#ifndef TASKRT_EVENT_LOOPS_LOOP_BASE_LOOP_TIMERS_H_
#define TASKRT_EVENT_LOOPS_LOOP_BASE_LOOP_TIMERS_H_

// LoopTimers: the timers of one event loop (the Timers section of
// core/event_loop.h), written once for every backend; LoopBase owns one and
// calls it. Times here are CLOCK_MONOTONIC nanoseconds.
//
// Design
//   Each timer is a Slot: a TimerWheel node (core/timer_wheel.h), the
//   closure, and an atomic state word, generation << 2 | phase (pending,
//   fired, cancelled). A timer's id is its slot's index and generation, so
//   Cancel from any thread is one compare-and-swap, pending -> cancelled,
//   that races cleanly with the loop's pending -> fired. Slots live in
//   chunks that never move (chunk k holds 256 << k slots), so an id is
//   checked against the chunk table without a lock.
//
//   The loop thread arms and cancels without a lock or a system call: it
//   takes slots from its own free list and inserts into the wheel directly
//   (when the list is empty it takes a batch of fresh slots under a mutex,
//   once per 256 slots the loop ever holds at once).
//   Other threads take slots from a second pool, under a mutex, and hand
//   their arms and their successful cancels to the loop through two
//   lock-free intrusive lists (multiple producers, the loop the one
//   consumer); the thread that makes a list non-empty asks for a wake-up.
//   The loop takes both lists before it computes its wait, after it, and
//   whenever it arms on its own thread, so an arm that happened before
//   another is in the wheel first and equal deadlines keep arming order.
//   A slot freed by the loop goes back to the pool it came from (the other
//   threads' pool once per pass, under its mutex).
//
//   Each slot also records, for the loop only, where it is (in transit, in
//   the wheel, waiting for a cancel entry, ...), so an arm and a cancel of
//   one timer may reach the loop in either order and the slot is freed
//   exactly once.
//
// Thread safety: ToMonotonic, ArmFromOtherThread and Cancel from any
// thread; the rest on the loop thread only.

#include <atomic>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "core/event_loop.h"
#include "core/mutex.h"
#include "core/timer_wheel.h"

namespace taskrt::loop_internal {

// CLOCK_MONOTONIC, in nanoseconds.
uint64_t MonotonicNowNs();

// The monotonic time `delay` after now, rounded up to a nanosecond and
// clamped to [0, UINT64_MAX].
uint64_t MonotonicAfter(absl::Duration delay);

class LoopTimers {
 public:
  // `label` starts every error message ("epoll loop").
  explicit LoopTimers(const std::string& label);
  // Destroys the closures of pending timers without running them.
  ~LoopTimers();
  LoopTimers(const LoopTimers&) = delete;
  LoopTimers& operator=(const LoopTimers&) = delete;

  // The wall-clock `deadline` on the monotonic clock, never earlier than
  // the exact conversion and, for equal deadlines converted one after the
  // other, never decreasing (see loop_timers.cc).
  uint64_t ToMonotonic(absl::Time deadline);

  // Arms a timer from the loop thread. `closure` is non-empty; it is moved
  // from on success.
  absl::StatusOr<TimerId> ArmOnLoop(uint64_t deadline_ns, std::function<void()>& closure);

  // Arms a timer from another thread; sets `wake` when the loop must be
  // woken to see it.
  absl::StatusOr<TimerId> ArmFromOtherThread(uint64_t deadline_ns, std::function<void()>& closure,
                                             bool& wake);

  // As EventLoop::Cancel. Sets `wake` when the loop must be woken to free
  // the closure.
  absl::Status Cancel(TimerId id, bool on_loop_thread, bool& wake);

  // Loop thread: takes the other threads' arms and cancels.
  void TakeRemote();
  // Loop thread: when to run the timers next (TimerWheel::NextDeadline).
  std::optional<uint64_t> NextDeadline();
  // Loop thread: runs every timer due at `now_ns`; returns how many ran.
  // Not re-entered: while it runs, running() is true.
  int RunDue(uint64_t now_ns);
  bool running() const { return running_; }

 private:
  enum Phase : uint64_t { kIdle = 0, kPending = 1, kFired = 2, kCancelled = 3 };
  // Where a slot is, as the loop sees it.
  enum class Where : uint8_t {
    kFree,
    kInTransit,         // armed by another thread; its arm entry not yet taken
    kInWheel,
    kRunning,           // its closure is running
    kAwaitCancelEntry,  // cancelled by another thread; out of the wheel
    kAwaitArmEntry,     // cancelled before its arm entry was taken
  };

  struct Slot : TimerWheel::Node {
    std::atomic<uint64_t> state{0};  // generation << 2 | Phase
    std::function<void()> closure;
    // In a free list, or in transit to the loop: never both.
    Slot* next = nullptr;
    Slot* cancel_next = nullptr;
    uint32_t index = 0;
    Where where = Where::kFree;
    bool other_threads_pool = false;
  };

  static constexpr uint32_t kFirstChunk = 256;
  static constexpr int kFirstChunkBits = 8;
  static constexpr int kMaxChunks = 24;  // indexes fit 32 bits
  static constexpr uint32_t kGrowBatch = 256;

  static uint64_t Pack(uint32_t generation, Phase phase) {
    return (uint64_t{generation} << 2) | phase;
  }
  static uint32_t GenerationOf(uint64_t state) { return static_cast<uint32_t>(state >> 2); }
  static Phase PhaseOf(uint64_t state) { return static_cast<Phase>(state & 3); }
  static TimerId MakeId(uint32_t index, uint32_t generation) {
    return (uint64_t{generation} << 32) | index;
  }
  // The generation a slot's next timer gets; never 0.
  static uint32_t NextGeneration(const Slot* slot) {
    const uint32_t next = GenerationOf(slot->state.load(std::memory_order_relaxed)) + 1;
    return next == 0 ? 1 : next;
  }

  Slot* Find(uint32_t index) const;
  // Fresh slots for one pool, linked by `next`; nullptr when the index
  // space is used up.
  Slot* Grow(bool other_threads_pool) ABSL_LOCKS_EXCLUDED(grow_mu_);
  // Destroys the closure and returns the slot to its pool. Loop thread.
  void Free(Slot* slot);
  void CancelledOnLoop(Slot* slot);
  void TakeArm(Slot* slot);
  void TakeCancel(Slot* slot);
  // Fires one due slot: returns 1 if its closure ran.
  int Fire(Slot* slot);
  // Gives the slots freed for the other threads' pool back to it.
  void ReturnSlots() ABSL_LOCKS_EXCLUDED(pool_mu_);
  absl::Status NeverIssued(TimerId id) const;

  const std::string& label_;
  TimerWheel wheel_;  // loop thread only
  bool running_ = false;
  Slot* loop_free_ = nullptr;  // loop thread only
  Slot* returning_ = nullptr;  // loop thread only: for the other threads' pool

  // Lock-free lists from other threads (pushed at the head; the loop takes
  // all and reverses them).
  std::atomic<Slot*> arms_{nullptr};
  std::atomic<Slot*> cancels_{nullptr};

  Mutex pool_mu_;
  Slot* pool_free_ ABSL_GUARDED_BY(pool_mu_) = nullptr;

  Mutex grow_mu_;
  uint32_t next_index_ ABSL_GUARDED_BY(grow_mu_) = 0;
  std::atomic<Slot*> chunks_[kMaxChunks] = {};

  // wall - monotonic, as last used by ToMonotonic; kUnset before.
  std::atomic<int64_t> wall_minus_monotonic_;
};

// --- The loop thread's hot path, inline. ---

inline absl::StatusOr<TimerId> LoopTimers::ArmOnLoop(uint64_t deadline_ns,
                                                     std::function<void()>& closure) {
  // Arms other threads made before this one go into the wheel first.
  if (arms_.load(std::memory_order_relaxed) != nullptr) TakeRemote();
  if (loop_free_ == nullptr) {
    loop_free_ = Grow(/*other_threads_pool=*/false);
    if (loop_free_ == nullptr) {
      return absl::ResourceExhaustedError(label_ + ": too many timers pending at once");
    }
  }
  Slot* slot = loop_free_;
  loop_free_ = slot->next;
  const uint32_t generation = NextGeneration(slot);
  slot->closure.swap(closure);
  slot->where = Where::kInWheel;
  wheel_.Insert(slot, deadline_ns);
  slot->state.store(Pack(generation, kPending), std::memory_order_release);
  return MakeId(slot->index, generation);
}

}  // namespace taskrt::loop_internal

#endif  // TASKRT_EVENT_LOOPS_LOOP_BASE_LOOP_TIMERS_H_
