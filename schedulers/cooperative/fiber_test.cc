#include "schedulers/cooperative/fiber.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cmath>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "schedulers/cooperative/stack.h"

#ifdef TASKRT_FIBER_ASAN
#include <sanitizer/asan_interface.h>
#endif

namespace taskrt {
namespace {

class FiberTest : public ::testing::TestWithParam<ContextSwitchKind> {
 protected:
  void SetUp() override {
    absl::StatusOr<StackPool> pool = StackPool::Create(StackOptions{});
    ASSERT_TRUE(pool.ok()) << pool.status();
    pool_ = std::make_unique<StackPool>(*std::move(pool));
  }
  Stack NewStack() {
    absl::StatusOr<Stack> stack = pool_->Acquire();
    EXPECT_TRUE(stack.ok()) << stack.status();
    return stack.ok() ? *stack : Stack{};
  }

  std::unique_ptr<StackPool> pool_;
};

// A fiber that appends to a log and switches back to the thread each step.
struct Stepper {
  FiberContext* thread = nullptr;
  std::unique_ptr<FiberContext> self;
  std::vector<std::string>* log = nullptr;
  int steps = 0;

  static void Run(void* arg) {
    auto* stepper = static_cast<Stepper*>(arg);
    for (int i = 0; i < stepper->steps; ++i) {
      stepper->log->push_back("fiber " + std::to_string(i));
      FiberContext::Switch(*stepper->self, *stepper->thread);
    }
    stepper->log->push_back("fiber done");
    FiberContext::SwitchForLast(*stepper->self, *stepper->thread);
  }
};

TEST_P(FiberTest, SwitchesIntoAFiberAndBackInOrder) {
  std::vector<std::string> log;
  FiberContext thread(GetParam());
  Stepper stepper{&thread, nullptr, &log, 3};
  Stack stack = NewStack();
  stepper.self = std::make_unique<FiberContext>(stack, &Stepper::Run, &stepper, GetParam());
  for (int i = 0; i < 4; ++i) {
    log.push_back("thread " + std::to_string(i));
    FiberContext::Switch(thread, *stepper.self);
  }
  EXPECT_EQ(log, (std::vector<std::string>{"thread 0", "fiber 0", "thread 1", "fiber 1",
                                           "thread 2", "fiber 2", "thread 3", "fiber done"}));
  stepper.self.reset();
  pool_->Release(stack);
}

// Locals in callee-saved registers and floating-point state survive
// thousands of switches in both directions.
struct Accumulator {
  FiberContext* thread = nullptr;
  FiberContext* self = nullptr;
  double fiber_sum = 0;
  static void Run(void* arg) {
    auto* a = static_cast<Accumulator*>(arg);
    double sum = 0;
    for (int i = 1; i <= 10000; ++i) {
      sum += std::sqrt(static_cast<double>(i));
      FiberContext::Switch(*a->self, *a->thread);
    }
    a->fiber_sum = sum;
    FiberContext::SwitchForLast(*a->self, *a->thread);
  }
};

TEST_P(FiberTest, StatePreservedAcrossManySwitches) {
  FiberContext thread(GetParam());
  Accumulator accumulator;
  Stack stack = NewStack();
  FiberContext fiber(stack, &Accumulator::Run, &accumulator, GetParam());
  accumulator.thread = &thread;
  accumulator.self = &fiber;
  double expected = 0;
  long long thread_sum = 0;
  for (int i = 1; i <= 10001; ++i) {
    thread_sum += i;
    if (i <= 10000) expected += std::sqrt(static_cast<double>(i));
    FiberContext::Switch(thread, fiber);
  }
  EXPECT_EQ(thread_sum, 10001LL * 10002 / 2);
  EXPECT_DOUBLE_EQ(accumulator.fiber_sum, expected);
  pool_->Release(stack);
}

struct Thrower {
  FiberContext* thread = nullptr;
  FiberContext* self = nullptr;
  std::string caught;
  static void Run(void* arg) {
    auto* t = static_cast<Thrower*>(arg);
    try {
      throw std::runtime_error("inside the fiber");
    } catch (const std::exception& e) {
      t->caught = e.what();
    }
    FiberContext::SwitchForLast(*t->self, *t->thread);
  }
};

TEST_P(FiberTest, ExceptionsUnwindWithinAFiber) {
  FiberContext thread(GetParam());
  Thrower thrower;
  Stack stack = NewStack();
  FiberContext fiber(stack, &Thrower::Run, &thrower, GetParam());
  thrower.thread = &thread;
  thrower.self = &fiber;
  FiberContext::Switch(thread, fiber);
  EXPECT_EQ(thrower.caught, "inside the fiber");
  pool_->Release(stack);
}

struct Counter {
  FiberContext* thread = nullptr;
  FiberContext* self = nullptr;
  int runs = 0;
  static void Run(void* arg) {
    auto* c = static_cast<Counter*>(arg);
    ++c->runs;
    FiberContext::SwitchForLast(*c->self, *c->thread);
  }
};

TEST_P(FiberTest, ResetRunsAFinishedFiberAgainOnTheSameStack) {
  FiberContext thread(GetParam());
  Counter counter;
  Stack stack = NewStack();
  FiberContext fiber(stack, &Counter::Run, &counter, GetParam());
  counter.thread = &thread;
  counter.self = &fiber;
  for (int i = 0; i < 100; ++i) {
    if (i > 0) fiber.Reset(&Counter::Run, &counter);
    FiberContext::Switch(thread, fiber);
  }
  EXPECT_EQ(counter.runs, 100);
  pool_->Release(stack);
}

// Fibers switch among themselves, not only to and from the thread.
struct Ring {
  std::vector<std::unique_ptr<FiberContext>> fibers;
  FiberContext* thread = nullptr;
  std::vector<int> visits;
  static void Run(void* arg);
};
struct RingMember {
  Ring* ring;
  size_t index;
};
void Ring::Run(void* arg) {
  auto* member = static_cast<RingMember*>(arg);
  Ring& ring = *member->ring;
  const size_t i = member->index;
  ring.visits.push_back(static_cast<int>(i));
  FiberContext& next = i + 1 < ring.fibers.size() ? *ring.fibers[i + 1] : *ring.thread;
  FiberContext::SwitchForLast(*ring.fibers[i], next);
}

TEST_P(FiberTest, FibersSwitchDirectlyToEachOther) {
  FiberContext thread(GetParam());
  Ring ring;
  ring.thread = &thread;
  std::vector<RingMember> members;
  std::vector<Stack> stacks;
  constexpr size_t kFibers = 100;
  members.reserve(kFibers);
  for (size_t i = 0; i < kFibers; ++i) {
    members.push_back({&ring, i});
    stacks.push_back(NewStack());
    ring.fibers.push_back(
        std::make_unique<FiberContext>(stacks.back(), &Ring::Run, &members.back(), GetParam()));
  }
  FiberContext::Switch(thread, *ring.fibers[0]);
  ASSERT_EQ(ring.visits.size(), kFibers);
  for (size_t i = 0; i < kFibers; ++i) EXPECT_EQ(ring.visits[i], static_cast<int>(i));
  ring.fibers.clear();
  for (const Stack& stack : stacks) pool_->Release(stack);
}

// Deep recursion that the compiler cannot turn into a loop; the bound is
// far beyond any stack of the test (1 GiB of frames).
int Recurse(volatile char* previous, int depth) {
  if (depth > 1'000'000) return 0;
  volatile char frame[1024];
  frame[0] = static_cast<char>(depth);
  if (previous != nullptr) frame[1] = previous[0];
  return Recurse(frame, depth + 1) + frame[0];
}

struct Overflower {
  static void Run(void*) {
    Recurse(nullptr, 0);
    std::abort();
  }
};

void OverflowAFiberStack(ContextSwitchKind kind) {
  absl::StatusOr<StackPool> pool =
      StackPool::Create(StackOptions{.size = 64 * 1024, .guard_page = true});
  if (!pool.ok()) std::_Exit(0);  // a clean exit is not the death expected: the test fails
  absl::StatusOr<Stack> stack = pool->Acquire();
  if (!stack.ok()) std::_Exit(0);
  FiberContext thread(kind);
  FiberContext fiber(*stack, &Overflower::Run, nullptr, kind);
  FiberContext::Switch(thread, fiber);
}

TEST_P(FiberTest, StackOverflowHitsTheGuardPage) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
#if defined(TASKRT_ASAN) || defined(TASKRT_TSAN)
  // The sanitizers catch the fault and report it before dying.
  EXPECT_DEATH(OverflowAFiberStack(GetParam()), "stack-overflow|SEGV|DEADLYSIGNAL");
#else
  EXPECT_EXIT(OverflowAFiberStack(GetParam()), ::testing::KilledBySignal(SIGSEGV), "");
#endif
}

INSTANTIATE_TEST_SUITE_P(ContextSwitches, FiberTest,
                         ::testing::Values(ContextSwitchKind::kAssembly,
                                           ContextSwitchKind::kUcontext),
                         [](const ::testing::TestParamInfo<ContextSwitchKind>& info) {
                           return std::string(ContextSwitchName(info.param));
                         });

TEST(StackPoolTest, RefusesSizesOutsideTheLimits) {
  EXPECT_EQ(StackPool::Create(StackOptions{.size = 1024}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(StackPool::Create(StackOptions{.size = size_t{1} << 40}).status().code(),
            absl::StatusCode::kInvalidArgument);
}

// Stacks come several to a mapping: the guard below each one, not only
// the first of a mapping, stops a write.
TEST(StackPoolTest, EveryStackOfAMappingHasItsGuard) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(
      {
        absl::StatusOr<StackPool> pool = StackPool::Create(StackOptions{.size = 16 * 1024});
        if (!pool.ok()) std::_Exit(0);
        absl::StatusOr<Stack> first = pool->Acquire();
        absl::StatusOr<Stack> second = pool->Acquire();
        if (!first.ok() || !second.ok()) std::_Exit(0);
        static_cast<volatile char*>(second->bottom)[-1] = 1;
        std::_Exit(0);
      },
      "");
}

// ReleaseAll unmaps every stack over the cache (adjacent ones in one go)
// and keeps the cached ones usable.
TEST(StackPoolTest, ReleaseAllUnmapsWhatItDoesNotCache) {
  absl::StatusOr<StackPool> pool = StackPool::Create(StackOptions{.size = 16 * 1024, .max_cached = 2});
  ASSERT_TRUE(pool.ok()) << pool.status();
  std::vector<Stack> stacks;
  for (int i = 0; i < 40; ++i) {
    absl::StatusOr<Stack> stack = pool->Acquire();
    ASSERT_TRUE(stack.ok()) << stack.status();
    static_cast<char*>(stack->top())[-1] = 1;
    stacks.push_back(*stack);
  }
  pool->ReleaseAll(stacks);
  EXPECT_EQ(pool->cached(), 2u);
  const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  int mapped = 0;
  unsigned char resident;
  for (const Stack& stack : stacks) {
    if (mincore(static_cast<char*>(stack.top()) - page, page, &resident) == 0) {
      ++mapped;
    } else {
      EXPECT_EQ(errno, ENOMEM);
    }
  }
  EXPECT_EQ(mapped, 2);
  for (int i = 0; i < 2; ++i) {
    absl::StatusOr<Stack> again = pool->Acquire();
    ASSERT_TRUE(again.ok());
    static_cast<char*>(again->top())[-1] = 2;  // still writable
    pool->Release(*again);
  }
}

TEST(StackPoolTest, RoundsToPagesAndReusesReleasedStacks) {
  absl::StatusOr<StackPool> pool = StackPool::Create(StackOptions{.size = 20000, .max_cached = 1});
  ASSERT_TRUE(pool.ok()) << pool.status();
  EXPECT_EQ(pool->options().size % 4096, 0u);
  EXPECT_GE(pool->options().size, 20000u);
  absl::StatusOr<Stack> first = pool->Acquire();
  absl::StatusOr<Stack> second = pool->Acquire();
  ASSERT_TRUE(first.ok() && second.ok());
  EXPECT_NE(first->bottom, second->bottom);
  static_cast<char*>(first->top())[-1] = 1;  // writable up to the top
  static_cast<char*>(first->bottom)[0] = 1;  // and down to the bottom
  pool->Release(*first);
  pool->Release(*second);  // over max_cached: unmapped
  EXPECT_EQ(pool->cached(), 1u);
  absl::StatusOr<Stack> again = pool->Acquire();
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->bottom, first->bottom);
  pool->Release(*again);
}

}  // namespace
}  // namespace taskrt

namespace taskrt {
namespace {

// A released stack's memory goes back to the system with a clean shadow:
// under AddressSanitizer the next mapping at its addresses (an io_uring
// ring, in the fuzzer that found it) must not inherit the redzones its
// fibers' frames left. Without ASan the test checks only that the memory
// comes back writable.
TEST(StackPoolTest, AnUnmappedStackLeavesNoShadowBehind) {
  StackOptions options;
  options.guard_page = false;
  options.max_cached = 0;  // every release unmaps
  absl::StatusOr<StackPool> pool = StackPool::Create(options);
  ASSERT_TRUE(pool.ok()) << pool.status();
  absl::StatusOr<Stack> stack = pool->Acquire();
  ASSERT_TRUE(stack.ok()) << stack.status();
  void* const bottom = stack->bottom;
  const size_t size = stack->size;
#ifdef TASKRT_FIBER_ASAN
  // What a fiber that never returned leaves: poisoned frames.
  __asan_poison_memory_region(bottom, size);
#endif
  pool->Release(*stack);
  void* again = mmap(bottom, size, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
  if (again == MAP_FAILED) GTEST_SKIP() << "the addresses were taken meanwhile: " << errno;
  ASSERT_EQ(again, bottom);
  volatile char* bytes = static_cast<volatile char*>(again);
  for (size_t i = 0; i < size; i += 512) bytes[i] = 1;  // ASan reports here if the shadow stayed
  EXPECT_EQ(bytes[0], 1);
  munmap(again, size);
}

}  // namespace
}  // namespace taskrt
