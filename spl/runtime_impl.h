#ifndef TASKRT_SPL_RUNTIME_IMPL_H_
#define TASKRT_SPL_RUNTIME_IMPL_H_

// Runtime::Impl: the one object behind an SPL runtime; private to spl/.
//
// Its methods live in one file per part of SPL's task module:
//   tasks.cc       names and records: create, eval, run, check, getname,
//                  public, and the name table
//   scheduling.cc  pause, continue, the SYSTEM flag, switch, and the
//                  suspension points where all of them take effect
//   co_call.cc     co-routine calls and returns (the hot path)
//   kill.cc        kill and late kill
// This header holds the shared state and the few helpers every part and the
// co-routine hot path need inline.
//
// Locking
//   One lock, mu_, guards the tables, the SYSTEM holder, the gate and every
//   record's TaskState (reached through State()). Parkers are unparked after
//   mu_ is released; a part that frees waiters collects them in a vector.
//   A direct hand-off (SwitchHandingLock) passes mu_, held, from one task to
//   the task it switches to, which takes it over when it resumes
//   (TakeHandedLock): the lock then leaves one stack and is released on
//   another, which is the only place the analysis is switched off.
//
// Suspension points
//   Every call of this module that may wait ends in a resume point
//   (LockAtResumePoint): a killed task unwinds there, a pending pause
//   pauses, and a task waits at the gate while another holds SYSTEM.

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "core/execution_context.h"
#include "core/mutex.h"
#include "core/scheduler.h"
#include "spl/record.h"
#include "spl/spl_task.h"

namespace taskrt::spl {

// Which task a call means: the current one (SPL's call without a name) or
// the live task of a name.
class TaskRef {
 public:
  static TaskRef Current() { return TaskRef(Kind::kCurrent, {}); }
  static TaskRef Named(absl::string_view name) { return TaskRef(Kind::kNamed, name); }

  bool is_current() const { return kind_ == Kind::kCurrent; }
  absl::string_view name() const { return name_; }

 private:
  enum class Kind { kCurrent, kNamed };
  TaskRef(Kind kind, absl::string_view name) : kind_(kind), name_(name) {}
  Kind kind_;
  absl::string_view name_;
};

// When a kill takes effect: task_kill or task_late_kill.
enum class KillTiming {
  kNow,               // task_kill
  kWhenItNextPauses,  // task_late_kill; at once if it is paused already
};

class Runtime::Impl : public std::enable_shared_from_this<Runtime::Impl> {
 public:
  explicit Impl(Scheduler& scheduler) : scheduler_(scheduler) {}

  // ---- Names and records (tasks.cc) ----
  absl::Status Create(absl::string_view name, Code code, std::shared_ptr<Context> context)
      ABSL_LOCKS_EXCLUDED(mu_);
  // Eval is EvalUntil with an infinite deadline.
  absl::StatusOr<Value> EvalUntil(Code code, absl::Time deadline, std::shared_ptr<Context> context)
      ABSL_LOCKS_EXCLUDED(mu_);
  absl::Status SetPublic(TaskRef task) ABSL_LOCKS_EXCLUDED(mu_);
  absl::StatusOr<std::string> CurrentName() const;
  bool Exists(absl::string_view name) ABSL_LOCKS_EXCLUDED(mu_);
  size_t task_count() ABSL_LOCKS_EXCLUDED(mu_);

  // ---- Pause, continue, SYSTEM, switch (scheduling.cc) ----
  absl::Status PauseCurrent() ABSL_LOCKS_EXCLUDED(mu_);
  absl::Status PauseCurrentUntil(absl::Time deadline) ABSL_LOCKS_EXCLUDED(mu_);
  absl::Status PauseNamed(absl::string_view name) ABSL_LOCKS_EXCLUDED(mu_);
  absl::Status ContinueCurrent() ABSL_LOCKS_EXCLUDED(mu_);
  absl::Status ContinueNamed(absl::string_view name) ABSL_LOCKS_EXCLUDED(mu_);
  absl::Status SetSystem(TaskRef task) ABSL_LOCKS_EXCLUDED(mu_);
  absl::Status SwitchTo(absl::string_view name) ABSL_LOCKS_EXCLUDED(mu_);
  absl::Status YieldCurrent() ABSL_LOCKS_EXCLUDED(mu_);

  // ---- Co-routine calls (co_call.cc) ----
  // CoCall (`returning` null) and CoReturn (`returning` the value).
  absl::StatusOr<Value> CoSwitch(absl::string_view name, Value* returning) ABSL_LOCKS_EXCLUDED(mu_);
  absl::StatusOr<Value> CoCallUntil(absl::string_view name, absl::Time deadline)
      ABSL_LOCKS_EXCLUDED(mu_);
  absl::Status SetCoReturnDefault(absl::string_view name, absl::string_view default_task)
      ABSL_LOCKS_EXCLUDED(mu_);

  // ---- Kill (kill.cc) ----
  absl::Status Kill(TaskRef task, KillTiming timing) ABSL_LOCKS_EXCLUDED(mu_);
  // Kills every live task (the runtime handle is going away).
  void KillAll() ABSL_LOCKS_EXCLUDED(mu_);
  // Waits until no task of this runtime is left: killed tasks unwind when
  // they next run, and their code calls the runtime handle until then.
  // From one of the runtime's own tasks it cannot wait for itself, and
  // returns at once.
  void WaitUntilNoTasks() ABSL_LOCKS_EXCLUDED(mu_);

 private:
  // What a task does after the locked half of a pause (PrepareToPause).
  enum class PauseStep {
    kWait,  // wait on its parker until continued
    kGoOn,  // a continue came first: do not wait
    kDie,   // a kill (or late kill) is due: unwind
  };

  // ---- Shared helpers (this header and tasks.cc) ----

  TaskState& State(Record& record) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return record.state_; }

  // The current task of this runtime, or null (outside any task, or in a
  // task of another runtime or none). Only this runtime's tasks, on its
  // thread, ever hold one of its records as their task-local pointer
  // (RunTask), so the owner check also proves the thread.
  Record* Current() const {
    auto* record = static_cast<Record*>(CurrentExecutionContext().task_local(&kRecordKey));
    return record != nullptr && record->owner == this ? record : nullptr;
  }

  Record* Lookup(absl::string_view name) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (name.empty()) return nullptr;
    auto it = names_.find(name);
    return it == names_.end() ? nullptr : it->second.get();
  }
  // The task `task` means; kFailedPrecondition (current, outside a task)
  // or kNotFound (named) for `what` when there is none.
  absl::StatusOr<Record*> Resolve(TaskRef task, const char* what)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    Record* target = task.is_current() ? Current() : Lookup(task.name());
    if (target == nullptr) return Unresolved(task, what);
    return target;
  }

  // Takes `record`'s registered wait: returns its parker (to unpark once
  // mu_ is released) and marks it no longer waiting.
  Parker* TakeWaiter(Record& record) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    TaskState& state = State(record);
    Parker* parker = state.wait_parker;
    state.wait_parker = nullptr;
    state.waiting = WaitKind::kNone;
    return parker;
  }

  // Whether `self`, resuming, may go on at once: not killed, no pause
  // pending, and no other task holds SYSTEM.
  bool MayGoOnLocked(Record* self) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    const TaskState& state = State(*self);
    return !state.killed && !state.pause_requested && (system_ == nullptr || system_ == self);
  }

  // Whether pausing `self` now needs none of PrepareToPause's side work
  // (a late kill, SYSTEM to release, a pending continue to consume).
  bool QuietLocked(Record* self) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    const TaskState& state = State(*self);
    return !state.late_kill && !state.killed && system_ != self && !state.wake_pending;
  }

  // Messages (tasks.cc).
  absl::Status RequireInside(const char* what) const;
  absl::Status NotInTask(const char* what) const;
  static absl::Status NoCurrentTask(absl::string_view what);
  static absl::Status UnknownTask(absl::string_view what, absl::string_view name);
  static absl::Status SwitchToSelf(const char* what);
  // Resolve's error for a TaskRef that means no task.
  static absl::Status Unresolved(TaskRef task, const char* what);
  static std::string Describe(const Record& record);

  // ---- Names and records (tasks.cc) ----

  // The context a new task gets: `context`, else its creator's, else the
  // root context.
  std::shared_ptr<Context> ContextFor(std::shared_ptr<Context> context) const;
  // Gives `record` its id and enters it in the tables.
  void AddLocked(const std::shared_ptr<Record>& record) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Schedules `record`'s task; on error the record is forgotten.
  absl::Status Start(const std::shared_ptr<Record>& record) ABSL_LOCKS_EXCLUDED(mu_);
  // The task's whole life, on the scheduler.
  void RunTask(const std::shared_ptr<Record>& record) ABSL_LOCKS_EXCLUDED(mu_);
  // Frees `record`'s name if it still maps to it.
  void ReleaseName(Record& record) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Removes `record` from the tables and the gate.
  void Forget(Record& record) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // ---- Pause, continue, SYSTEM and hand-off (scheduling.cc) ----

  // Continues `record`: returns its pause's parker to unpark, or leaves a
  // pending wake-up for its next pause (so a continue that comes first,
  // such as an outside event racing the pause, is not lost).
  Parker* WakeLocked(Record& record) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Clears SYSTEM and releases the tasks held back at the gate, in the
  // order they arrived there.
  void ClearSystem(std::vector<Parker*>& wake) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // The locked half of a pause: a pending (late) kill dies now, SYSTEM
  // ends, a pending continue is consumed, or the task registers `parker`.
  PauseStep PrepareToPause(Record* self, Parker& parker, std::vector<Parker*>& wake)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The unlocked half: wakes whom the locked half released, then waits;
  // returns holding mu_ once `self` may go on (throws TaskKilled instead).
  void FinishPauseAndLock(Record* self, Parker& parker, const std::vector<Parker*>& wake,
                          PauseStep step) ABSL_EXCLUSIVE_LOCK_FUNCTION(mu_);
  // Pauses the current task until continued.
  void PauseSelf(Record* self) ABSL_LOCKS_EXCLUDED(mu_);
  // The wait of a pause with a deadline, once PrepareToPause registered
  // `parker` (kWait) and mu_ was released. Returns false, not holding mu_,
  // once continued: the caller then resumes with ResumeAndLock. Returns
  // true at the deadline, holding mu_ in the critical section that withdrew
  // the wait (a Continue or Kill after it finds the task not paused): the
  // caller ends what it waited for there, then releases mu_ and goes
  // through LockAtResumePoint.
  bool ParkUntilOrWithdraw(Record* self, Parker& parker, absl::Time deadline)
      ABSL_EXCLUSIVE_TRYLOCK_FUNCTION(true, mu_);

  // Continues `target` and pauses `self` in one critical section: no other
  // task runs in between, which is what SPL gets from task_system(). Called
  // holding mu_ (the caller picked and checked `target` under it); returns
  // holding mu_ again once `self` may go on, so the caller reads its
  // results in the same critical section. When `target` is paused and
  // would run next anyway, this switches straight to it and hands it mu_
  // (SwitchHandingLock): a same-thread round trip then costs one lock and
  // no trip through the ready queue each way.
  void ContinueAndPauseLocked(Record* self, Record& target) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // A resume point: returns holding mu_ once `self` may go on; throws
  // TaskKilled (not holding it) when killed; pauses when a pause is
  // pending; waits at the gate while another task holds SYSTEM.
  void LockAtResumePoint(Record* self) ABSL_EXCLUSIVE_LOCK_FUNCTION(mu_);
  void ResumePoint(Record* self) ABSL_LOCKS_EXCLUDED(mu_) {
    LockAtResumePoint(self);
    mu_.Unlock();
  }

  // Releases mu_ and switches to the task paused on `wake`, `target`, when
  // the execution context can (it would run next anyway), handing it mu_:
  // returns true once this task has been resumed. Returns false, having
  // only released mu_, when it cannot; the caller then unparks `wake` and
  // parks on `parker` itself.
  [[gnu::always_inline]] bool SwitchHandingLock(Record* target, Parker& wake, Parker& parker)
      ABSL_UNLOCK_FUNCTION(mu_)
      // On a switch mu_ stays held and `target` releases it on its own stack.
      ABSL_NO_THREAD_SAFETY_ANALYSIS {
    lock_heir_.store(target, std::memory_order_relaxed);
    if (CurrentExecutionContext().SwitchToParked(wake, parker)) return true;
    lock_heir_.store(nullptr, std::memory_order_relaxed);
    mu_.Unlock();
    return false;
  }
  // After `self`'s pause parker returned: whether the task that resumed it
  // handed it mu_ (SwitchHandingLock), which it then holds.
  bool TakeHandedLock(Record* self) ABSL_EXCLUSIVE_TRYLOCK_FUNCTION(true, mu_) {
    if (lock_heir_.load(std::memory_order_relaxed) != self) return false;
    lock_heir_.store(nullptr, std::memory_order_relaxed);
    HandedLockIsHeld();
    return true;
  }
  // mu_ was taken by the task that switched here, on its stack.
  void HandedLockIsHeld() const ABSL_ASSERT_EXCLUSIVE_LOCK(mu_) {}
  // After `self`'s pause parker returned: returns holding mu_ once `self`
  // may go on, in the handed critical section when there was one.
  void ResumeAndLock(Record* self) ABSL_EXCLUSIVE_LOCK_FUNCTION(mu_) {
    if (TakeHandedLock(self)) {
      if (MayGoOnLocked(self)) return;
      mu_.Unlock();
    }
    LockAtResumePoint(self);
  }

  // ---- Co-routine calls (co_call.cc) ----

  // A task that will not co_return any more: its caller gets `error`, and
  // a co-call this task itself waits in is unlinked.
  void AnswerCoCaller(Record& record, absl::Status error, std::vector<Parker*>& wake)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Ends the co-routine link of `caller` with its callee, both ways.
  void Unlink(Record& caller) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Fills in the result `caller` waits for in CoCall.
  void Deliver(Record& caller, Value&& value) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Deliver(Record& caller, absl::Status error) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Lookup through `self`'s cache of its last co-call target.
  Record* LookupCached(Record* self, absl::string_view name) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void FinishCoCallLocked(Record* self, absl::string_view name, absl::StatusOr<Value>& result)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The callee of a co_call of `name` by `self`, or why there is none
  // (unknown, self, already in a call).
  absl::StatusOr<Record*> CoCallTargetLocked(Record* self, absl::string_view name)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Links `self` to `target` as its caller, its result going to `result`.
  void LinkCoCallLocked(Record* self, Record& target, absl::StatusOr<Value>& result)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    State(target).co.caller = self;
    CoRoutineState& co = State(*self).co;
    co.callee = &target;
    co.slot = &result;
    co.delivered = false;
  }
  void CoCallGeneral(Record* self, absl::string_view name, absl::StatusOr<Value>& result)
      ABSL_LOCKS_EXCLUDED(mu_);
  absl::Status CoReturnGeneral(Record* self, Value&& value) ABSL_LOCKS_EXCLUDED(mu_);

  // ---- Kill (kill.cc) ----

  // Marks `record` killed, frees its name, ends its SYSTEM flag and answers
  // its co-routine caller; a waiting task is woken to unwind.
  void KillLocked(Record& record, std::vector<Parker*>& wake) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // The key of a task's Record in its execution context's task-local
  // storage.
  static constexpr char kRecordKey = 0;

  Scheduler& scheduler_;
  const std::shared_ptr<Context> root_context_ = std::make_shared<Context>();
  // Tasks take it on their own thread; outside calls (continue, check,
  // create) rarely: a spin lock keeps the co-routine path cheap.
  SpinLock mu_;
  uint64_t last_id_ ABSL_GUARDED_BY(mu_) = 0;
  absl::flat_hash_map<std::string, std::shared_ptr<Record>> names_ ABSL_GUARDED_BY(mu_);
  uint64_t names_generation_ ABSL_GUARDED_BY(mu_) = 0;  // bumped on every change of names_
  absl::flat_hash_map<uint64_t, std::shared_ptr<Record>> live_ ABSL_GUARDED_BY(mu_);
  // WaitUntilNoTasks()'s caller, woken when live_ becomes empty.
  Parker* no_tasks_waiter_ ABSL_GUARDED_BY(mu_) = nullptr;
  Record* system_ ABSL_GUARDED_BY(mu_) = nullptr;
  std::vector<Record*> gate_ ABSL_GUARDED_BY(mu_);  // held back by SYSTEM, in arrival order
  // The task a direct hand-off passed mu_ to, held, until it takes it over
  // on resuming. Only the runtime's thread touches it.
  std::atomic<Record*> lock_heir_{nullptr};
};

}  // namespace taskrt::spl

#endif  // TASKRT_SPL_RUNTIME_IMPL_H_
