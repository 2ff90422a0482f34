// task_kill and task_late_kill, and killing every task when the runtime
// handle goes away.
//
// Invariants kept here:
//   - A killed task's name is free at once (a new task may take it), its
//     SYSTEM flag ends, and its co-routine caller gets kAborted.
//   - A killed task never runs user code again: a waiting one is woken to
//     unwind (TaskKilled) at its resume point; the current one unwinds at
//     once. A task waiting in Eval unwinds when the Eval returns.
//   - A late kill of a task that is not paused only marks it; its next
//     pause kills it (PrepareToPause).

#include <vector>

#include "absl/strings/str_cat.h"
#include "spl/runtime_impl.h"

namespace taskrt::spl {

absl::Status Runtime::Impl::Kill(TaskRef task, KillTiming timing) {
  const char* what = timing == KillTiming::kWhenItNextPauses ? "task_late_kill" : "task_kill";
  if (absl::Status inside = RequireInside(what); !inside.ok()) return inside;
  std::vector<Parker*> wake;
  bool kill_self = false;
  {
    SpinLockHolder lock(&mu_);
    absl::StatusOr<Record*> resolved = Resolve(task, what);
    if (!resolved.ok()) return resolved.status();
    Record* target = *resolved;
    if (timing == KillTiming::kWhenItNextPauses && State(*target).waiting != WaitKind::kPause) {
      State(*target).late_kill = true;
      return absl::OkStatus();
    }
    KillLocked(*target, wake);
    kill_self = target == Current();
  }
  for (Parker* parker : wake) parker->Unpark();
  if (kill_self) throw TaskKilled{};
  return absl::OkStatus();
}

void Runtime::Impl::KillAll() {
  std::vector<Parker*> wake;
  {
    SpinLockHolder lock(&mu_);
    for (auto& [id, record] : live_) {
      if (!State(*record).killed) KillLocked(*record, wake);
    }
  }
  for (Parker* parker : wake) parker->Unpark();
}

void Runtime::Impl::WaitUntilNoTasks() {
  if (Current() != nullptr) return;
  Parker parker;
  {
    SpinLockHolder lock(&mu_);
    if (live_.empty()) return;
    no_tasks_waiter_ = &parker;
  }
  parker.Park();
}

void Runtime::Impl::KillLocked(Record& record, std::vector<Parker*>& wake) {
  State(record).killed = true;
  ReleaseName(record);
  if (system_ == &record) ClearSystem(wake);
  AnswerCoCaller(
      record,
      absl::AbortedError(absl::StrCat("task_co_call: task '", Describe(record), "' was killed")),
      wake);
  const WaitKind waiting = State(record).waiting;
  if (waiting != WaitKind::kNone && waiting != WaitKind::kEval) {
    wake.push_back(TakeWaiter(record));
  }
}

}  // namespace taskrt::spl
