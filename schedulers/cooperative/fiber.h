#ifndef TASKRT_SCHEDULERS_COOPERATIVE_FIBER_H_
#define TASKRT_SCHEDULERS_COOPERATIVE_FIBER_H_

// FiberContext: the user-space context switch under stackful tasks.
//
// A context is either a thread's own stack (the default constructor) or a
// fiber that runs a start function on a Stack from stack.h. Switch() saves
// the running context and continues another in the same thread, without a
// system call. Schedulers build on it; user code does not call it.
//
// Implementations
//   kAssembly: hand-written for x86-64 (context_switch_x86_64.S); it saves
//   only the callee-saved registers, MXCSR and the x87 control word.
//   kUcontext: POSIX swapcontext, the portable fallback (it also saves the
//   signal mask, a system call per switch). Both are always built where
//   kAssembly exists, so the tests cover the fallback too.
//
// Sanitizers
//   Every switch tells AddressSanitizer (__sanitizer_start_switch_fiber /
//   __sanitizer_finish_switch_fiber) and ThreadSanitizer (__tsan_*_fiber)
//   which stack is current, so the asan and tsan builds check code running
//   on fibers and report truthfully.
//
// Rules
//   - The start function must never return: a fiber ends by switching away
//     with SwitchForLast(). Returning terminates the process (a bug in the
//     runtime, not something user input can cause). So does resuming a
//     finished fiber.
//   - kUcontext's getcontext and swapcontext fail only when their
//     sigprocmask does, on arguments this file builds itself; a switch
//     that failed halfway leaves no context to continue in, so the process
//     ends with the error printed. No argument of a caller reaches them.
//   - A context is switched to only on the thread that switched away from
//     it, and a thread context only on its own thread.
//   - A stack overflow hits the stack's guard page (SIGSEGV).
//
// Thread safety: none; a context belongs to one thread at a time.

#include <cstddef>
#include <cstdint>

#include "schedulers/cooperative/stack.h"

#if defined(__SANITIZE_ADDRESS__)
#define TASKRT_FIBER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TASKRT_FIBER_ASAN 1
#endif
#endif

#if defined(__SANITIZE_THREAD__)
#define TASKRT_FIBER_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define TASKRT_FIBER_TSAN 1
#endif
#endif

#if defined(__x86_64__)
#define TASKRT_HAVE_ASSEMBLY_SWITCH 1
extern "C" void taskrt_switch_context(void** save_sp, void* load_sp);
#endif

namespace taskrt {

enum class ContextSwitchKind { kAssembly, kUcontext };

// kAssembly where this build has it (x86-64), else kUcontext.
ContextSwitchKind DefaultContextSwitch();
bool ContextSwitchAvailable(ContextSwitchKind kind);
const char* ContextSwitchName(ContextSwitchKind kind);

class FiberContext {
 public:
  using StartFunction = void (*)(void* arg);

  // The calling thread's own stack.
  explicit FiberContext(ContextSwitchKind kind = DefaultContextSwitch());
  // A fiber that runs start(arg) on `stack` (which the caller owns and
  // keeps alive) when first switched to.
  FiberContext(const Stack& stack, StartFunction start, void* arg,
               ContextSwitchKind kind = DefaultContextSwitch());
  ~FiberContext();
  FiberContext(const FiberContext&) = delete;
  FiberContext& operator=(const FiberContext&) = delete;

  // Makes a fiber that finished (or never ran) start over with start(arg).
  void Reset(StartFunction start, void* arg);

  // Saves the running context into `from` and continues `to`. Returns when
  // something switches back to `from`.
  static void Switch(FiberContext& from, FiberContext& to) {
#if defined(TASKRT_HAVE_ASSEMBLY_SWITCH) && !defined(TASKRT_FIBER_ASAN) && !defined(TASKRT_FIBER_TSAN)
    // Inline: without sanitizers to tell, an assembly switch is the whole
    // job, and every call level it saves is a return that could mispredict.
    if (from.kind_ == ContextSwitchKind::kAssembly) {
      taskrt_switch_context(&from.saved_, to.saved_);
      return;
    }
#endif
    Jump(from, to, false);
  }

  // As Switch, for a `from` whose start function is done: it never resumes,
  // and AddressSanitizer frees its fake stack.
  [[noreturn]] static void SwitchForLast(FiberContext& from, FiberContext& to);

  ContextSwitchKind kind() const { return kind_; }

  // Starts loading what a suspended fiber resumes from into the cache, so
  // that a later Switch to it waits less for memory: for kAssembly the
  // 64-byte frame the switch pops and the callers' frames above it, for
  // kUcontext only the start of its ucontext_t. No test of kind_: with one
  // around them, GCC 12 removed both prefetches.
  void PrefetchResume() const {
    const char* saved = static_cast<const char*>(saved_);
    __builtin_prefetch(saved);
    __builtin_prefetch(saved + 64);
  }

 private:
  static void Start(void* self);
  static void Jump(FiberContext& from, FiberContext& to, bool from_is_finished);
  void Prepare();
  static void* MakeUcontext(const Stack& stack, uintptr_t top, FiberContext* self);
  void FinishSwitch();

  const ContextSwitchKind kind_;
  void* saved_ = nullptr;  // stack pointer (kAssembly) or ucontext_t*
  Stack stack_;            // a thread context learns its own for ASan
  StartFunction start_ = nullptr;
  void* arg_ = nullptr;
  [[maybe_unused]] bool is_thread_ = false;  // read by the ASan and TSan paths only
  void* asan_fake_stack_ = nullptr;
  [[maybe_unused]] void* tsan_fiber_ = nullptr;  // TSan builds only
};

}  // namespace taskrt

#endif  // TASKRT_SCHEDULERS_COOPERATIVE_FIBER_H_
