#include "schedulers/cooperative/stack.h"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
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

#ifndef MADV_GUARD_INSTALL
#define MADV_GUARD_INSTALL 102
#endif

// Stacks per mapping: one mmap for several spawns, while an idle pool
// holds little address space.
constexpr size_t kStacksPerMapping = 16;

// Cleared for good when the kernel refuses guard regions (EINVAL before
// Linux 6.13); guards are PROT_NONE pages then.
std::atomic<bool> guard_regions_work{true};

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
      cached_(std::exchange(other.cached_, {})),
      reserved_(std::exchange(other.reserved_, nullptr)),
      reserved_left_(std::exchange(other.reserved_left_, 0)) {}

StackPool::~StackPool() {
  UnmapAll(std::move(cached_));
  if (reserved_left_ != 0) UnmapRange(reserved_, reserved_left_ * (guard_size() + options_.size));
}

absl::StatusOr<Stack> StackPool::Acquire() {
  if (!cached_.empty()) {
    Stack stack = cached_.back();
    cached_.pop_back();
    return stack;
  }
  if (reserved_left_ == 0) {
    if (absl::Status reserved = ReserveBatch(); !reserved.ok()) return reserved;
  }
  char* const guard = reserved_;
  const size_t guard_bytes = guard_size();
  if (absl::Status installed = InstallGuard(guard); !installed.ok()) return installed;
  reserved_ += guard_bytes + options_.size;
  --reserved_left_;
  return Stack{guard + guard_bytes, options_.size};
}

absl::Status StackPool::ReserveBatch() {
  const size_t length = kStacksPerMapping * (guard_size() + options_.size);
  void* mapping = mmap(nullptr, length, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK, -1, 0);
  if (mapping == MAP_FAILED) {
    return absl::ResourceExhaustedError(
        absl::StrCat("stack: mmap of ", length, " bytes failed: ", std::strerror(errno)));
  }
  reserved_ = static_cast<char*>(mapping);
  reserved_left_ = kStacksPerMapping;
  return absl::OkStatus();
}

absl::Status StackPool::InstallGuard(char* guard) const {
  if (!options_.guard_page) return absl::OkStatus();
  if (guard_regions_work.load(std::memory_order_relaxed)) {
    if (madvise(guard, page_size_, MADV_GUARD_INSTALL) == 0) return absl::OkStatus();
    if (errno != EINVAL) {
      return absl::ResourceExhaustedError(
          absl::StrCat("stack: cannot install the guard page: ", std::strerror(errno)));
    }
    guard_regions_work.store(false, std::memory_order_relaxed);
  }
  if (mprotect(guard, page_size_, PROT_NONE) == 0) return absl::OkStatus();
  const int error = errno;
  return absl::ResourceExhaustedError(absl::StrCat(
      "stack: cannot protect the guard page: ", std::strerror(error),
      error == ENOMEM ? " (each guarded stack is two memory maps; the process is at "
                        "/proc/sys/vm/max_map_count: raise it, or set "
                        "StackOptions::guard_page = false)"
                      : ""));
}

void StackPool::Release(Stack stack) {
  if (stack.bottom == nullptr) return;
  if (cached_.size() < options_.max_cached) {
    cached_.push_back(stack);
    return;
  }
  Unmap(stack);
}

void StackPool::ReleaseAll(std::vector<Stack> stacks) {
  std::erase_if(stacks, [](const Stack& stack) { return stack.bottom == nullptr; });
  while (!stacks.empty() && cached_.size() < options_.max_cached) {
    cached_.push_back(stacks.back());
    stacks.pop_back();
  }
  UnmapAll(std::move(stacks));
}

void StackPool::UnmapAll(std::vector<Stack> stacks) const {
  std::sort(stacks.begin(), stacks.end(),
            [](const Stack& a, const Stack& b) { return a.bottom < b.bottom; });
  const size_t guard = guard_size();
  const size_t stride = guard + options_.size;
  for (size_t i = 0; i < stacks.size();) {
    char* const start = static_cast<char*>(stacks[i].bottom) - guard;
    size_t length = stride;
    for (++i; i < stacks.size() && static_cast<char*>(stacks[i].bottom) - guard == start + length;
         ++i) {
      length += stride;
    }
    UnmapRange(start, length);
  }
}

void StackPool::Unmap(Stack stack) const {
  UnmapRange(static_cast<char*>(stack.bottom) - guard_size(), guard_size() + stack.size);
}

void StackPool::UnmapRange(char* start, size_t length) const {
#ifdef TASKRT_STACK_ASAN
  // The fibers' frames left their redzones in the shadow, and munmap()
  // does not clear it: the next mapping at these addresses (an io_uring
  // ring, say) would inherit them and its every write be reported as a
  // stack overflow.
  __asan_unpoison_memory_region(start, length);
#endif
  munmap(start, length);
}

}  // namespace taskrt
