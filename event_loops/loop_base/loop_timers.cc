#include "event_loops/loop_base/loop_timers.h"

#include <sched.h>
#include <time.h>

#include <algorithm>
#include <bit>
#include <limits>
#include <utility>

#include "absl/strings/str_cat.h"

namespace taskrt::loop_internal {
namespace {

constexpr int64_t kUnset = std::numeric_limits<int64_t>::min();
// ToMonotonic reads the wall clock between two monotonic reads and retries
// when they are further apart than this, so its offset is this exact.
constexpr uint64_t kMaxReadSpreadNs = 1000;
// How many times it tries for an exact measure before it makes do.
constexpr int kMeasureAttempts = 16;
// Measured offsets within this much of the reference are taken as read
// jitter, and the reference is kept (see ToMonotonic).
constexpr int64_t kJitterWindowNs = 2 * kMaxReadSpreadNs;

uint64_t ClampToUnsigned(__int128 value) {
  if (value <= 0) return 0;
  if (value >= static_cast<__int128>(std::numeric_limits<uint64_t>::max())) {
    return std::numeric_limits<uint64_t>::max();
  }
  return static_cast<uint64_t>(value);
}

// Whole nanoseconds of `d`, rounded up, saturating.
int64_t CeilNanoseconds(absl::Duration d) {
  int64_t ns = absl::ToInt64Nanoseconds(d);
  if (ns != std::numeric_limits<int64_t>::max() && d > absl::Nanoseconds(ns)) ++ns;
  return ns;
}

// Slot pushed onto an intrusive lock-free list through `link`. Returns true
// when the list was empty.
template <typename Slot>
bool Push(std::atomic<Slot*>& head, Slot* slot, Slot* Slot::*link) {
  Slot* old = head.load(std::memory_order_relaxed);
  do {
    slot->*link = old;
  } while (!head.compare_exchange_weak(old, slot, std::memory_order_release,
                                       std::memory_order_relaxed));
  return old == nullptr;
}

// Every slot of the list, oldest push first.
template <typename Slot>
Slot* TakeAll(std::atomic<Slot*>& head, Slot* Slot::*link) {
  Slot* newest_first = head.exchange(nullptr, std::memory_order_acquire);
  Slot* oldest_first = nullptr;
  while (newest_first != nullptr) {
    Slot* next = newest_first->*link;
    newest_first->*link = oldest_first;
    oldest_first = newest_first;
    newest_first = next;
  }
  return oldest_first;
}

}  // namespace

uint64_t MonotonicNowNs() {
  timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  return static_cast<uint64_t>(now.tv_sec) * 1'000'000'000u + static_cast<uint64_t>(now.tv_nsec);
}

uint64_t MonotonicAfter(absl::Duration delay) {
  return ClampToUnsigned(static_cast<__int128>(MonotonicNowNs()) + CeilNanoseconds(delay));
}

LoopTimers::LoopTimers(const std::string& label)
    : label_(label), wheel_(MonotonicNowNs()), wall_minus_monotonic_(kUnset) {}

LoopTimers::~LoopTimers() {
  for (std::atomic<Slot*>& chunk : chunks_) delete[] chunk.load(std::memory_order_acquire);
}

// The offset wall - monotonic is measured with the wall clock read between
// two monotonic reads: a measure m is at most the true offset and, when the
// reads are within kMaxReadSpreadNs (exact), at most that much below it.
// Measures jitter within that spread, so converting each deadline with its
// own measure would put equal wall deadlines armed one after the other a
// few nanoseconds apart, in either order. Instead every conversion uses one
// reference offset, less kJitterWindowNs: an exact measure replaces the
// reference only when it is a window or more away from it (the wall clock
// was stepped, or slewed that far). While measures stay inside the window
// the true offset is above m > reference - window, so the deadline used is
// never early, and late by at most two windows and a spread. A measure
// that is not exact (preempted between the reads every time) is low by an
// unknown amount: inside the window it changes nothing; a window or more
// above the reference it still proves the true offset that high (a forward
// step) and becomes the reference; below, it serves its own deadline only
// (late, never early) and the next exact measure settles the reference.
uint64_t LoopTimers::ToMonotonic(absl::Time deadline) {
  if (deadline == absl::InfiniteFuture()) return std::numeric_limits<uint64_t>::max();
  if (deadline == absl::InfinitePast()) return 0;
  int64_t measure = 0;
  bool exact = false;
  for (int attempt = 0; attempt < kMeasureAttempts && !exact; ++attempt) {
    // Preempted between the reads again and again: let the others run
    // first, so that the next try has a fresh time slice.
    if (attempt >= kMeasureAttempts / 4) sched_yield();
    const uint64_t before = MonotonicNowNs();
    const int64_t wall = absl::ToUnixNanos(absl::Now());
    const uint64_t after = MonotonicNowNs();
    measure = wall - static_cast<int64_t>(after);
    exact = after - before <= kMaxReadSpreadNs;
  }
  int64_t reference = wall_minus_monotonic_.load(std::memory_order_relaxed);
  const bool inside_window = reference != kUnset && measure > reference - kJitterWindowNs &&
                             measure < reference + kJitterWindowNs;
  int64_t offset;
  if (inside_window) {
    offset = reference - kJitterWindowNs;
  } else if (exact || (reference != kUnset && measure >= reference + kJitterWindowNs)) {
    // An exact measure, or any measure a window above the reference: the
    // true offset is at least the measure (the wall clock stepped forward).
    reference = measure;
    wall_minus_monotonic_.store(reference, std::memory_order_relaxed);
    offset = reference - kJitterWindowNs;
  } else {
    offset = measure;
  }
  int64_t deadline_ns = absl::ToUnixNanos(deadline);
  if (deadline_ns != std::numeric_limits<int64_t>::max() &&
      deadline > absl::FromUnixNanos(deadline_ns)) {
    ++deadline_ns;
  }
  return ClampToUnsigned(static_cast<__int128>(deadline_ns) - offset);
}

LoopTimers::Slot* LoopTimers::Find(uint32_t index) const {
  const uint64_t position = uint64_t{index} + kFirstChunk;
  const int chunk = static_cast<int>(std::bit_width(position)) - 1 - kFirstChunkBits;
  if (chunk >= kMaxChunks) return nullptr;
  Slot* slots = chunks_[chunk].load(std::memory_order_acquire);
  if (slots == nullptr) return nullptr;
  return &slots[position - (uint64_t{kFirstChunk} << chunk)];
}

LoopTimers::Slot* LoopTimers::Grow(bool other_threads_pool) {
  MutexLock lock(&grow_mu_);
  const uint64_t position = uint64_t{next_index_} + kFirstChunk;
  const int chunk = static_cast<int>(std::bit_width(position)) - 1 - kFirstChunkBits;
  if (chunk >= kMaxChunks) return nullptr;
  const uint64_t chunk_size = uint64_t{kFirstChunk} << chunk;
  const uint64_t offset = position - chunk_size;
  Slot* slots = chunks_[chunk].load(std::memory_order_relaxed);
  if (slots == nullptr) {
    slots = new Slot[chunk_size];
    for (uint64_t i = 0; i < chunk_size; ++i) {
      slots[i].index = static_cast<uint32_t>(chunk_size - kFirstChunk + i);
    }
    chunks_[chunk].store(slots, std::memory_order_release);
  }
  const uint32_t count = static_cast<uint32_t>(std::min<uint64_t>(kGrowBatch, chunk_size - offset));
  for (uint32_t i = 0; i < count; ++i) {
    Slot& slot = slots[offset + i];
    slot.other_threads_pool = other_threads_pool;
    slot.next = i + 1 < count ? &slots[offset + i + 1] : nullptr;
  }
  next_index_ += count;
  return &slots[offset];
}

absl::StatusOr<TimerId> LoopTimers::ArmFromOtherThread(uint64_t deadline_ns,
                                                       std::function<void()>& closure,
                                                       bool& wake) {
  Slot* slot;
  {
    MutexLock lock(&pool_mu_);
    if (pool_free_ == nullptr) pool_free_ = Grow(/*other_threads_pool=*/true);
    slot = pool_free_;
    if (slot == nullptr) {
      return absl::ResourceExhaustedError(label_ + ": too many timers pending at once");
    }
    pool_free_ = slot->next;
  }
  const uint32_t generation = NextGeneration(slot);
  slot->closure.swap(closure);
  slot->deadline = deadline_ns;
  slot->where = Where::kInTransit;
  slot->state.store(Pack(generation, kPending), std::memory_order_release);
  if (Push(arms_, slot, &Slot::next)) wake = true;
  return MakeId(slot->index, generation);
}

absl::Status LoopTimers::NeverIssued(TimerId id) const {
  return absl::InvalidArgumentError(
      absl::StrCat(label_, ": Cancel of timer ", id, ", which this loop never issued"));
}

absl::Status LoopTimers::Cancel(TimerId id, bool on_loop_thread, bool& wake) {
  const uint32_t generation = static_cast<uint32_t>(id >> 32);
  Slot* slot = generation == 0 ? nullptr : Find(static_cast<uint32_t>(id));
  if (slot == nullptr) return NeverIssued(id);
  uint64_t state = slot->state.load(std::memory_order_acquire);
  while (true) {
    const uint32_t current = GenerationOf(state);
    if (current != generation) {
      if (current == 0 || generation > current) return NeverIssued(id);
      return absl::FailedPreconditionError(absl::StrCat(
          label_, ": Cancel of timer ", id, ": it has already run or was cancelled"));
    }
    switch (PhaseOf(state)) {
      case kFired:
        return absl::FailedPreconditionError(absl::StrCat(
            label_, ": Cancel of timer ", id, ": its closure has already run or is running"));
      case kCancelled:
        return absl::FailedPreconditionError(
            absl::StrCat(label_, ": Cancel of timer ", id, ": it was already cancelled"));
      case kIdle:
        return NeverIssued(id);
      case kPending:
        break;
    }
    if (slot->state.compare_exchange_weak(state, Pack(generation, kCancelled),
                                          std::memory_order_acq_rel,
                                          std::memory_order_acquire)) {
      break;
    }
  }
  if (on_loop_thread) {
    CancelledOnLoop(slot);
  } else if (Push(cancels_, slot, &Slot::cancel_next)) {
    wake = true;
  }
  return absl::OkStatus();
}

void LoopTimers::CancelledOnLoop(Slot* slot) {
  switch (slot->where) {
    case Where::kInWheel:
      wheel_.Remove(slot);
      Free(slot);
      break;
    case Where::kInTransit:
      slot->where = Where::kAwaitArmEntry;
      break;
    default:  // a cancel succeeds only on a pending timer: nothing else
      break;
  }
}

void LoopTimers::Free(Slot* slot) {
  std::function<void()> closure;
  closure.swap(slot->closure);
  slot->where = Where::kFree;
  if (slot->other_threads_pool) {
    slot->next = returning_;
    returning_ = slot;
  } else {
    slot->next = loop_free_;
    loop_free_ = slot;
  }
  // `closure` is destroyed last: its destructor may arm or cancel timers.
}

void LoopTimers::TakeArm(Slot* slot) {
  if (slot->where == Where::kAwaitArmEntry) {
    Free(slot);
    return;
  }
  if (PhaseOf(slot->state.load(std::memory_order_acquire)) == kPending) {
    slot->where = Where::kInWheel;
    wheel_.Insert(slot, slot->deadline);
  } else {
    slot->where = Where::kAwaitCancelEntry;
  }
}

void LoopTimers::TakeCancel(Slot* slot) {
  if (slot->where == Where::kAwaitCancelEntry) {
    Free(slot);
  } else {
    CancelledOnLoop(slot);
  }
}

void LoopTimers::TakeRemote() {
  if (arms_.load(std::memory_order_relaxed) != nullptr) {
    for (Slot* slot = TakeAll(arms_, &Slot::next); slot != nullptr;) {
      Slot* next = slot->next;
      TakeArm(slot);
      slot = next;
    }
  }
  if (cancels_.load(std::memory_order_relaxed) != nullptr) {
    for (Slot* slot = TakeAll(cancels_, &Slot::cancel_next); slot != nullptr;) {
      Slot* next = slot->cancel_next;
      TakeCancel(slot);
      slot = next;
    }
  }
  ReturnSlots();
}

void LoopTimers::ReturnSlots() {
  if (returning_ == nullptr) return;
  Slot* last = returning_;
  while (last->next != nullptr) last = last->next;
  MutexLock lock(&pool_mu_);
  last->next = pool_free_;
  pool_free_ = returning_;
  returning_ = nullptr;
}

std::optional<uint64_t> LoopTimers::NextDeadline() {
  TakeRemote();
  return wheel_.NextDeadline();
}

int LoopTimers::Fire(Slot* slot) {
  uint64_t state = slot->state.load(std::memory_order_relaxed);
  const uint32_t generation = GenerationOf(state);
  state = Pack(generation, kPending);
  if (!slot->state.compare_exchange_strong(state, Pack(generation, kFired),
                                           std::memory_order_acq_rel,
                                           std::memory_order_acquire)) {
    // Cancelled by another thread, whose cancel entry frees the slot.
    slot->where = Where::kAwaitCancelEntry;
    return 0;
  }
  slot->where = Where::kRunning;
  slot->closure();
  Free(slot);
  return 1;
}

int LoopTimers::RunDue(uint64_t now_ns) {
  TakeRemote();
  running_ = true;
  int ran = 0;
  wheel_.Advance(now_ns, [&](TimerWheel::Node* node) { ran += Fire(static_cast<Slot*>(node)); });
  running_ = false;
  ReturnSlots();
  return ran;
}

}  // namespace taskrt::loop_internal
