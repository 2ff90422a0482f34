#ifndef TASKRT_SPL_SPL_TASK_H_
#define TASKRT_SPL_SPL_TASK_H_

// SPL's task module in C++: named cooperative tasks with pause and
// continue, a SYSTEM flag, public tasks, kill and late kill, switch,
// co-routine calls and eval.
//
// Mapping from SPL
//   task_create(name, code, ctx)   Runtime::CreateTask(name, code, ctx)
//                                  (CreateUnnamedTask for an undefined name)
//   task_pause(name)               Pause(name)      task_pause()      Pause()
//   task_continue(name)            Continue(name)   task_continue()   Continue()
//   task_system(name)              SetSystem(name)  task_system()     SetSystem()
//   task_public(name)              SetPublic(name)  task_public()     SetPublic()
//   task_getname()                 CurrentName()
//   task_check(name)               Exists(name)
//   task_kill(name)                Kill(name)       task_kill()       Kill()
//   task_late_kill(name)           LateKill(name)   task_late_kill()  LateKill()
//   task_switch(name)              SwitchTo(name)
//   task_co_call(name)             CoCall(name)
//   task_co_return(retval)         CoReturn(value)
//   task_co_setdefault(name, def)  SetCoReturnDefault(name, def)
//   task_eval(code, ctx)           Eval(code, ctx)
//
// Where it runs
//   On a scheduler that runs every unit as a stackful task on one thread
//   (SchedulerCapabilities::single_thread_stackful_tasks): every task is one
//   of its stackful tasks, and all of them share its thread, as SPL tasks
//   share the interpreter. Create() refuses any other scheduler with
//   kInvalidArgument. Switch, CoCall and CoReturn hand the thread straight
//   to the target task when nothing else is due to run first
//   (ExecutionContext::SwitchToParked); a CoCall remembers its last target,
//   checked against a generation number that changes whenever a name is
//   created, freed or reused.
//
// Tasks and code
//   Code is a callable taking the Context it runs in and returning a Value.
//   Empty code is refused at creation (SPL reports a compile error there).
//   Without a context the code gets its creator's (the runtime's root
//   context when created from outside any task). A task's name is freed
//   when it ends or is killed; a live duplicate is refused. An unnamed task
//   runs but cannot be addressed.
//
// Values
//   Value carries null, integer, float or string: what co_call, co_return
//   and eval hand over.
//
// Pausing and continuing
//   Pause() suspends the current task until Continue(name) (or an outside
//   Continue of a public task). Pause(name) on another task makes it pause
//   at its next suspension point of this module. Continue(name) of a task
//   that is not paused is remembered: its next pause returns at once, so a
//   wake-up that races the pause (an outside event, a co_call to a task
//   still starting) is never lost. Continue() with no name clears the
//   current task's SYSTEM flag. PauseUntil(deadline) pauses as Pause()
//   does but gives up at the deadline with kDeadlineExceeded: the task then
//   runs on as if continued (a Continue that comes later is remembered for
//   its next pause, as for a task that is not paused). A deadline that has
//   passed still lets a remembered Continue count: OK if one was pending.
//
// SYSTEM
//   While one task has the flag, no other task of this runtime runs user
//   code: tasks woken meanwhile wait at their next suspension point of this
//   module (pause, switch, co_call, co_return, eval, Yield) until it is
//   cleared by Continue(), Pause() or Kill() of the holder. A task blocked
//   in a channel call when the flag is taken finishes that call first.
//   Eval() by the holder lends the flag to the evaluated code until it
//   ends, then gives it back: the section stays atomic. SetSystem(name) of
//   a task that is paused or waiting (in co_call, switch or eval) is
//   kFailedPrecondition: it could never run to clear the flag.
//
// Public tasks
//   From outside the runtime (another OS thread, an external event) only
//   Continue(name) of a task marked public is allowed, plus CreateTask,
//   Exists and Eval; anything else is kPermissionDenied.
//
// Kill and late kill
//   Kill() of the current task ends it at once: it unwinds its stack (with
//   an internal exception that task code must not swallow; catch (...)
//   blocks must rethrow). Kill(name) of another task frees its name at
//   once and ends it at its next suspension point of this module (at once
//   if it is paused or has not started). A task waiting in CoCall() for a
//   killed task gets kAborted. LateKill(name) kills the task when it next
//   pauses, or at once if it is paused already.
//
// Co-routine calls
//   CoCall(name) switches to the task and returns the Value it passes to
//   CoReturn(). CoReturn() by a task not entered through CoCall() switches
//   to its default task (SetCoReturnDefault), dropping the value; with no
//   default it is kFailedPrecondition and nothing happens. CoCall returns
//   kFailedPrecondition if the caller is continued before the callee
//   returns, and kAborted if the callee is killed.
//   CoCallUntil(name, deadline) is CoCall that gives up at the deadline
//   (never before it) with kDeadlineExceeded when the callee has not
//   returned by then; the call then ends as when the caller is continued
//   first: the callee runs on, and its later CoReturn() finds no caller
//   (it goes to its default task, or is kFailedPrecondition), so no value
//   is delivered late, twice or to another call. A deadline that has passed
//   returns kDeadlineExceeded at once, after the name checks, without
//   continuing the callee or suspending the caller. It wakes its caller
//   through the scheduler, never by CoCall's direct switch.
//
// Eval
//   Eval(code, ctx) runs the code as a task of its own (unnamed) and waits
//   for its value: a task suspends, an outside thread blocks.
//   EvalUntil(code, deadline, ctx) gives up at the deadline (never before
//   it) with kDeadlineExceeded: the evaluated task is killed, as by Kill()
//   (it unwinds at its next suspension point of this module), its value is
//   dropped, and a SYSTEM flag the caller lent it comes back to the caller.
//   A deadline that has passed returns kDeadlineExceeded at once and starts
//   nothing.
//
// Errors: kNotFound for unknown or dead names, kAlreadyExists for a live
// duplicate, kInvalidArgument for empty code, switching to oneself or a
// scheduler without the capability above,
// kFailedPrecondition for calls that need a current task from outside one,
// kPermissionDenied for the public rule, kDeadlineExceeded for the Until
// calls whose deadline came first. Nothing aborts.
//
// Thread safety: calls from the runtime's tasks run on its thread; the
// outside calls listed above are thread-safe.

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <variant>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "core/scheduler.h"

namespace taskrt::spl {

// null, integer, float or string.
class Value {
 public:
  Value() = default;
  Value(int64_t i) : value_(i) {}  // NOLINT: implicit, as SPL converts
  Value(int i) : value_(int64_t{i}) {}  // NOLINT
  Value(double d) : value_(d) {}  // NOLINT
  Value(std::string s) : value_(std::move(s)) {}  // NOLINT
  Value(const char* s) : value_(std::string(s)) {}  // NOLINT

  bool is_null() const { return std::holds_alternative<std::monostate>(value_); }
  bool is_int() const { return std::holds_alternative<int64_t>(value_); }
  bool is_float() const { return std::holds_alternative<double>(value_); }
  bool is_string() const { return std::holds_alternative<std::string>(value_); }
  int64_t as_int() const { return is_int() ? std::get<int64_t>(value_) : 0; }
  double as_float() const { return is_float() ? std::get<double>(value_) : 0.0; }
  const std::string& as_string() const;
  std::string DebugString() const;

  friend bool operator==(const Value& a, const Value& b) { return a.value_ == b.value_; }

 private:
  std::variant<std::monostate, int64_t, double, std::string> value_;
};

// The variables a task's code runs with; shared between the tasks given the
// same context.
struct Context {
  absl::flat_hash_map<std::string, Value> variables;
};

using Code = std::function<Value(Context&)>;

class Runtime {
 public:
  // `scheduler` must offer single_thread_stackful_tasks (else
  // kInvalidArgument) and outlive the runtime.
  static absl::StatusOr<std::unique_ptr<Runtime>> Create(Scheduler& scheduler);
  // Kills every task that is left and waits until each has unwound (at its
  // next call into the runtime, or when its code returns), since their code
  // may call this handle until then. A task blocked outside the runtime (on
  // a channel) holds the destructor until it returns. Destroyed from one of
  // its own tasks, it does not wait.
  ~Runtime();

  absl::Status CreateTask(absl::string_view name, Code code,
                          std::shared_ptr<Context> context = nullptr);
  absl::Status CreateUnnamedTask(Code code, std::shared_ptr<Context> context = nullptr);

  absl::Status Pause();
  absl::Status Pause(absl::string_view name);
  absl::Status PauseUntil(absl::Time deadline);
  absl::Status Continue();
  absl::Status Continue(absl::string_view name);
  absl::Status SetSystem();
  absl::Status SetSystem(absl::string_view name);
  absl::Status SetPublic();
  absl::Status SetPublic(absl::string_view name);
  absl::StatusOr<std::string> CurrentName() const;
  bool Exists(absl::string_view name) const;
  absl::Status Kill();
  absl::Status Kill(absl::string_view name);
  absl::Status LateKill();
  absl::Status LateKill(absl::string_view name);
  absl::Status SwitchTo(absl::string_view name);
  absl::StatusOr<Value> CoCall(absl::string_view name) { return CoSwitch(name, nullptr); }
  absl::StatusOr<Value> CoCallUntil(absl::string_view name, absl::Time deadline);
  absl::Status CoReturn(Value value) { return CoSwitch({}, &value).status(); }
  absl::Status SetCoReturnDefault(absl::string_view name, absl::string_view default_task);
  absl::StatusOr<Value> Eval(Code code, std::shared_ptr<Context> context = nullptr);
  absl::StatusOr<Value> EvalUntil(Code code, absl::Time deadline,
                                  std::shared_ptr<Context> context = nullptr);

  // Lets the other tasks run (and honours SYSTEM and pending pauses).
  absl::Status Yield();

  // Live tasks, named or not.
  size_t task_count() const;

  class Impl;

 private:
  explicit Runtime(std::shared_ptr<Impl> impl);
  // CoCall (`returning` null) and CoReturn in one function: both directions
  // of a round trip then switch from the same call sites (co_call.cc).
  absl::StatusOr<Value> CoSwitch(absl::string_view name, Value* returning);
  std::shared_ptr<Impl> impl_;  // shared with the tasks, which may outlive this handle
};

}  // namespace taskrt::spl

#endif  // TASKRT_SPL_SPL_TASK_H_
