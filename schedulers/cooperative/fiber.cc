#include "schedulers/cooperative/fiber.h"

#include <ucontext.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#ifdef TASKRT_FIBER_ASAN
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#endif
#ifdef TASKRT_FIBER_TSAN
#include <sanitizer/tsan_interface.h>
#endif

#ifdef TASKRT_HAVE_ASSEMBLY_SWITCH
extern "C" void taskrt_context_trampoline();
#endif

namespace taskrt {
namespace {

// The context that switched to the one now resuming: how a thread context
// learns its stack's bounds for AddressSanitizer.
thread_local FiberContext* switching_from = nullptr;

uintptr_t AlignDown(uintptr_t value, uintptr_t alignment) { return value & ~(alignment - 1); }

// swapcontext keeps the caller's ucontext_t on the caller's stack: the
// frame lives exactly as long as the context is suspended.
void UcontextJump(void** save, void* load) {
  ucontext_t here;
  *save = &here;
  if (swapcontext(&here, static_cast<ucontext_t*>(load)) != 0) {
    std::perror("taskrt: swapcontext");
    std::abort();
  }
}

}  // namespace

ContextSwitchKind DefaultContextSwitch() {
#ifdef TASKRT_HAVE_ASSEMBLY_SWITCH
  return ContextSwitchKind::kAssembly;
#else
  return ContextSwitchKind::kUcontext;
#endif
}

bool ContextSwitchAvailable(ContextSwitchKind kind) {
#ifdef TASKRT_HAVE_ASSEMBLY_SWITCH
  (void)kind;
  return true;
#else
  return kind == ContextSwitchKind::kUcontext;
#endif
}

const char* ContextSwitchName(ContextSwitchKind kind) {
  return kind == ContextSwitchKind::kAssembly ? "assembly" : "ucontext";
}

FiberContext::FiberContext(ContextSwitchKind kind) : kind_(kind), is_thread_(true) {
#ifdef TASKRT_FIBER_TSAN
  tsan_fiber_ = __tsan_get_current_fiber();
#endif
}

FiberContext::FiberContext(const Stack& stack, StartFunction start, void* arg,
                           ContextSwitchKind kind)
    : kind_(ContextSwitchAvailable(kind) ? kind : ContextSwitchKind::kUcontext),
      stack_(stack),
      start_(start),
      arg_(arg) {
#ifdef TASKRT_FIBER_TSAN
  tsan_fiber_ = __tsan_create_fiber(0);
#endif
  Prepare();
}

FiberContext::~FiberContext() {
#ifdef TASKRT_FIBER_TSAN
  if (!is_thread_) __tsan_destroy_fiber(tsan_fiber_);
#endif
}

void FiberContext::Reset(StartFunction start, void* arg) {
  start_ = start;
  arg_ = arg;
  asan_fake_stack_ = nullptr;
  Prepare();
}

void FiberContext::Prepare() {
#ifdef TASKRT_FIBER_ASAN
  // A stack from a finished fiber still carries the shadow of the frames
  // that fiber left without returning (it ended in SwitchForLast). Clang's
  // frames do not rewrite all of their shadow on entry, so those stale
  // redzones were reported as overflows in the next fiber (libFuzzer found
  // it); start every fiber on a clean stack.
  __asan_unpoison_memory_region(stack_.bottom, stack_.size);
#endif
  const uintptr_t top = AlignDown(reinterpret_cast<uintptr_t>(stack_.top()), 64);
#ifdef TASKRT_HAVE_ASSEMBLY_SWITCH
  if (kind_ == ContextSwitchKind::kAssembly) {
    // The frame taskrt_switch_context pops: control words, r15, r14,
    // r13 (the argument), r12 (the start function), rbx, rbp, and the
    // return address. After the pops rsp is 16-byte aligned, as a call
    // site needs it.
    auto* frame = reinterpret_cast<uint64_t*>(top - 16 - 64);
    const uint32_t mxcsr_default = 0x1F80;  // all exceptions masked, round to nearest
    const uint16_t x87_control_default = 0x037F;
    std::memcpy(&frame[0], &mxcsr_default, sizeof mxcsr_default);
    std::memcpy(reinterpret_cast<char*>(&frame[0]) + 4, &x87_control_default,
                sizeof x87_control_default);
    frame[1] = 0;                                                       // r15
    frame[2] = 0;                                                       // r14
    frame[3] = reinterpret_cast<uint64_t>(this);                        // r13
    frame[4] = reinterpret_cast<uint64_t>(&FiberContext::Start);        // r12
    frame[5] = 0;                                                       // rbx
    frame[6] = 0;                                                       // rbp
    frame[7] = reinterpret_cast<uint64_t>(&taskrt_context_trampoline);  // return address
    saved_ = frame;
    return;
  }
#endif
  saved_ = MakeUcontext(stack_, top, this);
}

// Apart from Prepare(): getcontext returns twice, which makes GCC warn
// about every local of the function that calls it.
void* FiberContext::MakeUcontext(const Stack& stack, uintptr_t top, FiberContext* self_context) {
  auto* context = reinterpret_cast<ucontext_t*>(AlignDown(top - sizeof(ucontext_t), 64));
  if (getcontext(context) != 0) {
    std::perror("taskrt: getcontext");
    std::abort();
  }
  context->uc_stack.ss_sp = stack.bottom;
  context->uc_stack.ss_size = reinterpret_cast<char*>(context) - static_cast<char*>(stack.bottom);
  context->uc_link = nullptr;
  // makecontext passes int arguments: the pointer travels in two halves.
  const auto self = reinterpret_cast<uintptr_t>(self_context);
  auto entry = +[](unsigned high, unsigned low) {
    Start(reinterpret_cast<void*>((static_cast<uintptr_t>(high) << 32) | low));
  };
  makecontext(context, reinterpret_cast<void (*)()>(entry), 2,
              static_cast<unsigned>(self >> 32), static_cast<unsigned>(self & 0xFFFFFFFFu));
  return context;
}

void FiberContext::Start(void* self_pointer) {
  auto* self = static_cast<FiberContext*>(self_pointer);
  self->FinishSwitch();
  self->start_(self->arg_);
  std::fprintf(stderr, "taskrt: a fiber's start function returned; it must switch away\n");
  std::abort();
}

void FiberContext::SwitchForLast(FiberContext& from, FiberContext& to) {
  Jump(from, to, true);
  std::fprintf(stderr, "taskrt: a finished fiber was resumed\n");
  std::abort();
}

void FiberContext::Jump(FiberContext& from, FiberContext& to, bool from_is_finished) {
  switching_from = &from;
#ifdef TASKRT_FIBER_ASAN
  // A null save slot tells ASan the old stack is gone: it frees its fake
  // stack frames.
  __sanitizer_start_switch_fiber(from_is_finished ? nullptr : &from.asan_fake_stack_,
                                 to.stack_.bottom, to.stack_.size);
#else
  (void)from_is_finished;
#endif
#ifdef TASKRT_FIBER_TSAN
  __tsan_switch_to_fiber(to.tsan_fiber_, 0);
#endif
#ifdef TASKRT_HAVE_ASSEMBLY_SWITCH
  if (from.kind_ == ContextSwitchKind::kAssembly) {
    taskrt_switch_context(&from.saved_, to.saved_);
    from.FinishSwitch();
    return;
  }
#endif
  UcontextJump(&from.saved_, to.saved_);
  from.FinishSwitch();
}

void FiberContext::FinishSwitch() {
#ifdef TASKRT_FIBER_ASAN
  const void* previous_bottom = nullptr;
  size_t previous_size = 0;
  __sanitizer_finish_switch_fiber(asan_fake_stack_, &previous_bottom, &previous_size);
  FiberContext* previous = switching_from;
  if (previous != nullptr && previous->is_thread_ && previous->stack_.bottom == nullptr) {
    previous->stack_ = Stack{const_cast<void*>(previous_bottom), previous_size};
  }
#endif
}

}  // namespace taskrt
