#ifndef TASKRT_SPL_RECORD_H_
#define TASKRT_SPL_RECORD_H_

// What the runtime keeps per SPL task; private to spl/.
//
// A Record has two halves:
//   identity  owner, id, name, code and context. Set before the record is
//             published in its runtime's tables and never changed after,
//             so the runtime reads them without its lock.
//   state     what pause, continue, SYSTEM, co-routine calls, eval and kill
//             change. Private: the owning Runtime::Impl reaches it only
//             through Impl::State(), which requires Impl::mu_, so Clang's
//             thread-safety analysis checks every access.
//
// Invariants of the state (all under the owner's lock):
//   - `waiting` is kNone exactly when `wait_parker` is null. Only the task
//     itself registers a wait; whoever takes the parker (TakeWaiter) clears
//     both and unparks it exactly once.
//   - A co-routine link is set both ways (caller's co.callee and callee's
//     co.caller) or not at all; whichever side ends first clears both
//     (Impl::Unlink), so neither pointer dangles.
//   - A killed record's name no longer maps to it; a record leaves the
//     tables when its task ends (Impl::Forget).

#include <cstdint>
#include <memory>
#include <string>
#include <utility>

#include "absl/status/statusor.h"
#include "core/execution_context.h"
#include "spl/spl_task.h"

namespace taskrt::spl {

class Record;

// Unwinds a killed task's stack up to its entry (Impl::RunTask). Not a
// std::exception, so `catch (const std::exception&)` in task code does not
// swallow it.
struct TaskKilled {};

// What a task waits for while its wait_parker is set.
enum class WaitKind {
  kNone,
  kPause,  // paused: task_pause, task_switch, task_co_call, task_co_return
  kGate,   // held back while another task holds SYSTEM
  kEval,   // waits for the result of its task_eval
};

// The state of a co-routine call (task_co_call / task_co_return).
struct CoRoutineState {
  Record* caller = nullptr;  // waits in CoCall for this task's CoReturn
  Record* callee = nullptr;  // whom this task waits for in CoCall
  // While this task waits in CoCall: its own result object (on its stack),
  // which the callee's CoReturn, or its death, fills in place.
  absl::StatusOr<Value>* slot = nullptr;
  bool delivered = false;
  std::string default_task;  // task_co_setdefault
  // The last task this one co-called, valid while the runtime's names
  // generation still equals cache_generation: the names have not changed
  // since, so the name still maps to that record, which the runtime's
  // tables keep alive. A kill, an end or a new task bumps the generation,
  // so a stale entry is never used.
  std::string cache_name;
  Record* cache_target = nullptr;
  uint64_t cache_generation = 0;
};

// The state of a task started by task_eval.
struct EvalState {
  absl::StatusOr<Value>* result = nullptr;  // where the value goes
  Parker* parker = nullptr;                 // whom to wake with it
  // Set when the SYSTEM holder called Eval: the evaluated task holds the
  // flag and hands it back to this caller when it ends.
  Record* system_heir = nullptr;
};

struct TaskState {
  bool killed = false;
  bool late_kill = false;        // killed when it next pauses
  bool pause_requested = false;  // pauses at its next suspension point
  bool wake_pending = false;     // continued while not paused: the next pause returns at once
  bool is_public = false;        // may be continued from outside the runtime
  WaitKind waiting = WaitKind::kNone;
  Parker* wait_parker = nullptr;
  CoRoutineState co;
  EvalState eval;
};

class Record {
 public:
  Record(Runtime::Impl* owner, std::string name, Code code, std::shared_ptr<Context> context)
      : owner(owner), name(std::move(name)), code(std::move(code)), context(std::move(context)) {}
  Record(const Record&) = delete;
  Record& operator=(const Record&) = delete;

  Runtime::Impl* const owner;
  uint64_t id = 0;         // given under the owner's lock, before the record is published
  const std::string name;  // empty: unnamed
  const Code code;
  const std::shared_ptr<Context> context;

 private:
  friend class Runtime::Impl;
  TaskState state_;  // only through Runtime::Impl::State()
};

}  // namespace taskrt::spl

#endif  // TASKRT_SPL_RECORD_H_
