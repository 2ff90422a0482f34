#ifndef TASKRT_SCHEDULERS_WORK_STEALING_INJECTION_QUEUE_H_
#define TASKRT_SCHEDULERS_WORK_STEALING_INJECTION_QUEUE_H_

// The pool's queue for jobs scheduled from outside it: many producers, and
// consumers (the workers) that take batches.
//
// Producers push onto an intrusive Treiber stack through Job::scheduler_link:
// one compare-and-swap, no lock, no allocation, and never a wait for a
// consumer. A consumer holds the consumer lock, takes the whole stack with
// one atomic operation, reverses it into a private oldest-first list and
// hands out batches from there; consumers contend only with each other.
//
// Closing sets a bit in the word the producers compare-and-swap on, so a
// push either lands before the close (and a consumer that saw the close
// sees the job) or fails. That is what lets Shutdown promise that no
// accepted job is lost.
//
// Order: oldest first among the jobs of one producer; pushes by different
// producers are ordered by when their compare-and-swap succeeded.
//
// Thread safety: every method from any thread.

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "core/mutex.h"
#include "core/scheduler.h"

namespace taskrt::work_stealing_internal {

class InjectionQueue {
 public:
  InjectionQueue() = default;
  InjectionQueue(const InjectionQueue&) = delete;
  InjectionQueue& operator=(const InjectionQueue&) = delete;

  // Queues `job`, unless the queue is closed: then returns false and the
  // caller keeps the job. seq_cst: the push is ordered before the caller's
  // later look for sleeping workers.
  bool Push(Job* job) {
    uintptr_t head = head_.load(std::memory_order_relaxed);
    do {
      if ((head & kClosed) != 0) return false;
      job->scheduler_link = reinterpret_cast<Job*>(head);
    } while (!head_.compare_exchange_weak(head, reinterpret_cast<uintptr_t>(job),
                                          std::memory_order_seq_cst,
                                          std::memory_order_relaxed));
    return true;
  }

  // Refuses every later Push. Jobs already queued stay and can be taken.
  void Close() { head_.fetch_or(kClosed, std::memory_order_seq_cst); }

  // Whether a job may be queued. A pushed job that is not yet taken counts,
  // except while a consumer inside TryTake/Take moves it to the private list
  // (that consumer is awake and publishes what it took).
  bool LooksNonEmpty() const {
    return (head_.load(std::memory_order_seq_cst) & ~kClosed) != 0 ||
           private_size_.load(std::memory_order_seq_cst) > 0;
  }

  // Takes a batch of about 1/`share_divisor` of the queued jobs (at least
  // one, at most `max_batch`), oldest first. Returns the first, or null if
  // nothing is queued, and gives the others to `spill(Job*) -> bool`, which
  // returns false when it has no room (that job and the rest stay queued).
  // TryTake returns null at once when another consumer is taking.
  // The most jobs it held when a consumer looked (its depth just before a
  // take). Any thread.
  size_t HighWater() const { return high_water_.load(std::memory_order_relaxed); }

  template <typename Spill>
  Job* TryTake(size_t share_divisor, size_t max_batch, Spill spill) {
    if (!consumer_mu_.TryLock()) return nullptr;
    Job* job = TakeLocked(share_divisor, max_batch, spill);
    consumer_mu_.Unlock();
    return job;
  }
  template <typename Spill>
  Job* Take(size_t share_divisor, size_t max_batch, Spill spill) {
    MutexLock lock(&consumer_mu_);
    return TakeLocked(share_divisor, max_batch, spill);
  }

 private:
  static constexpr uintptr_t kClosed = 1;  // jobs are aligned: bit 0 is free

  template <typename Spill>
  Job* TakeLocked(size_t share_divisor, size_t max_batch, Spill& spill)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(consumer_mu_) {
    size_t size = private_size_.load(std::memory_order_relaxed);
    // Move what producers pushed since the last take behind the private list.
    if ((head_.load(std::memory_order_relaxed) & ~kClosed) != 0) {
      const uintptr_t taken = head_.fetch_and(kClosed, std::memory_order_seq_cst) & ~kClosed;
      Job* const newest = reinterpret_cast<Job*>(taken);
      Job* oldest = nullptr;
      for (Job* job = newest; job != nullptr; ++size) {  // newest-first -> oldest-first
        Job* const older = job->scheduler_link;
        job->scheduler_link = oldest;
        oldest = job;
        job = older;
      }
      if (private_tail_ == nullptr) {
        private_head_ = oldest;
      } else {
        private_tail_->scheduler_link = oldest;
      }
      private_tail_ = newest;
      private_size_.store(size, std::memory_order_seq_cst);
    }
    if (size > high_water_.load(std::memory_order_relaxed)) {
      high_water_.store(size, std::memory_order_relaxed);
    }
    if (size == 0) return nullptr;
    size_t batch = size / share_divisor + 1;
    if (batch > max_batch) batch = max_batch;
    if (batch > size) batch = size;
    Job* const first = PopPrivate(size);
    for (size_t i = 1; i < batch; ++i) {
      // Unlinked first: once spilled, another thread may run and free it.
      Job* const job = PopPrivate(size);
      if (!spill(job)) {
        job->scheduler_link = private_head_;
        private_head_ = job;
        if (private_tail_ == nullptr) private_tail_ = job;
        ++size;
        break;
      }
    }
    private_size_.store(size, std::memory_order_seq_cst);
    return first;
  }

  // Unlinks the oldest private job; `size` counts the private list.
  Job* PopPrivate(size_t& size) ABSL_EXCLUSIVE_LOCKS_REQUIRED(consumer_mu_) {
    Job* const job = private_head_;
    private_head_ = job->scheduler_link;
    if (private_head_ == nullptr) private_tail_ = nullptr;
    job->scheduler_link = nullptr;
    --size;
    return job;
  }

  // Producers' end: the newest pushed job (linked to older ones) | kClosed.
  alignas(64) std::atomic<uintptr_t> head_{0};

  // Consumers' end, in its own cache line.
  alignas(64) Mutex consumer_mu_;
  Job* private_head_ ABSL_GUARDED_BY(consumer_mu_) = nullptr;  // oldest
  Job* private_tail_ ABSL_GUARDED_BY(consumer_mu_) = nullptr;
  // The private list's length: written under consumer_mu_, read by anyone.
  std::atomic<size_t> private_size_{0};
  std::atomic<size_t> high_water_{0};  // written under consumer_mu_
};

}  // namespace taskrt::work_stealing_internal

#endif  // TASKRT_SCHEDULERS_WORK_STEALING_INJECTION_QUEUE_H_
