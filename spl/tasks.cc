// Names and records: creating, evaluating and running tasks, the name
// table, task_check, task_getname and task_public; and the messages every
// part uses.
//
// Invariants kept here:
//   - A live name maps to exactly one record; a duplicate is refused
//     (kAlreadyExists). The name is freed when its task ends or is killed,
//     and every change of the name table bumps names_generation_ (which
//     co-call caches check).
//   - Every record in live_ has a task scheduled or running; it leaves
//     live_ (Forget) when its task ends, or at once when scheduling fails.
//   - An Eval started by the SYSTEM holder borrows the flag and gives it
//     back when it ends, unless the holder was killed meanwhile; when
//     EvalUntil gives up, the flag comes back as the evaluated task is
//     killed.
//   - An Eval's result is delivered once: the evaluated task clears its
//     pointer to it when it delivers, and EvalUntil withdraws it at its
//     deadline, in one critical section each.

#include <algorithm>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "spl/runtime_impl.h"

namespace taskrt::spl {

absl::Status Runtime::Impl::Create(absl::string_view name, Code code,
                                   std::shared_ptr<Context> context) {
  if (!code) {
    return absl::InvalidArgumentError("task_create: the task's code is empty");
  }
  auto record = std::make_shared<Record>(this, std::string(name), std::move(code),
                                         ContextFor(std::move(context)));
  {
    SpinLockHolder lock(&mu_);
    if (!record->name.empty() && names_.contains(record->name)) {
      return absl::AlreadyExistsError(
          absl::StrCat("task_create: a task named '", record->name, "' is alive"));
    }
    AddLocked(record);
  }
  return Start(record);
}

absl::StatusOr<Value> Runtime::Impl::EvalUntil(Code code, absl::Time deadline,
                                               std::shared_ptr<Context> context) {
  if (!code) return absl::InvalidArgumentError("task_eval: the code is empty");
  if (deadline != absl::InfiniteFuture() && absl::Now() >= deadline) {
    return absl::DeadlineExceededError("task_eval: the deadline had passed; nothing was started");
  }
  Record* self = Current();
  absl::StatusOr<Value> result = absl::UnknownError("task_eval: no result");
  Parker done;
  auto record = std::make_shared<Record>(this, std::string(), std::move(code),
                                         ContextFor(std::move(context)));
  {
    SpinLockHolder lock(&mu_);
    // Registered before the task can run: it delivers into these.
    State(*record).eval.result = &result;
    State(*record).eval.parker = &done;
    AddLocked(record);
    if (self != nullptr) {
      State(*self).waiting = WaitKind::kEval;
      State(*self).wait_parker = &done;
      if (system_ == self) {
        // Lend SYSTEM to the evaluated code: the holder's section stays
        // atomic, and the code can run at all (no other task may).
        system_ = record.get();
        State(*record).eval.system_heir = self;
      }
    }
  }
  if (absl::Status started = Start(record); !started.ok()) {
    if (self != nullptr) {
      SpinLockHolder lock(&mu_);
      if (system_ == record.get()) system_ = self;  // the lent flag comes back
      TakeWaiter(*self);
    }
    return started;
  }
  bool timed_out = false;
  if (deadline == absl::InfiniteFuture()) {
    done.Park();
  } else if (!done.ParkUntil(deadline)) {
    std::vector<Parker*> wake;
    {
      SpinLockHolder lock(&mu_);
      EvalState& eval = State(*record).eval;
      // RunTask clears `result` when it delivers, in the critical section
      // that queues the Unpark.
      timed_out = eval.result != nullptr;
      if (timed_out) {
        eval.result = nullptr;
        eval.parker = nullptr;
        // The lent flag comes back to a live caller before the kill, which
        // would clear it.
        if (system_ == record.get() && self != nullptr && !State(*self).killed) system_ = self;
        if (!State(*record).killed) KillLocked(*record, wake);
      }
    }
    for (Parker* parker : wake) parker->Unpark();
    if (timed_out) {
      result = absl::DeadlineExceededError(
          "task_eval: the code did not end by the deadline; its task was killed");
    } else {
      done.Park();  // the result came first: consume the Unpark on its way
    }
  }
  if (self != nullptr) {
    {
      SpinLockHolder lock(&mu_);
      TakeWaiter(*self);
    }
    ResumePoint(self);
  }
  return result;
}

absl::Status Runtime::Impl::SetPublic(TaskRef task) {
  if (absl::Status inside = RequireInside("task_public"); !inside.ok()) return inside;
  SpinLockHolder lock(&mu_);
  absl::StatusOr<Record*> target = Resolve(task, "task_public");
  if (!target.ok()) return target.status();
  State(**target).is_public = true;
  return absl::OkStatus();
}

absl::StatusOr<std::string> Runtime::Impl::CurrentName() const {
  Record* self = Current();
  if (self == nullptr) return NoCurrentTask("task_getname()");
  return self->name;
}

bool Runtime::Impl::Exists(absl::string_view name) {
  SpinLockHolder lock(&mu_);
  return Lookup(name) != nullptr;
}

size_t Runtime::Impl::task_count() {
  SpinLockHolder lock(&mu_);
  return live_.size();
}

std::shared_ptr<Context> Runtime::Impl::ContextFor(std::shared_ptr<Context> context) const {
  if (context != nullptr) return context;
  Record* creator = Current();
  return creator != nullptr ? creator->context : root_context_;
}

void Runtime::Impl::AddLocked(const std::shared_ptr<Record>& record) {
  record->id = ++last_id_;
  if (!record->name.empty()) {
    names_[record->name] = record;
    ++names_generation_;
  }
  live_[record->id] = record;
}

absl::Status Runtime::Impl::Start(const std::shared_ptr<Record>& record) {
  absl::Status scheduled =
      scheduler_.Schedule([impl = shared_from_this(), record] { impl->RunTask(record); });
  if (!scheduled.ok()) {
    SpinLockHolder lock(&mu_);
    Forget(*record);
  }
  return scheduled;
}

void Runtime::Impl::RunTask(const std::shared_ptr<Record>& record) {
  CurrentExecutionContext().set_task_local(&kRecordKey, record.get());
  absl::StatusOr<Value> outcome = Value();
  try {
    ResumePoint(record.get());
    outcome = record->code(*record->context);
  } catch (const TaskKilled&) {
    outcome = absl::AbortedError(absl::StrCat("task '", Describe(*record), "' was killed"));
  }
  std::vector<Parker*> wake;
  {
    SpinLockHolder lock(&mu_);
    TaskState& state = State(*record);
    if (system_ == record.get()) {
      Record* heir = state.eval.system_heir;
      if (heir != nullptr && !State(*heir).killed) {
        system_ = heir;  // back to the Eval caller, still waiting for us
      } else {
        ClearSystem(wake);
      }
    }
    AnswerCoCaller(*record,
                   absl::AbortedError(absl::StrCat("task_co_call: task '", Describe(*record),
                                                   "' ended without task_co_return")),
                   wake);
    if (state.eval.result != nullptr) {
      *std::exchange(state.eval.result, nullptr) = std::move(outcome);
      wake.push_back(state.eval.parker);
    }
    Forget(*record);
    if (live_.empty() && no_tasks_waiter_ != nullptr) {
      wake.push_back(no_tasks_waiter_);
      no_tasks_waiter_ = nullptr;
    }
  }
  CurrentExecutionContext().set_task_local(&kRecordKey, nullptr);
  for (Parker* parker : wake) parker->Unpark();
}

void Runtime::Impl::ReleaseName(Record& record) {
  if (record.name.empty()) return;
  auto it = names_.find(record.name);
  if (it != names_.end() && it->second.get() == &record) {
    names_.erase(it);
    ++names_generation_;
  }
}

void Runtime::Impl::Forget(Record& record) {
  gate_.erase(std::remove(gate_.begin(), gate_.end(), &record), gate_.end());
  ReleaseName(record);
  live_.erase(record.id);
}

// ---- Messages ----

absl::Status Runtime::Impl::RequireInside(const char* what) const {
  if (scheduler_.IsCurrentThreadOwned()) return absl::OkStatus();
  return absl::PermissionDeniedError(
      absl::StrCat(what,
                   ": called from outside the runtime; from outside only task_create, task_check, "
                   "task_eval and task_continue of a public task are allowed"));
}

// For calls that need a current task: outside the runtime it is the public
// rule (kPermissionDenied), inside but not in a task misuse.
absl::Status Runtime::Impl::NotInTask(const char* what) const {
  if (absl::Status inside = RequireInside(what); !inside.ok()) return inside;
  return NoCurrentTask(what);
}

absl::Status Runtime::Impl::NoCurrentTask(absl::string_view what) {
  return absl::FailedPreconditionError(
      absl::StrCat(what, " needs a current task: call it from a task of this runtime"));
}

absl::Status Runtime::Impl::UnknownTask(absl::string_view what, absl::string_view name) {
  return absl::NotFoundError(absl::StrCat(what, ": no live task named '", name, "'"));
}

absl::Status Runtime::Impl::SwitchToSelf(const char* what) {
  return absl::InvalidArgumentError(absl::StrCat(what, ": a task cannot switch to itself"));
}

absl::Status Runtime::Impl::Unresolved(TaskRef task, const char* what) {
  return task.is_current() ? NoCurrentTask(absl::StrCat(what, "()"))
                           : UnknownTask(what, task.name());
}

std::string Runtime::Impl::Describe(const Record& record) {
  return record.name.empty() ? absl::StrCat("#", record.id) : record.name;
}

}  // namespace taskrt::spl
