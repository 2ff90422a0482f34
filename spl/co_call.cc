// Co-routine calls: task_co_call, task_co_return, task_co_setdefault.
//
// Invariants kept here:
//   - A task is in at most one co-call as callee (co.caller) and waits in
//     at most one as caller (co.callee); the link is set and cleared both
//     ways under mu_ (Unlink), so neither side ever points at a dead task.
//   - A caller always gets an answer in its result slot: the callee's
//     value, kAborted when the callee is killed or ends without returning,
//     kFailedPrecondition when the caller is continued first, or
//     kDeadlineExceeded when CoCallUntil's deadline comes first. Either of
//     the last two unlinks the call, so the value is never delivered late.
//   - A cached co-call target is used only while the name table is
//     unchanged (names_generation_), so a killed or ended target is never
//     reached again by name.

#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "spl/runtime_impl.h"

namespace taskrt::spl {

// Inline: the co-call fast path looks up through it on every call.
inline Record* Runtime::Impl::LookupCached(Record* self, absl::string_view name) {
  CoRoutineState& co = State(*self).co;
  if (co.cache_target != nullptr && co.cache_generation == names_generation_ &&
      name == co.cache_name) {
    return co.cache_target;
  }
  Record* target = Lookup(name);
  if (target != nullptr) {
    co.cache_name.assign(name.data(), name.size());
    co.cache_target = target;
    co.cache_generation = names_generation_;
  }
  return target;
}

namespace {

[[gnu::noinline]] absl::Status ContinuedEarlyError(absl::string_view name) {
  return absl::FailedPreconditionError(
      absl::StrCat("task_co_call: continued before task '", name, "' called task_co_return"));
}

}  // namespace

// After a CoCall's wait: an undelivered result is an error, and the link
// ends.
[[gnu::always_inline]] inline void Runtime::Impl::FinishCoCallLocked(
    Record* self, absl::string_view name, absl::StatusOr<Value>& result) {
  TaskState& state = State(*self);
  if (!state.co.delivered) [[unlikely]] result = ContinuedEarlyError(name);
  Unlink(*self);
  state.co.slot = nullptr;
}

// CoCall and CoReturn in one function, inlined into Runtime::CoSwitch: both
// directions of a round trip switch from the one SwitchHandingLock call
// below, so when a task resumes, each return up to this frame is the one
// the CPU's return-address predictor expects, where separate CoCall and
// CoReturn paths would cost a mispredicted return per switch.
//
// The fast path is the common case: the other task waits paused and this
// one has nothing pending (QuietLocked). Anything else takes the general
// paths, which do the same steps with full generality.
[[gnu::always_inline]] inline absl::StatusOr<Value> Runtime::Impl::CoSwitch(absl::string_view name,
                                                                            Value* returning) {
  // CoCall's result, filled in place (Deliver). Every path returns this
  // one object, so it is built in the caller's return slot (no copy).
  absl::StatusOr<Value> result{Value()};
  Record* self = Current();
  if (self == nullptr) [[unlikely]] {
    result = NotInTask(returning == nullptr ? "task_co_call" : "task_co_return");
    return result;
  }
  mu_.Lock();
  Record* target;
  bool fast;
  if (returning == nullptr) {
    target = LookupCached(self, name);
    fast = target != nullptr && target != self && State(*target).co.caller == nullptr &&
           State(*target).waiting == WaitKind::kPause && QuietLocked(self);
    if (fast) LinkCoCallLocked(self, *target, result);
  } else {
    target = State(*self).co.caller;
    fast = target != nullptr && State(*target).waiting == WaitKind::kPause && QuietLocked(self);
    if (fast) {
      Deliver(*target, std::move(*returning));
      Unlink(*target);
    }
  }
  if (!fast) [[unlikely]] {
    mu_.Unlock();
    if (returning != nullptr) {
      absl::Status returned = CoReturnGeneral(self, std::move(*returning));
      if (!returned.ok()) result = std::move(returned);
    } else {
      CoCallGeneral(self, name, result);
    }
    return result;
  }
  // What WakeLocked and PrepareToPause do, for a paused target and a quiet
  // caller.
  State(*target).pause_requested = false;
  Parker* wake = TakeWaiter(*target);
  Parker parker;
  State(*self).waiting = WaitKind::kPause;
  State(*self).wait_parker = &parker;
  if (!SwitchHandingLock(target, *wake, parker)) {
    wake->Unpark();
    parker.Park();
  }
  ResumeAndLock(self);
  if (returning == nullptr) FinishCoCallLocked(self, name, result);
  mu_.Unlock();
  return result;
}

absl::StatusOr<Value> Runtime::CoSwitch(absl::string_view name, Value* returning) {
  return impl_->CoSwitch(name, returning);
}

absl::StatusOr<Record*> Runtime::Impl::CoCallTargetLocked(Record* self, absl::string_view name) {
  Record* target = LookupCached(self, name);
  if (target == nullptr) return UnknownTask("task_co_call", name);
  if (target == self) return SwitchToSelf("task_co_call");
  if (Record* caller = State(*target).co.caller; caller != nullptr) {
    return absl::FailedPreconditionError(absl::StrCat("task_co_call: task '", name,
                                                      "' is already in a co-routine call from '",
                                                      Describe(*caller), "'"));
  }
  return target;
}

[[gnu::noinline]] void Runtime::Impl::CoCallGeneral(Record* self, absl::string_view name,
                                                    absl::StatusOr<Value>& result) {
  mu_.Lock();
  absl::StatusOr<Record*> target = CoCallTargetLocked(self, name);
  if (!target.ok()) {
    mu_.Unlock();
    result = target.status();
    return;
  }
  LinkCoCallLocked(self, **target, result);
  ContinueAndPauseLocked(self, **target);
  FinishCoCallLocked(self, name, result);
  mu_.Unlock();
}

// CoCall's steps with a timed pause, and without the direct switch (a
// parker with a deadline is woken through the scheduler).
absl::StatusOr<Value> Runtime::Impl::CoCallUntil(absl::string_view name, absl::Time deadline) {
  absl::StatusOr<Value> result{Value()};
  Record* self = Current();
  if (self == nullptr) {
    result = NotInTask("task_co_call");
    return result;
  }
  mu_.Lock();
  absl::StatusOr<Record*> target = CoCallTargetLocked(self, name);
  if (!target.ok() || absl::Now() >= deadline) {
    mu_.Unlock();
    if (!target.ok()) {
      result = target.status();
    } else {
      result = absl::DeadlineExceededError(
          absl::StrCat("task_co_call: the deadline had passed; task '", name, "' not called"));
    }
    return result;
  }
  LinkCoCallLocked(self, **target, result);
  Parker parker;
  std::vector<Parker*> wake;
  Parker* wake_target = WakeLocked(**target);
  const PauseStep step = PrepareToPause(self, parker, wake);
  mu_.Unlock();
  if (wake_target != nullptr) wake_target->Unpark();
  if (step != PauseStep::kWait) {
    FinishPauseAndLock(self, parker, wake, step);  // throws when killed
  } else {
    for (Parker* p : wake) p->Unpark();
    if (ParkUntilOrWithdraw(self, parker, deadline)) {
      // Nothing was delivered (a delivery takes the wait with it). The call
      // ends here, so a later co_return of the callee finds no caller, as
      // when the caller is continued first.
      Deliver(*self, absl::DeadlineExceededError(absl::StrCat(
                         "task_co_call: task '", name, "' did not call task_co_return by the deadline")));
      Unlink(*self);
      mu_.Unlock();
      LockAtResumePoint(self);  // throws when killed meanwhile
    } else {
      ResumeAndLock(self);
    }
  }
  FinishCoCallLocked(self, name, result);
  mu_.Unlock();
  return result;
}

// One critical section picks the task to return to, hands it the value and
// pauses this one.
[[gnu::noinline]] absl::Status Runtime::Impl::CoReturnGeneral(Record* self, Value&& value) {
  mu_.Lock();
  TaskState& state = State(*self);
  Record* target = state.co.caller;
  absl::Status refused;
  if (target == nullptr) {
    if (state.co.default_task.empty()) {
      refused = absl::FailedPreconditionError(
          absl::StrCat("task_co_return: task '", Describe(*self),
                       "' was not entered through task_co_call and has no default task "
                       "(task_co_setdefault)"));
    } else {
      target = Lookup(state.co.default_task);
      if (target == nullptr) {
        refused = UnknownTask("task_co_return (default task)", state.co.default_task);
      }
    }
  }
  if (refused.ok() && target == self) refused = SwitchToSelf("task_co_return");
  if (!refused.ok()) {
    mu_.Unlock();
    return refused;
  }
  if (state.co.caller == target) {
    Deliver(*target, std::move(value));
    Unlink(*target);
  }
  ContinueAndPauseLocked(self, *target);
  mu_.Unlock();
  return absl::OkStatus();
}

absl::Status Runtime::Impl::SetCoReturnDefault(absl::string_view name,
                                               absl::string_view default_task) {
  if (absl::Status inside = RequireInside("task_co_setdefault"); !inside.ok()) return inside;
  SpinLockHolder lock(&mu_);
  Record* target = Lookup(name);
  if (target == nullptr) return UnknownTask("task_co_setdefault", name);
  State(*target).co.default_task = std::string(default_task);
  return absl::OkStatus();
}

void Runtime::Impl::AnswerCoCaller(Record& record, absl::Status error, std::vector<Parker*>& wake) {
  Unlink(record);
  Record* caller = State(record).co.caller;
  if (caller == nullptr) return;
  Unlink(*caller);
  Deliver(*caller, std::move(error));
  if (State(*caller).waiting == WaitKind::kPause) wake.push_back(TakeWaiter(*caller));
}

void Runtime::Impl::Unlink(Record& caller) {
  TaskState& state = State(caller);
  if (state.co.callee != nullptr && State(*state.co.callee).co.caller == &caller) {
    State(*state.co.callee).co.caller = nullptr;
  }
  state.co.callee = nullptr;
}

// The result starts as an OK null value; a value goes straight into it.
void Runtime::Impl::Deliver(Record& caller, Value&& value) {
  TaskState& state = State(caller);
  if (state.co.slot == nullptr) return;
  if (state.co.slot->ok()) [[likely]] {
    **state.co.slot = std::move(value);
  } else {
    *state.co.slot = std::move(value);
  }
  state.co.delivered = true;
}

void Runtime::Impl::Deliver(Record& caller, absl::Status error) {
  TaskState& state = State(caller);
  if (state.co.slot == nullptr) return;
  *state.co.slot = std::move(error);
  state.co.delivered = true;
}

}  // namespace taskrt::spl
