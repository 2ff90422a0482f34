#ifndef TASKRT_CORE_EXECUTION_CONTEXT_H_
#define TASKRT_CORE_EXECUTION_CONTEXT_H_

// What "block" means for the code that is running now.
//
// Every blocking call of the runtime (a channel's blocking Send and Receive,
// later joins and pauses) waits through the current execution context rather
// than calling poll() itself. On an OS thread the context parks the thread.
// A cooperative scheduler installs a context of its own for each stackful
// task, which suspends just that task and lets the others run. That is what
// makes every channel backend work on every scheduler.
//
// Thread safety: the current context is per thread (per stackful task once a
// scheduler switches contexts); WaitFd, Yield, Park and SleepUntil are
// called only by the code that is running in that context. Parker::Unpark
// may be called from any thread.

#include <poll.h>

#include <atomic>
#include <chrono>
#include <cstdint>

#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"

namespace taskrt {

class ExecutionContext;

// The pointers one task keeps under ExecutionContext::task_local(). A task
// holds one or two, so a short list searched in order beats a map; Clear()
// keeps its capacity for the next task on a reused record.
class TaskLocals {
 public:
  void* Get(const void* key) const {
    for (const auto& [entry_key, value] : entries_) {
      if (entry_key == key) return value;
    }
    return nullptr;
  }
  void Set(const void* key, void* value);
  void Clear() { entries_.clear(); }

 private:
  std::vector<std::pair<const void*, void*>> entries_;
};

// A one-shot wake-up for one blocked caller, in any execution context: the
// primitive under joins and waits. Park() blocks the caller until Unpark()
// has been called (at once if it already was); an OS thread sleeps, a
// stackful task suspends and its scheduler runs the others.
//
// Rules: Unpark() at most once, from any thread. Park() by one caller; it
// consumes the Unpark. The Parker must outlive both calls: keep it where
// the parked caller lives (its stack), as Unpark() is done with it before
// Park() returns.
//
// Timed waits: ParkUntil(deadline) returns true once unparked, as Park()
// does, or false at the deadline. A false return leaves the Parker as if
// nobody had parked, but the Unpark may still come: whoever holds a pointer
// to this Parker may be about to call it. So after a false return the
// caller must, before the Parker goes away, either take itself out of
// whatever would unpark it (withdraw its registration, with the same
// atomic that the unparking side takes it with) and thereby know that no
// Unpark will come, or, when that fails because the unparking side took it
// first, Park() (or ParkUntil again) to consume the Unpark that is on its
// way; that wait is short. A deadline in the past returns at once: true if
// already unparked, else false.
class Parker {
 public:
  Parker() = default;
  Parker(const Parker&) = delete;
  Parker& operator=(const Parker&) = delete;

  void Park();
  bool ParkUntil(absl::Time deadline);
  void Unpark();

 private:
  friend class ExecutionContext;

  // The whole hand-off is one atomic: a suspended task is woken with one
  // exchange, a sleeping OS thread with one exchange and a futex wake.
  enum State : uint32_t {
    kIdle,            // neither side has come yet (or a timed park gave up)
    kTaskSuspended,   // a suspending context registered waker_
    kThreadSleeping,  // an OS thread sleeps in futex_wait on state_
    kUnparked,
    // A suspending context registered waker_ and a deadline: the timer and
    // Unpark() race for the state, and whoever moves it on resumes the task.
    kTaskSuspendedUntil,
  };
  std::atomic<uint32_t> state_{kIdle};
  // Written before state_ becomes kTaskSuspended, read after Unpark() sees it.
  ExecutionContext* waker_ = nullptr;
  void* waker_token_ = nullptr;
};

class ExecutionContext {
 public:
  virtual ~ExecutionContext() = default;

  // Blocks the calling code until `fd` reports one of `poll_events` (POLLIN,
  // POLLOUT), or an error or hang-up condition, which the caller discovers
  // by retrying its non-blocking operation. Returns an error only when
  // waiting itself failed (a bad fd, or a context that is shutting down).
  absl::Status WaitFd(int fd, short poll_events) {
    return WaitFdUntil(fd, poll_events, absl::InfiniteFuture());
  }

  // As WaitFd, giving up at `deadline` with kDeadlineExceeded.
  virtual absl::Status WaitFdUntil(int fd, short poll_events, absl::Time deadline) = 0;

  // How long a blocking call retries its non-blocking operation before it
  // waits. A park-and-wake costs tens of microseconds on virtual machines,
  // so an OS thread that expects a quick answer (a round trip)
  // is faster spinning briefly first; a cooperative task should instead let
  // the others run at once (zero).
  virtual std::chrono::nanoseconds spin_before_wait() const { return std::chrono::nanoseconds(0); }

  // Lets other work of the same scheduler run, if any is ready, and
  // returns. On an OS thread it yields the processor (std::this_thread).
  virtual void Yield();

  // Lets the other work of the same scheduler that is ready now run once,
  // then returns; says whether there was any. A stackful task gives the
  // thread to the next ready task (and returns false at once, without a
  // switch, when none is ready); an OS thread does nothing and returns
  // false. Blocking calls use it before they wait: when the peer they wait
  // for is a ready task on the same thread (a same-thread round trip), it
  // answers meanwhile and the caller needs neither a park nor a wake-up.
  virtual bool YieldToReady() { return false; }

  // Blocks until parker.Unpark(); see Parker. The default sleeps the thread.
  virtual void Park(Parker& parker);

  // As Park, giving up at `deadline`: true when unparked, false at the
  // deadline (see Parker for what the caller must do then). The default
  // sleeps the thread in a futex wait with an absolute monotonic timeout.
  virtual bool ParkUntil(Parker& parker, absl::Time deadline);

  // Blocks the calling code until `deadline`: an OS thread sleeps
  // (clock_nanosleep on CLOCK_MONOTONIC, the deadline converted once); a
  // stackful task suspends and its scheduler runs the others meanwhile.
  // A deadline that has passed returns at once (a stackful task lets the
  // ready ones run first, as Yield does). It may return a little early by
  // the gap between absl::Now()'s clock and the monotonic one; SleepFor
  // and SleepUntil below never do. Errors only when waiting itself failed
  // (the system refused, in the error's words); never an abort.
  virtual absl::Status SleepUntil(absl::Time deadline);

  // A direct hand-off: does what `wake.Unpark(); park.Park();` does, by
  // switching straight from the caller to the task parked on `wake`, when
  // that task would be the next to run anyway (a suspended task of the same
  // scheduler, no other task ready, no outside work due). Returns true once
  // the caller has been resumed through park.Unpark() (or another hand-off
  // to `park`), as Park() returns. Returns false, having changed nothing,
  // when it cannot; the caller then unparks and parks itself. The caller
  // must be the one entitled to unpark `wake` (see Parker's rules). The
  // default cannot.
  virtual bool SwitchToParked(Parker& wake, Parker& park);

  // True when blocking calls suspend only the calling task and let other
  // work run on the same thread (stackful tasks); false when they park the
  // OS thread.
  virtual bool suspends_task() const { return false; }

  // Task-local storage for modules built on top: pointers under keys that
  // the modules own (the address of a namespace-scope variable of theirs),
  // so no module ever reads another's. Per stackful task under a
  // cooperative scheduler, per thread otherwise. Null until set; a new task
  // starts with none. Setting null removes the key.
  void* task_local(const void* key) const { return task_locals().Get(key); }
  void set_task_local(const void* key, void* value) { task_locals().Set(key, value); }

  // A short name for messages and test output ("os_thread", ...).
  virtual const char* name() const = 0;

 protected:
  // The storage behind task_local(): the running task's, or the thread's.
  // The default is the thread's.
  virtual TaskLocals& task_locals() const;

  // For contexts that suspend in Park(): makes Unpark() call Wake(token)
  // instead of signalling a sleeping thread. Returns false, registering
  // nothing, when Unpark() already happened (do not suspend then).
  bool RegisterWaker(Parker& parker, void* token) {
    return Register(parker, token, Parker::kTaskSuspended);
  }

  // As RegisterWaker, for a suspension with a deadline: the context then
  // calls TimeOutParked at the deadline and resumes the caller only if
  // that returns true (else the Unpark has won and calls Wake).
  bool RegisterTimedWaker(Parker& parker, void* token) {
    return Register(parker, token, Parker::kTaskSuspendedUntil);
  }
  // At the deadline of a RegisterTimedWaker: true when the timeout won the
  // race (the Parker is idle again, Wake will not be called for it, and
  // the context resumes the caller); false when Unpark() came first.
  static bool TimeOutParked(Parker& parker) {
    uint32_t expected = Parker::kTaskSuspendedUntil;
    return parker.state_.compare_exchange_strong(expected, Parker::kIdle,
                                                 std::memory_order_acq_rel);
  }
  // Whether `parker` has been unparked (and so a ParkUntil returns true).
  static bool IsUnparked(const Parker& parker) {
    return parker.state_.load(std::memory_order_acquire) == Parker::kUnparked;
  }

  // For SwitchToParked: the token `parker`'s caller registered with this
  // context if it is suspended now (it then stays suspended until it is
  // unparked), else null.
  void* SuspendedToken(const Parker& parker) const {
    if (parker.state_.load(std::memory_order_acquire) != Parker::kTaskSuspended ||
        parker.waker_ != this) {
      return nullptr;
    }
    return parker.waker_token_;
  }
  // For SwitchToParked: unparks a suspended `parker` whose caller this
  // context resumes itself, without Wake(). As in Unpark(): once it is
  // suspended, only the one unparking touches its state.
  static void MarkUnparked(Parker& parker) {
    parker.state_.store(Parker::kUnparked, std::memory_order_relaxed);
  }

  // Resumes the caller that parked with `token`. Called from whichever
  // thread runs Unpark(), exactly once per suspended Park().
  virtual void Wake(void* token);

 private:
  friend class Parker;

  bool Register(Parker& parker, void* token, Parker::State suspended) {
    parker.waker_ = this;
    parker.waker_token_ = token;
    uint32_t expected = Parker::kIdle;
    return parker.state_.compare_exchange_strong(expected, suspended, std::memory_order_acq_rel);
  }
};

// One pause of a spin loop (spin_before_wait): tells the CPU the loop
// waits on memory, so a sibling hyperthread gets the core meanwhile.
inline void CpuRelax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

// Yields the current execution context: CurrentExecutionContext().Yield().
void Yield();

// Sleep the calling code through the current execution context (see
// ExecutionContext::SleepUntil): inside a unit of any scheduler, or on a
// plain thread. Never returns before the time has passed: SleepFor(d) not
// before d has passed on the monotonic clock, SleepUntil(t) not before
// absl::Now() reaches t. A zero or negative duration, or a deadline in the
// past, returns at once (after a yield in a stackful task). An infinite
// one sleeps for ever. Errors: the context's (it could not wait).
//
// Call SleepFor qualified (taskrt::SleepFor) inside namespace taskrt too:
// argument-dependent lookup also finds absl::SleepFor, which would block
// the OS thread, and the unqualified call does not compile.
absl::Status SleepFor(absl::Duration duration);
absl::Status SleepUntil(absl::Time deadline);

// For a scheduler's own threads, at their start: the kernel lets a normal
// thread's timers fire up to its timer slack (50 us by default) late, to
// batch wake-ups; units that sleep on these threads want their deadlines
// kept as closely as the kernel can. Sets the calling thread's slack to
// the minimum; failure only leaves the default.
void UseTightTimerSlack();

namespace execution_context_internal {
// The innermost ScopedExecutionContext's context on this thread, or null.
extern thread_local constinit ExecutionContext* current;
ExecutionContext& OsThreadContext();
}  // namespace execution_context_internal

// The context of the calling code: the one installed by the innermost live
// ScopedExecutionContext on this thread, or else the OS-thread context,
// whose WaitFd parks the thread in poll(). Inline: every blocking call asks
// for it.
inline ExecutionContext& CurrentExecutionContext() {
  ExecutionContext* current = execution_context_internal::current;
  return current != nullptr ? *current : execution_context_internal::OsThreadContext();
}

// Installs `context` as the current one for its lifetime on this thread.
// Schedulers use it around the work they run.
class ScopedExecutionContext {
 public:
  explicit ScopedExecutionContext(ExecutionContext* context);
  ~ScopedExecutionContext();
  ScopedExecutionContext(const ScopedExecutionContext&) = delete;
  ScopedExecutionContext& operator=(const ScopedExecutionContext&) = delete;

 private:
  ExecutionContext* const previous_;
};

}  // namespace taskrt

#endif  // TASKRT_CORE_EXECUTION_CONTEXT_H_
