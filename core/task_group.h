#ifndef TASKRT_CORE_TASK_GROUP_H_
#define TASKRT_CORE_TASK_GROUP_H_

// TaskGroup: fork-join on any Scheduler. Spawn children, then Wait() for all
// of them.
//
// Waiting
//   Inside one of the scheduler's own workers, Wait() does not block the
//   thread while there is queued work: it runs other units through
//   Scheduler::RunPendingWork() (helping), so a recursive fork-join on a
//   single worker finishes instead of deadlocking. When nothing is left to
//   help with, it waits for the children that other workers are running.
//   Outside the scheduler, Wait() blocks the calling thread. Blocking goes
//   through the current execution context (a Parker): an OS thread sleeps,
//   a stackful task suspends and lets its scheduler run the children.
//   WaitUntil(deadline) does the same and gives up at the deadline with
//   kDeadlineExceeded, the children still running and still counted: a
//   later Wait() or WaitUntil() (or the destructor) waits for them. A unit
//   it runs while helping is not interrupted, so it returns late by at most
//   that unit's run time. A deadline that has passed returns at once: OK
//   if every child has finished, else kDeadlineExceeded.
//
// Thread safety
//   Spawn() may be called from the group's owner and from its children.
//   Wait() by one thread at a time. The destructor waits for children that
//   are still pending, so they never outlive what they captured.
//
// Errors
//   Spawn returns the scheduler's error (kFailedPrecondition after
//   shutdown); the child is then not run and not counted.

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <new>
#include <type_traits>
#include <utility>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "core/execution_context.h"
#include "core/scheduler.h"

namespace taskrt {

namespace task_group_internal {

// A per-thread cache of fixed-size blocks for spawned children. A spawn is
// a few nanoseconds of scheduling; malloc and a cross-thread free cost more
// than that.
//
// A block remembers the thread cache it came from. Freed on that thread, it
// goes to the thread's own list. Freed on another thread (a stolen child, or
// work spawned from outside the pool) it is pushed onto its owner's `remote`
// list, which the owner takes whole, in one exchange, when its own list
// runs dry: blocks flow back to the thread that spawns instead of piling up
// where children run. Each list holds at most kMaxCachedJobBlocks; a block
// that finds its list full goes back to operator delete. At thread exit the
// cache frees what it holds and closes `remote`; blocks freed after that go
// to operator delete too, and whoever gives back the last block deletes the
// cache.
struct JobBlockCache;

// Blocks come from plain operator new: an over-aligned new goes through
// glibc's memalign, which is slower than malloc.
inline constexpr size_t kJobBlockSize = 64;
inline constexpr size_t kJobBlockAlign = __STDCPP_DEFAULT_NEW_ALIGNMENT__;
inline constexpr size_t kJobBlockPayload = kJobBlockSize - sizeof(JobBlockCache*);
// Per list: a thread keeps at most 2 x 64 KiB of free blocks.
inline constexpr size_t kMaxCachedJobBlocks = 1024;

struct JobBlock {
  // The child object, or a FreeLink while the block is in a free list.
  alignas(kJobBlockAlign) unsigned char payload[kJobBlockPayload];
  JobBlockCache* owner;  // null: not cached (see NewJobBlock)
};
static_assert(sizeof(JobBlock) == kJobBlockSize && alignof(JobBlock) == kJobBlockAlign);

struct FreeLink {
  JobBlock* next;
};

// `remote` packs the list's newest block and its length in one word, so a
// push and the owner's take are single atomic operations and the owner never
// walks the list to count it.
inline constexpr int kRemoteCountShift = 48;  // user-space addresses fit below
inline constexpr uintptr_t kRemotePointerMask = (uintptr_t{1} << kRemoteCountShift) - 1;
inline constexpr uintptr_t kRemoteClosed = 1;  // blocks are aligned: never a block
static_assert(sizeof(uintptr_t) == 8 && kMaxCachedJobBlocks < (1u << 16));

struct JobBlockCache {
  // Owner thread only.
  JobBlock* local = nullptr;
  size_t local_count = 0;
  // Written by other threads: their own cache line.
  alignas(64) std::atomic<uintptr_t> remote{0};  // or kRemoteClosed after thread exit
  // 1 for the owner thread while it lives, plus one per block allocated and
  // not yet given back to operator delete.
  std::atomic<size_t> refs{1};
};

// Sentinels for the thread-local pointer, so that the fast path needs no
// null check: both have an empty list and never own a block.
inline JobBlockCache no_job_block_cache_yet;
inline JobBlockCache job_block_cache_gone;  // the thread's cache was released
inline thread_local JobBlockCache* job_block_cache = &no_job_block_cache_yet;

void* AllocateJobBlockSlow();
void FreeJobBlockSlow(JobBlock* block);

inline JobBlock* NextFree(JobBlock* block) {
  return std::launder(reinterpret_cast<FreeLink*>(block->payload))->next;
}
inline void SetNextFree(JobBlock* block, JobBlock* next) {
  new (block->payload) FreeLink{next};
}

// Returns kJobBlockPayload bytes aligned to kJobBlockAlign.
inline void* AllocateJobBlock() {
  JobBlockCache* const cache = job_block_cache;
  if (JobBlock* block = cache->local) {
    cache->local = NextFree(block);
    --cache->local_count;
    return block->payload;
  }
  return AllocateJobBlockSlow();
}

inline void FreeJobBlock(void* payload) {
  // payload is the first member: the block starts where it does.
  auto* const block = reinterpret_cast<JobBlock*>(payload);
  JobBlockCache* const cache = job_block_cache;
  if (block->owner == cache && cache->local_count < kMaxCachedJobBlocks) {
    SetNextFree(block, cache->local);
    cache->local = block;
    ++cache->local_count;
    return;
  }
  FreeJobBlockSlow(block);
}

}  // namespace task_group_internal

class TaskGroup {
 public:
  explicit TaskGroup(Scheduler& scheduler) : scheduler_(scheduler) {}
  ~TaskGroup() { Wait(); }
  TaskGroup(const TaskGroup&) = delete;
  TaskGroup& operator=(const TaskGroup&) = delete;

  template <typename F>
  absl::Status Spawn(F&& child) {
    auto* job = new ChildJob<std::decay_t<F>>(this, std::forward<F>(child));
    pending_.fetch_add(1, std::memory_order_relaxed);  // a count: leaves kSleeperBit alone
    absl::Status status = scheduler_.ScheduleJob(job);
    if (!status.ok()) {
      delete job;
      ChildDone();
    }
    return status;
  }

  // Returns once every spawned child has finished.
  void Wait() { WaitUntilImpl(absl::InfiniteFuture()); }

  // As Wait, or kDeadlineExceeded at `deadline`; see "Waiting" above.
  absl::Status WaitUntil(absl::Time deadline);

  Scheduler& scheduler() const { return scheduler_; }

 private:
  template <typename F>
  class ChildJob final : public Job {
   public:
    ChildJob(TaskGroup* group, F&& child) : group_(group), child_(std::move(child)) {}
    ChildJob(TaskGroup* group, const F& child) : group_(group), child_(child) {}

#ifndef TASKRT_ASAN  // AddressSanitizer must see each child's own allocation
    // A class-scope operator new hides the global aligned forms, so the
    // fallback passes over-alignment on itself.
    static void* operator new(size_t size) {
      if constexpr (FitsJobBlock()) {
        return task_group_internal::AllocateJobBlock();
      } else if constexpr (alignof(ChildJob) > __STDCPP_DEFAULT_NEW_ALIGNMENT__) {
        return ::operator new(size, std::align_val_t{alignof(ChildJob)});
      } else {
        return ::operator new(size);
      }
    }
    static void operator delete(void* child) {
      if constexpr (FitsJobBlock()) {
        task_group_internal::FreeJobBlock(child);
      } else if constexpr (alignof(ChildJob) > __STDCPP_DEFAULT_NEW_ALIGNMENT__) {
        ::operator delete(child, std::align_val_t{alignof(ChildJob)});
      } else {
        ::operator delete(child);
      }
    }
#endif
    void RunAndDelete() override {
      TaskGroup* const group = group_;
      child_();
      delete this;
      group->ChildDone();  // last: the group may be gone right after
    }

   private:
    TaskGroup* const group_;
    F child_;

#ifndef TASKRT_ASAN
    static constexpr bool FitsJobBlock() {  // a function: ChildJob is complete in its body
      return sizeof(ChildJob) <= task_group_internal::kJobBlockPayload &&
             alignof(ChildJob) <= task_group_internal::kJobBlockAlign;
    }
#endif
  };

  // Set in pending_ by a Wait() about to block; only then does the last
  // child wake anyone. (This replaced std::atomic wait/notify_all on every
  // group: libstdc++ hashes a notified address into a small process-wide
  // table, and each notify wrote a shared counter and made a futex call
  // whenever any thread slept on an address in the same slot, such as the
  // root group's waiter; whole fork-join runs were several times slower
  // depending on where groups happened to sit on the stack.)
  static constexpr int64_t kSleeperBit = int64_t{1} << 62;

  // Wait's body: true once every child has finished, false at `deadline`.
  bool WaitUntilImpl(absl::Time deadline);

  void ChildDone() {
    if (pending_.fetch_sub(1, std::memory_order_acq_rel) == (kSleeperBit | 1)) {
      // Read after the exchange that saw the bit, which published it; the
      // waiter cannot return (and free the Parker) before Unpark is done.
      sleeper_->Unpark();
    }
  }

  Scheduler& scheduler_;
  std::atomic<int64_t> pending_{0};  // children not yet finished, plus kSleeperBit
  Parker* sleeper_ = nullptr;        // the waiter's, while kSleeperBit is set
};

}  // namespace taskrt

#endif  // TASKRT_CORE_TASK_GROUP_H_
