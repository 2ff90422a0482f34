// Pause, continue, the SYSTEM flag and switch, and the suspension points
// where they take effect (LockAtResumePoint).
//
// Invariants kept here:
//   - At most one task holds SYSTEM (system_). While it does, every other
//     task that reaches a resume point waits at the gate, in arrival order,
//     and is released when the flag is cleared (Continue(), Pause() or kill
//     of the holder).
//   - A continue is never lost: one that finds its task not paused sets
//     wake_pending, and that task's next pause returns at once.
//   - SYSTEM is never given to a task that is paused or waits in Eval: it
//     could not run to clear the flag, and no other task could run to
//     continue it.
//   - Switch, co_call and co_return continue the target and pause the
//     caller in one critical section (ContinueAndPauseLocked).

#include <vector>

#include "absl/strings/str_cat.h"
#include "spl/runtime_impl.h"

namespace taskrt::spl {

absl::Status Runtime::Impl::PauseCurrent() {
  Record* self = Current();
  if (self == nullptr) return NoCurrentTask("task_pause()");
  PauseSelf(self);  // throws when killed
  return absl::OkStatus();
}

absl::Status Runtime::Impl::PauseCurrentUntil(absl::Time deadline) {
  Record* self = Current();
  if (self == nullptr) return NoCurrentTask("task_pause()");
  Parker parker;
  std::vector<Parker*> wake;
  PauseStep step;
  {
    SpinLockHolder lock(&mu_);
    step = PrepareToPause(self, parker, wake);
  }
  if (step != PauseStep::kWait) {
    FinishPauseAndLock(self, parker, wake, step);  // throws when killed
    mu_.Unlock();
    return absl::OkStatus();
  }
  for (Parker* p : wake) p->Unpark();
  if (ParkUntilOrWithdraw(self, parker, deadline)) {
    mu_.Unlock();
    LockAtResumePoint(self);  // throws when killed meanwhile
    mu_.Unlock();
    return absl::DeadlineExceededError("task_pause: not continued by the deadline");
  }
  ResumeAndLock(self);
  mu_.Unlock();
  return absl::OkStatus();
}

bool Runtime::Impl::ParkUntilOrWithdraw(Record* self, Parker& parker, absl::Time deadline) {
  if (parker.ParkUntil(deadline)) return false;
  // Withdraw the wait under the lock that a Continue or Kill takes it with
  // (TakeWaiter); if one took it first, its Unpark is on its way.
  mu_.Lock();
  TaskState& state = State(*self);
  if (state.waiting == WaitKind::kPause && state.wait_parker == &parker) {
    TakeWaiter(*self);
    return true;
  }
  mu_.Unlock();
  parker.Park();
  return false;
}

absl::Status Runtime::Impl::PauseNamed(absl::string_view name) {
  if (absl::Status inside = RequireInside("task_pause"); !inside.ok()) return inside;
  Record* self = Current();
  {
    SpinLockHolder lock(&mu_);
    Record* target = Lookup(name);
    if (target == nullptr) return UnknownTask("task_pause", name);
    if (target != self) {
      // Another task pauses at its next suspension point of this module.
      if (State(*target).waiting != WaitKind::kPause) State(*target).pause_requested = true;
      return absl::OkStatus();
    }
  }
  PauseSelf(self);
  return absl::OkStatus();
}

absl::Status Runtime::Impl::ContinueCurrent() {
  Record* self = Current();
  if (self == nullptr) return NoCurrentTask("task_continue()");
  std::vector<Parker*> wake;
  {
    SpinLockHolder lock(&mu_);
    if (system_ == self) ClearSystem(wake);
  }
  for (Parker* parker : wake) parker->Unpark();
  return absl::OkStatus();
}

absl::Status Runtime::Impl::ContinueNamed(absl::string_view name) {
  const bool outside = !scheduler_.IsCurrentThreadOwned();
  Parker* wake = nullptr;
  {
    SpinLockHolder lock(&mu_);
    Record* target = Lookup(name);
    if (target == nullptr) return UnknownTask("task_continue", name);
    if (outside && !State(*target).is_public) {
      return absl::PermissionDeniedError(absl::StrCat(
          "task_continue: task '", name,
          "' is not public; only public tasks can be continued from outside the runtime "
          "(task_public)"));
    }
    wake = WakeLocked(*target);
  }
  if (wake != nullptr) wake->Unpark();
  return absl::OkStatus();
}

absl::Status Runtime::Impl::SetSystem(TaskRef task) {
  if (absl::Status inside = RequireInside("task_system"); !inside.ok()) return inside;
  SpinLockHolder lock(&mu_);
  absl::StatusOr<Record*> resolved = Resolve(task, "task_system");
  if (!resolved.ok()) return resolved.status();
  Record* target = *resolved;
  if (system_ != nullptr && system_ != target) {
    return absl::FailedPreconditionError(
        absl::StrCat("task_system: task '", Describe(*system_), "' holds the SYSTEM flag"));
  }
  const WaitKind waiting = State(*target).waiting;
  if (waiting == WaitKind::kPause || waiting == WaitKind::kEval) {
    return absl::FailedPreconditionError(
        absl::StrCat("task_system: task '", Describe(*target),
                     "' is paused or waiting, and would hold every other task back forever"));
  }
  system_ = target;
  return absl::OkStatus();
}

absl::Status Runtime::Impl::SwitchTo(absl::string_view name) {
  Record* self = Current();
  if (self == nullptr) return NotInTask("task_switch");
  mu_.Lock();
  Record* target = Lookup(name);
  if (target == nullptr || target == self) {
    mu_.Unlock();
    return target == nullptr ? UnknownTask("task_switch", name) : SwitchToSelf("task_switch");
  }
  ContinueAndPauseLocked(self, *target);
  mu_.Unlock();
  return absl::OkStatus();
}

absl::Status Runtime::Impl::YieldCurrent() {
  Record* self = Current();
  if (self == nullptr) return NoCurrentTask("Yield()");
  taskrt::Yield();
  ResumePoint(self);
  return absl::OkStatus();
}

Parker* Runtime::Impl::WakeLocked(Record& record) {
  TaskState& state = State(record);
  state.pause_requested = false;
  if (state.waiting == WaitKind::kPause) return TakeWaiter(record);
  state.wake_pending = true;
  return nullptr;
}

void Runtime::Impl::ClearSystem(std::vector<Parker*>& wake) {
  system_ = nullptr;
  for (Record* record : gate_) {
    if (State(*record).waiting == WaitKind::kGate) wake.push_back(TakeWaiter(*record));
  }
  gate_.clear();
}

Runtime::Impl::PauseStep Runtime::Impl::PrepareToPause(Record* self, Parker& parker,
                                                       std::vector<Parker*>& wake) {
  TaskState& state = State(*self);
  if (state.late_kill || state.killed) {
    if (!state.killed) KillLocked(*self, wake);
    return PauseStep::kDie;
  }
  if (system_ == self) ClearSystem(wake);
  if (state.wake_pending) {
    state.wake_pending = false;
    return PauseStep::kGoOn;
  }
  state.waiting = WaitKind::kPause;
  state.wait_parker = &parker;
  return PauseStep::kWait;
}

void Runtime::Impl::FinishPauseAndLock(Record* self, Parker& parker,
                                       const std::vector<Parker*>& wake, PauseStep step) {
  for (Parker* p : wake) p->Unpark();
  switch (step) {
    case PauseStep::kDie:
      throw TaskKilled{};
    case PauseStep::kGoOn:
      LockAtResumePoint(self);
      return;
    case PauseStep::kWait:
      parker.Park();
      ResumeAndLock(self);
      return;
  }
}

void Runtime::Impl::PauseSelf(Record* self) {
  Parker parker;
  std::vector<Parker*> wake;
  PauseStep step;
  {
    SpinLockHolder lock(&mu_);
    step = PrepareToPause(self, parker, wake);
  }
  FinishPauseAndLock(self, parker, wake, step);
  mu_.Unlock();
}

void Runtime::Impl::ContinueAndPauseLocked(Record* self, Record& target) {
  Parker parker;
  std::vector<Parker*> wake;
  Parker* wake_target = WakeLocked(target);
  const PauseStep step = PrepareToPause(self, parker, wake);
  if (wake_target != nullptr && wake.empty() && step == PauseStep::kWait) {
    if (SwitchHandingLock(&target, *wake_target, parker)) {
      // The target ran, released mu_, and someone continued us.
      ResumeAndLock(self);
      return;
    }
  } else {
    mu_.Unlock();
  }
  if (wake_target != nullptr) wake_target->Unpark();
  FinishPauseAndLock(self, parker, wake, step);
}

void Runtime::Impl::LockAtResumePoint(Record* self) {
  while (true) {
    Parker gate;
    mu_.Lock();
    TaskState& state = State(*self);
    if (state.killed) {
      mu_.Unlock();
      throw TaskKilled{};
    }
    if (state.pause_requested) {
      state.pause_requested = false;
      mu_.Unlock();
      PauseSelf(self);  // runs the checks again when continued; so do we
      continue;
    }
    if (system_ == nullptr || system_ == self) return;
    state.waiting = WaitKind::kGate;
    state.wait_parker = &gate;
    gate_.push_back(self);
    mu_.Unlock();
    gate.Park();
  }
}

}  // namespace taskrt::spl
