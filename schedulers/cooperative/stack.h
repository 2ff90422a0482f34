#ifndef TASKRT_SCHEDULERS_COOPERATIVE_STACK_H_
#define TASKRT_SCHEDULERS_COOPERATIVE_STACK_H_

// Stacks for stackful tasks: mmap'd memory with a guard page below, reused
// through a pool.
//
// Memory
//   Stacks are reserved with MAP_NORESERVE, several in one mapping: a
//   stack's size is address space, and only the pages a task touches become
//   resident. A released stack keeps its pages (reuse is what makes spawning
//   cheap); the pool caches at most `max_cached` stacks and unmaps the rest.
//
// Guard page
//   With `guard_page` set (the default), the page below each stack faults
//   (SIGSEGV) when touched, so an overflow stops there instead of
//   corrupting the memory next to it. Where the kernel has guard regions
//   (madvise MADV_GUARD_INSTALL, Linux 6.13) the guard costs no memory map,
//   so only memory bounds the number of live stacks. Elsewhere it is a
//   PROT_NONE page, which makes each guarded stack two memory maps, and a
//   process may hold at most /proc/sys/vm/max_map_count of them (65530 by
//   default): about 32,000 live guarded stacks. Programs that keep more
//   tasks alive at once on such kernels either raise that limit or turn
//   the guard off; Acquire() says which when it hits the limit.
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

#include "absl/status/status.h"
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
  // Releases `stacks` together: those over the cache are unmapped with one
  // munmap per run of adjacent stacks.
  void ReleaseAll(std::vector<Stack> stacks);

  const StackOptions& options() const { return options_; }
  size_t cached() const { return cached_.size(); }

 private:
  StackPool(const StackOptions& options, size_t page_size);
  size_t guard_size() const { return options_.guard_page ? page_size_ : 0; }
  absl::Status ReserveBatch();
  absl::Status InstallGuard(char* guard) const;
  void Unmap(Stack stack) const;
  // Unmaps `stacks`, with one munmap per run of adjacent ones.
  void UnmapAll(std::vector<Stack> stacks) const;
  // Unmaps `length` bytes from `start`, which hold whole stacks with their
  // guards.
  void UnmapRange(char* start, size_t length) const;

  StackOptions options_;
  size_t page_size_;
  std::vector<Stack> cached_;
  // The part of the last batch mapping not handed out yet: `reserved_left_`
  // stacks, each a guard and a stack, from `reserved_`.
  char* reserved_ = nullptr;
  size_t reserved_left_ = 0;
};

}  // namespace taskrt

#endif  // TASKRT_SCHEDULERS_COOPERATIVE_STACK_H_
