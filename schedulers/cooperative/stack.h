#ifndef TASKRT_SCHEDULERS_COOPERATIVE_STACK_H_
#define TASKRT_SCHEDULERS_COOPERATIVE_STACK_H_

// Stacks for stackful tasks: mmap'd memory with a guard page below, reused
// through a pool.
//
// Memory
//   A stack is reserved with MAP_NORESERVE: its size is address space, and
//   only the pages a task touches become resident. A released stack keeps
//   its pages (reuse is what makes spawning cheap); the pool caches at most
//   `max_cached` stacks and unmaps the rest.
//
// Guard page
//   With `guard_page` set (the default), the page below each stack is
//   PROT_NONE, so an overflow faults (SIGSEGV) instead of corrupting the
//   memory next to it. Linux counts each guarded stack as two memory maps,
//   and a process may hold at most /proc/sys/vm/max_map_count of them
//   (65530 by default): about 32,000 live guarded stacks. Programs that keep
//   more tasks alive at once either raise that limit or turn the guard off;
//   Acquire() says which when it hits the limit.
//
// Thread safety
//   A StackPool is not thread-safe: it belongs to one scheduler thread.
//
// Errors
//   Acquire: kResourceExhausted when the kernel refuses memory or maps.
//   Construction through StackPool::Create: kInvalidArgument for a size
//   below kMinStackSize or above kMaxStackSize.

#include <cstddef>
#include <vector>

#include "absl/status/statusor.h"

namespace taskrt {

struct StackOptions {
  // Usable bytes per stack, rounded up to whole pages. Only touched pages
  // cost memory, so a generous size is cheap.
  size_t size = 256 * 1024;
  bool guard_page = true;
  // Released stacks kept for reuse.
  size_t max_cached = 1024;
};

// One stack: [bottom, bottom + size) is usable; it grows down from the top.
struct Stack {
  void* bottom = nullptr;
  size_t size = 0;
  void* top() const { return static_cast<char*>(bottom) + size; }
};

class StackPool {
 public:
  static constexpr size_t kMinStackSize = 16 * 1024;
  static constexpr size_t kMaxStackSize = size_t{1} << 30;

  static absl::StatusOr<StackPool> Create(const StackOptions& options);

  StackPool(StackPool&& other) noexcept;
  StackPool& operator=(StackPool&&) = delete;
  StackPool(const StackPool&) = delete;
  ~StackPool();

  absl::StatusOr<Stack> Acquire();
  void Release(Stack stack);

  const StackOptions& options() const { return options_; }
  size_t cached() const { return cached_.size(); }

 private:
  StackPool(const StackOptions& options, size_t page_size);
  void Unmap(Stack stack) const;

  StackOptions options_;
  size_t page_size_;
  std::vector<Stack> cached_;
};

}  // namespace taskrt

#endif  // TASKRT_SCHEDULERS_COOPERATIVE_STACK_H_
