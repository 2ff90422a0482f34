#ifndef TASKRT_CORE_COUNTERS_H_
#define TASKRT_CORE_COUNTERS_H_

// Counters for a backend's metrics: written on the hot path, read as a
// snapshot from any thread. Relaxed atomics: a snapshot is a consistent
// count of each counter on its own, not of all of them at one instant.

#include <atomic>
#include <cstdint>

namespace taskrt {

// A count that one thread writes and any thread reads. Adding is a relaxed
// load and store, with no read-modify-write (no locked instruction), which
// only the single writer makes correct.
class OwnedCounter {
 public:
  void Add(uint64_t n = 1) {
    value_.store(value_.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
  }
  // Takes back what was added (a message taken back, say); never below 0.
  void Subtract(uint64_t n) {
    const uint64_t value = value_.load(std::memory_order_relaxed);
    value_.store(value >= n ? value - n : 0, std::memory_order_relaxed);
  }
  // Keeps the largest value seen (a high-water mark).
  void RaiseTo(uint64_t candidate) {
    if (candidate > value_.load(std::memory_order_relaxed)) {
      value_.store(candidate, std::memory_order_relaxed);
    }
  }
  uint64_t Read() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<uint64_t> value_{0};
};

// A count that any thread may add to.
class SharedCounter {
 public:
  void Add(uint64_t n = 1) { value_.fetch_add(n, std::memory_order_relaxed); }
  // Takes back an Add of `n` (work counted, then refused).
  void Subtract(uint64_t n) { value_.fetch_sub(n, std::memory_order_relaxed); }
  void RaiseTo(uint64_t candidate) {
    uint64_t seen = value_.load(std::memory_order_relaxed);
    while (candidate > seen &&
           !value_.compare_exchange_weak(seen, candidate, std::memory_order_relaxed)) {
    }
  }
  uint64_t Read() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<uint64_t> value_{0};
};

}  // namespace taskrt

#endif  // TASKRT_CORE_COUNTERS_H_
