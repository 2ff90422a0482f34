#ifndef TASKRT_CORE_MUTEX_H_
#define TASKRT_CORE_MUTEX_H_

// An annotated mutex over std::mutex, as Marl's marl/mutex.h does.
//
// Why not absl::Mutex: Debian's Abseil is prebuilt without ThreadSanitizer
// instrumentation, so TSAN reports races on data an absl::Mutex protects.
// Why not bare std::mutex: it carries no Clang thread-safety annotations.
// This wrapper gives both: TSAN sees std::mutex, and -Wthread-safety sees the
// ABSL_* annotations.

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>

#include "absl/base/thread_annotations.h"

namespace taskrt {

class ABSL_LOCKABLE Mutex {
 public:
  Mutex() = default;
  Mutex(const Mutex&) = delete;
  Mutex& operator=(const Mutex&) = delete;

  void Lock() ABSL_EXCLUSIVE_LOCK_FUNCTION() { mutex_.lock(); }
  void Unlock() ABSL_UNLOCK_FUNCTION() { mutex_.unlock(); }
  bool TryLock() ABSL_EXCLUSIVE_TRYLOCK_FUNCTION(true) { return mutex_.try_lock(); }

 private:
  friend class CondVar;
  std::mutex mutex_;
};

class ABSL_SCOPED_LOCKABLE MutexLock {
 public:
  explicit MutexLock(Mutex* mutex) ABSL_EXCLUSIVE_LOCK_FUNCTION(mutex) : mutex_(mutex) {
    mutex_->Lock();
  }
  ~MutexLock() ABSL_UNLOCK_FUNCTION() { mutex_->Unlock(); }
  MutexLock(const MutexLock&) = delete;
  MutexLock& operator=(const MutexLock&) = delete;

 private:
  Mutex* const mutex_;
};

// A lock for critical sections of a few instructions that are rarely
// contended (one thread does nearly all the locking): an uncontended
// acquire and release are one atomic exchange and one store, inline, where
// std::mutex costs two calls into the C library. A waiter spins, yielding
// the processor between tries, so a holder that was preempted gets to run.
class ABSL_LOCKABLE SpinLock {
 public:
  SpinLock() = default;
  SpinLock(const SpinLock&) = delete;
  SpinLock& operator=(const SpinLock&) = delete;

  void Lock() ABSL_EXCLUSIVE_LOCK_FUNCTION() {
    while (locked_.exchange(true, std::memory_order_acquire)) {
      while (locked_.load(std::memory_order_relaxed)) std::this_thread::yield();
    }
  }
  void Unlock() ABSL_UNLOCK_FUNCTION() { locked_.store(false, std::memory_order_release); }

 private:
  std::atomic<bool> locked_{false};
};

class ABSL_SCOPED_LOCKABLE SpinLockHolder {
 public:
  explicit SpinLockHolder(SpinLock* lock) ABSL_EXCLUSIVE_LOCK_FUNCTION(lock) : lock_(lock) {
    lock_->Lock();
  }
  ~SpinLockHolder() ABSL_UNLOCK_FUNCTION() { lock_->Unlock(); }
  SpinLockHolder(const SpinLockHolder&) = delete;
  SpinLockHolder& operator=(const SpinLockHolder&) = delete;

 private:
  SpinLock* const lock_;
};

// A condition variable that waits on a held taskrt::Mutex.
class CondVar {
 public:
  // Waits until `done()` is true. `mutex` is held on entry and on return.
  template <typename Predicate>
  void Wait(Mutex* mutex, Predicate done) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex) {
    std::unique_lock<std::mutex> lock(mutex->mutex_, std::adopt_lock);
    cv_.wait(lock, done);
    lock.release();  // still held: the caller's MutexLock unlocks it
  }

  // As Wait, but gives up at `deadline`; returns whether `done()` is true.
  template <typename Predicate>
  bool WaitUntil(Mutex* mutex, std::chrono::steady_clock::time_point deadline, Predicate done)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex) {
    std::unique_lock<std::mutex> lock(mutex->mutex_, std::adopt_lock);
    const bool result = cv_.wait_until(lock, deadline, done);
    lock.release();
    return result;
  }

  void Signal() { cv_.notify_one(); }
  void SignalAll() { cv_.notify_all(); }

 private:
  std::condition_variable cv_;
};

}  // namespace taskrt

#endif  // TASKRT_CORE_MUTEX_H_
