#include "core/task_group.h"

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <new>
#include <thread>

#include "absl/status/status.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "core/execution_context.h"

namespace taskrt {

namespace task_group_internal {
namespace {

JobBlock* NewJobBlock(JobBlockCache* owner) {
  auto* const block = static_cast<JobBlock*>(::operator new(sizeof(JobBlock)));
  // A block whose address does not fit beside a count in `remote` (tagged
  // pointers, 57-bit address spaces) is never cached.
  const bool packable = (reinterpret_cast<uintptr_t>(block) & ~kRemotePointerMask) == 0;
  if (owner != nullptr && packable) {
    owner->refs.fetch_add(1, std::memory_order_relaxed);
    block->owner = owner;
  } else {
    block->owner = nullptr;
  }
  return block;
}

void DeleteJobBlock(JobBlock* block) { ::operator delete(block); }

// Gives back `count` blocks of `cache` that went to operator delete; the
// last reference deletes the cache.
void Unref(JobBlockCache* cache, size_t count) {
  if (cache->refs.fetch_sub(count, std::memory_order_acq_rel) == count) delete cache;
}

// Drops the thread's reference to its cache when the thread exits.
class JobBlockCacheReleaser {
 public:
  void Arm() {}  // odr-using the thread_local constructs it, so its destructor runs
  ~JobBlockCacheReleaser() {
    JobBlockCache* const cache = job_block_cache;
    if (cache == &no_job_block_cache_yet || cache == &job_block_cache_gone) return;
    // Later spawns on this thread (from other thread_local destructors) and
    // frees of this cache's blocks bypass it from now on.
    job_block_cache = &job_block_cache_gone;
    size_t released = 1;  // the thread's own reference
    const uintptr_t remote = cache->remote.exchange(kRemoteClosed, std::memory_order_acquire);
    for (JobBlock* list : {cache->local, reinterpret_cast<JobBlock*>(remote & kRemotePointerMask)}) {
      while (list != nullptr) {
        JobBlock* const next = NextFree(list);
        DeleteJobBlock(list);
        list = next;
        ++released;
      }
    }
    Unref(cache, released);
  }
};

thread_local JobBlockCacheReleaser job_block_cache_releaser;

}  // namespace

void* AllocateJobBlockSlow() {
  JobBlockCache* cache = job_block_cache;
  if (cache == &job_block_cache_gone) return NewJobBlock(nullptr)->payload;
  if (cache == &no_job_block_cache_yet) {
    cache = new JobBlockCache;
    job_block_cache = cache;
    job_block_cache_releaser.Arm();
  }
  // The own list is empty: take back, whole, what other threads freed.
  const uintptr_t remote = cache->remote.exchange(0, std::memory_order_acquire);
  if (auto* const first = reinterpret_cast<JobBlock*>(remote & kRemotePointerMask)) {
    cache->local = NextFree(first);
    cache->local_count = (remote >> kRemoteCountShift) - 1;
    return first->payload;
  }
  return NewJobBlock(cache)->payload;
}

void FreeJobBlockSlow(JobBlock* block) {
  JobBlockCache* const owner = block->owner;
  if (owner == nullptr) {
    DeleteJobBlock(block);
    return;
  }
  if (owner != job_block_cache) {
    // Another thread's block: hand it back, unless its list is full or the
    // owner has exited.
    uintptr_t head = owner->remote.load(std::memory_order_relaxed);
    while (head != kRemoteClosed) {
      const uintptr_t count = head >> kRemoteCountShift;
      if (count >= kMaxCachedJobBlocks) break;
      SetNextFree(block, reinterpret_cast<JobBlock*>(head & kRemotePointerMask));
      const uintptr_t pushed = reinterpret_cast<uintptr_t>(block) | (count + 1) << kRemoteCountShift;
      if (owner->remote.compare_exchange_weak(head, pushed, std::memory_order_release,
                                              std::memory_order_relaxed)) {
        return;
      }
    }
  }
  DeleteJobBlock(block);
  Unref(owner, 1);  // reaches zero only once the owner has exited
}

}  // namespace task_group_internal

absl::Status TaskGroup::WaitUntil(absl::Time deadline) {
  if (WaitUntilImpl(deadline)) return absl::OkStatus();
  return absl::DeadlineExceededError("TaskGroup::WaitUntil: deadline passed with children running");
}

bool TaskGroup::WaitUntilImpl(absl::Time deadline) {
  const bool timed = deadline != absl::InfiniteFuture();
  // Helping rounds that found nothing to do before this worker sleeps until
  // the children running elsewhere finish.
  constexpr int kIdleRoundsBeforeSleep = 64;
  // Asked only once helping first finds nothing: most waits in a fork-join
  // tree end by helping, and the call is not free at that rate.
  enum { kUnknown, kOnWorker, kSuspending, kOutside } where = kUnknown;
  int idle_rounds = 0;
  while (true) {
    int64_t pending = pending_.load(std::memory_order_acquire);
    if ((pending & ~kSleeperBit) == 0) {
      // Only this thread sets the bit, and no child is left to read it.
      if (pending != 0) pending_.fetch_and(~kSleeperBit, std::memory_order_relaxed);
      return true;
    }
    if (timed && deadline <= absl::Now()) return false;
    // RunPendingWork is false off the scheduler's threads.
    if (where != kOutside && scheduler_.RunPendingWork()) {
      idle_rounds = 0;
      continue;
    }
    if (where == kUnknown) {
      // A stackful task suspends at once: its
      // children need this very thread.
      where = !scheduler_.IsCurrentThreadOwned()              ? kOutside
              : CurrentExecutionContext().suspends_task() ? kSuspending
                                                          : kOnWorker;
    }
    if (where == kOnWorker && ++idle_rounds < kIdleRoundsBeforeSleep) {
      std::this_thread::yield();
      continue;
    }
    // Announce the sleep, so that the last child wakes this caller. The bit
    // is set in the same atomic the children count down in, so either the
    // last child sees it or this thread sees the count reach zero. The
    // Parker suspends a stackful task, or sleeps a thread.
    Parker parker;
    sleeper_ = &parker;  // published by the exchange below
    if (!pending_.compare_exchange_weak(pending, pending | kSleeperBit,
                                        std::memory_order_acq_rel)) {
      continue;  // changed meanwhile: look again
    }
    if (!timed) {
      parker.Park();  // the last child unparks; the count is zero now
    } else if (!parker.ParkUntil(deadline)) {
      // Timed out: withdraw the announcement. If children remain when the
      // bit is cleared, none has counted down to zero under it, and none
      // will unpark; else the last child saw it, and its Unpark is on the
      // way, to be consumed before `parker` goes away (Parker's rule).
      const int64_t before = pending_.fetch_and(~kSleeperBit, std::memory_order_acq_rel);
      if ((before & ~kSleeperBit) != 0) return false;
      parker.Park();
    }
    idle_rounds = 0;
  }
}

}  // namespace taskrt
