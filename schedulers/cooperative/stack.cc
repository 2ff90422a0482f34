#include "schedulers/cooperative/stack.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"

#if defined(__SANITIZE_ADDRESS__)
#define TASKRT_STACK_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TASKRT_STACK_ASAN 1
#endif
#endif
#ifdef TASKRT_STACK_ASAN
#include <sanitizer/asan_interface.h>
#endif

namespace taskrt {
namespace {

size_t RoundUp(size_t value, size_t multiple) {
  return (value + multiple - 1) / multiple * multiple;
}

}  // namespace

absl::StatusOr<StackPool> StackPool::Create(const StackOptions& options) {
  if (options.size < kMinStackSize || options.size > kMaxStackSize) {
    return absl::InvalidArgumentError(absl::StrCat("stack size ", options.size,
                                                   " is outside [", kMinStackSize, ", ",
                                                   kMaxStackSize, "] bytes"));
  }
  const long page = sysconf(_SC_PAGESIZE);
  return StackPool(options, page > 0 ? static_cast<size_t>(page) : 4096);
}

StackPool::StackPool(const StackOptions& options, size_t page_size)
    : options_(options), page_size_(page_size) {
  options_.size = RoundUp(options.size, page_size_);
}

StackPool::StackPool(StackPool&& other) noexcept
    : options_(other.options_),
      page_size_(other.page_size_),
      cached_(std::exchange(other.cached_, {})) {}

StackPool::~StackPool() {
  for (const Stack& stack : cached_) Unmap(stack);
}

absl::StatusOr<Stack> StackPool::Acquire() {
  if (!cached_.empty()) {
    Stack stack = cached_.back();
    cached_.pop_back();
    return stack;
  }
  const size_t guard = options_.guard_page ? page_size_ : 0;
  const size_t length = guard + options_.size;
  void* mapping = mmap(nullptr, length, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK, -1, 0);
  if (mapping == MAP_FAILED) {
    return absl::ResourceExhaustedError(
        absl::StrCat("stack: mmap of ", length, " bytes failed: ", std::strerror(errno)));
  }
  if (guard != 0 && mprotect(mapping, guard, PROT_NONE) != 0) {
    const int error = errno;
    munmap(mapping, length);
    return absl::ResourceExhaustedError(absl::StrCat(
        "stack: cannot protect the guard page: ", std::strerror(error),
        error == ENOMEM ? " (each guarded stack is two memory maps; the process is at "
                          "/proc/sys/vm/max_map_count: raise it, or set "
                          "StackOptions::guard_page = false)"
                        : ""));
  }
  return Stack{static_cast<char*>(mapping) + guard, options_.size};
}

void StackPool::Release(Stack stack) {
  if (stack.bottom == nullptr) return;
  if (cached_.size() < options_.max_cached) {
    cached_.push_back(stack);
    return;
  }
  Unmap(stack);
}

void StackPool::Unmap(Stack stack) const {
  const size_t guard = options_.guard_page ? page_size_ : 0;
#ifdef TASKRT_STACK_ASAN
  // The fibers' frames left their redzones in the shadow, and munmap()
  // does not clear it: the next mapping at these addresses (an io_uring
  // ring, say) would inherit them and its every write be reported as a
  // stack overflow.
  __asan_unpoison_memory_region(stack.bottom, stack.size);
#endif
  munmap(static_cast<char*>(stack.bottom) - guard, stack.size + guard);
}

}  // namespace taskrt
