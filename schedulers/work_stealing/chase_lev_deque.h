#ifndef TASKRT_SCHEDULERS_WORK_STEALING_CHASE_LEV_DEQUE_H_
#define TASKRT_SCHEDULERS_WORK_STEALING_CHASE_LEV_DEQUE_H_

// A bounded Chase-Lev work-stealing deque of pointers (Lê, Pop, Cohen and
// Zappa Nardelli, "Correct and Efficient Work-Stealing for Weak Memory
// Models", PPoPP 2013). The owner pushes and pops at the bottom (LIFO, for
// locality in fork-join); thieves take from the top (FIFO, the oldest work).
//
// The paper's standalone fences are folded into seq_cst operations on
// top_/bottom_, because ThreadSanitizer does not model standalone fences.
// Bounded: Push() returns false when full and the caller puts the item
// elsewhere (the pool's injection queue), so there is no buffer to grow and
// reclaim.
//
// Thread safety: Push/Pop by the owning worker only; Steal and
// LooksNonEmpty from any thread.

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>

namespace taskrt::work_stealing_internal {

template <typename T>
class ChaseLevDeque {
 public:
  static constexpr int64_t kCapacity = 1024;  // a power of two

  ChaseLevDeque() : slots_(new std::atomic<T*>[kCapacity]) {
    for (int64_t i = 0; i < kCapacity; ++i) slots_[i].store(nullptr, std::memory_order_relaxed);
  }

  // Owner only. False when full. `size_after`, if given, gets the number of
  // items after the push as the owner saw it (thieves may have taken some
  // since).
  bool Push(T* item, int64_t* size_after = nullptr) {
    const int64_t bottom = bottom_.load(std::memory_order_relaxed);
    const int64_t top = top_.load(std::memory_order_acquire);
    if (bottom - top >= kCapacity) return false;
    slots_[bottom & (kCapacity - 1)].store(item, std::memory_order_relaxed);
    // seq_cst: also orders the push before the pool's check for sleepers.
    bottom_.store(bottom + 1, std::memory_order_seq_cst);
    if (size_after != nullptr) *size_after = bottom + 1 - top;
    return true;
  }

  // Owner only. The newest item, or null.
  T* Pop() {
    const int64_t bottom = bottom_.load(std::memory_order_relaxed) - 1;
    bottom_.store(bottom, std::memory_order_seq_cst);
    int64_t top = top_.load(std::memory_order_seq_cst);
    if (top > bottom) {  // empty
      bottom_.store(bottom + 1, std::memory_order_relaxed);
      return nullptr;
    }
    T* item = slots_[bottom & (kCapacity - 1)].load(std::memory_order_relaxed);
    if (top == bottom) {  // the last item: race the thieves for it
      if (!top_.compare_exchange_strong(top, top + 1, std::memory_order_seq_cst,
                                        std::memory_order_relaxed)) {
        item = nullptr;
      }
      bottom_.store(bottom + 1, std::memory_order_relaxed);
    }
    return item;
  }

  // Any thread. The oldest item, or null if empty or another thief won.
  T* Steal() {
    int64_t top = top_.load(std::memory_order_seq_cst);
    const int64_t bottom = bottom_.load(std::memory_order_seq_cst);
    if (top >= bottom) return nullptr;
    T* item = slots_[top & (kCapacity - 1)].load(std::memory_order_relaxed);
    if (!top_.compare_exchange_strong(top, top + 1, std::memory_order_seq_cst,
                                      std::memory_order_relaxed)) {
      return nullptr;
    }
    return item;
  }

  bool LooksNonEmpty() const {
    return bottom_.load(std::memory_order_seq_cst) > top_.load(std::memory_order_seq_cst);
  }

 private:
  // Separate cache lines: the owner writes bottom_, thieves write top_.
  alignas(64) std::atomic<int64_t> top_{0};
  alignas(64) std::atomic<int64_t> bottom_{0};
  alignas(64) std::unique_ptr<std::atomic<T*>[]> slots_;
};

}  // namespace taskrt::work_stealing_internal

#endif  // TASKRT_SCHEDULERS_WORK_STEALING_CHASE_LEV_DEQUE_H_
