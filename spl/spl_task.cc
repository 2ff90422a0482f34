#include "spl/spl_task.h"

#include <algorithm>
#include <atomic>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/execution_context.h"
#include "core/mutex.h"

namespace taskrt::spl {

const std::string& Value::as_string() const {
  static const std::string* const empty = new std::string;
  return is_string() ? std::get<std::string>(value_) : *empty;
}

std::string Value::DebugString() const {
  if (is_int()) return absl::StrCat(as_int());
  if (is_float()) return absl::StrCat(as_float());
  if (is_string()) return absl::StrCat("\"", as_string(), "\"");
  return "null";
}

namespace {

// Unwinds a killed task's stack up to its entry. Not a std::exception, so
// `catch (const std::exception&)` in task code does not swallow it.
struct TaskKilled {};

enum class WaitKind { kNone, kPause, kGate, kEval };

// The key of a task's Record in its execution context's task-local storage.
constexpr char kRecordKey = 0;

}  // namespace

struct Record {
  Runtime::Impl* owner = nullptr;
  uint64_t id = 0;
  std::string name;  // empty: unnamed
  Code code;
  std::shared_ptr<Context> context;

  // Guarded by Impl::mu_.
  bool started = false;
  bool finished = false;
  bool killed = false;
  bool late_kill = false;
  bool pause_requested = false;
  bool wake_pending = false;  // continued while not paused: the next pause returns at once
  bool is_public = false;
  WaitKind waiting = WaitKind::kNone;
  Parker* wait_parker = nullptr;
  // A co-routine call links caller and callee both ways; whichever ends
  // first (return, death) clears both links, so neither ever dangles.
  Record* co_caller = nullptr;  // waits in CoCall for this task's CoReturn
  Record* co_callee = nullptr;  // whom this task waits for in CoCall
  // While this task waits in CoCall: its own result object (on its stack),
  // which the callee's CoReturn, or its death, fills in place.
  absl::StatusOr<Value>* co_slot = nullptr;
  bool co_delivered = false;
  std::string co_default;
  // The last task this one co-called, valid while names_generation_ still
  // equals co_cache_generation: names_ has not changed since, so the name
  // still maps to that record, which names_ keeps alive. A kill, an end or
  // a new task bumps the generation, so a stale entry is never used.
  std::string co_cache_name;
  Record* co_cache_target = nullptr;
  uint64_t co_cache_generation = 0;
  // Eval: where the value goes and who waits for it.
  absl::StatusOr<Value>* eval_result = nullptr;
  Parker* eval_parker = nullptr;
  // An Eval task started by the SYSTEM holder holds the flag for it and
  // hands it back here when it ends (the caller waits in Eval meanwhile).
  Record* system_heir = nullptr;
};

class Runtime::Impl : public std::enable_shared_from_this<Runtime::Impl> {
 public:
  explicit Impl(Scheduler& scheduler) : scheduler_(scheduler) {}

  // ---- creation ----

  absl::StatusOr<std::shared_ptr<Record>> Create(absl::string_view name, Code code,
                                                 std::shared_ptr<Context> context) {
    if (!code) {
      return absl::InvalidArgumentError("task_create: the task's code is empty");
    }
    auto record = std::make_shared<Record>();
    record->owner = this;
    record->name = std::string(name);
    record->code = std::move(code);
    if (context == nullptr) {
      Record* creator = Current();
      context = creator != nullptr ? creator->context : root_context_;
    }
    record->context = std::move(context);
    {
      SpinLockHolder lock(&mu_);
      if (!record->name.empty() && names_.contains(record->name)) {
        return absl::AlreadyExistsError(
            absl::StrCat("task_create: a task named '", record->name, "' is alive"));
      }
      record->id = ++last_id_;
      if (!record->name.empty()) {
        names_[record->name] = record;
        ++names_generation_;
      }
      live_[record->id] = record;
    }
    absl::Status scheduled = scheduler_.Schedule(
        [self = shared_from_this(), record] { self->RunTask(record); });
    if (!scheduled.ok()) {
      SpinLockHolder lock(&mu_);
      Forget(*record);
      return scheduled;
    }
    return record;
  }

  // ---- pause / continue ----

  absl::Status PauseCurrent() {
    Record* self = Current();
    if (self == nullptr) return NoCurrentTask("task_pause()");
    PauseSelf(self);  // throws when killed
    return absl::OkStatus();
  }

  absl::Status PauseNamed(absl::string_view name) {
    if (absl::Status inside = RequireInside("task_pause"); !inside.ok()) return inside;
    Record* self = Current();
    {
      SpinLockHolder lock(&mu_);
      Record* target = Lookup(name);
      if (target == nullptr) return UnknownTask("task_pause", name);
      if (target != self) {
        // Another task pauses at its next suspension point of this module.
        if (target->waiting != WaitKind::kPause) target->pause_requested = true;
        return absl::OkStatus();
      }
    }
    PauseSelf(self);
    return absl::OkStatus();
  }

  absl::Status ContinueCurrent() {
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

  absl::Status ContinueNamed(absl::string_view name) {
    const bool outside = !scheduler_.IsCurrentThreadOwned();
    Parker* wake = nullptr;
    {
      SpinLockHolder lock(&mu_);
      Record* target = Lookup(name);
      if (target == nullptr) return UnknownTask("task_continue", name);
      if (outside && !target->is_public) {
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

  // ---- flags ----

  absl::Status SetSystem(absl::string_view name, bool current) {
    if (absl::Status inside = RequireInside("task_system"); !inside.ok()) return inside;
    Record* self = Current();
    SpinLockHolder lock(&mu_);
    Record* target = current ? self : Lookup(name);
    if (target == nullptr) {
      return current ? NoCurrentTask("task_system()") : UnknownTask("task_system", name);
    }
    if (system_ != nullptr && system_ != target) {
      return absl::FailedPreconditionError(absl::StrCat(
          "task_system: task '", Describe(*system_), "' holds the SYSTEM flag"));
    }
    if (target->waiting == WaitKind::kPause || target->waiting == WaitKind::kEval) {
      // It could not run to clear the flag, and no other task could run to
      // continue it: the runtime would stop for good.
      return absl::FailedPreconditionError(absl::StrCat(
          "task_system: task '", Describe(*target),
          "' is paused or waiting, and would hold every other task back forever"));
    }
    system_ = target;
    return absl::OkStatus();
  }

  absl::Status SetPublic(absl::string_view name, bool current) {
    if (absl::Status inside = RequireInside("task_public"); !inside.ok()) return inside;
    Record* self = Current();
    SpinLockHolder lock(&mu_);
    Record* target = current ? self : Lookup(name);
    if (target == nullptr) {
      return current ? NoCurrentTask("task_public()") : UnknownTask("task_public", name);
    }
    target->is_public = true;
    return absl::OkStatus();
  }

  absl::StatusOr<std::string> CurrentName() {
    Record* self = Current();
    if (self == nullptr) return NoCurrentTask("task_getname()");
    return self->name;
  }

  bool Exists(absl::string_view name) {
    SpinLockHolder lock(&mu_);
    return Lookup(name) != nullptr;
  }

  size_t task_count() {
    SpinLockHolder lock(&mu_);
    return live_.size();
  }

  // ---- kill ----

  absl::Status Kill(absl::string_view name, bool current, bool late) {
    const char* what = late ? "task_late_kill" : "task_kill";
    if (absl::Status inside = RequireInside(what); !inside.ok()) return inside;
    Record* self = Current();
    std::vector<Parker*> wake;
    bool kill_self = false;
    {
      SpinLockHolder lock(&mu_);
      Record* target = current ? self : Lookup(name);
      if (target == nullptr) {
        return current ? NoCurrentTask(what) : UnknownTask(what, name);
      }
      if (late && target->waiting != WaitKind::kPause) {
        target->late_kill = true;  // when it next pauses
        return absl::OkStatus();
      }
      KillLocked(*target, wake);
      kill_self = target == self;
    }
    for (Parker* parker : wake) parker->Unpark();
    if (kill_self) throw TaskKilled{};
    return absl::OkStatus();
  }

  // ---- switch and co-routines ----

  absl::Status SwitchTo(absl::string_view name) {
    Record* self = Current();
    if (self == nullptr) return NotInTask("task_switch");
    return SwitchAndPause(
        self, "task_switch", ByName(name, "task_switch"),
        [](Record&) { return absl::OkStatus(); }, [] {});
  }

  // CoCall (`returning` null) and CoReturn (`returning` the value), inline
  // into Runtime::CoSwitch. Both directions of a round trip switch from the
  // one HandOffLocked call below: when a task resumes, each return up to
  // this frame is the one the CPU's return-address predictor expects, where
  // separate CoCall and CoReturn paths cost a mispredicted return per switch
  // (about 9 ns each way here, measured with the spl_co_call job).
  //
  // The fast path is the common case: the other task waits paused and this
  // one has nothing pending (QuietLocked). Anything else takes the general
  // paths below, which do the same steps with full generality.
  [[gnu::always_inline]] absl::StatusOr<Value> CoSwitch(absl::string_view name,
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
      fast = target != nullptr && target != self && target->co_caller == nullptr &&
             target->waiting == WaitKind::kPause && QuietLocked(self);
      if (fast) {
        target->co_caller = self;
        self->co_callee = target;
        self->co_slot = &result;
        self->co_delivered = false;
      }
    } else {
      target = self->co_caller;
      fast = target != nullptr && target->waiting == WaitKind::kPause && QuietLocked(self);
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
    target->pause_requested = false;
    Parker* wake = TakeWaiter(*target);
    Parker parker;
    self->waiting = WaitKind::kPause;
    self->wait_parker = &parker;
    HandOffLocked(self, target, *wake, parker);  // returns holding mu_ again
    if (returning == nullptr) FinishCoCallLocked(self, name, result);
    mu_.Unlock();
    return result;
  }

  // After a CoCall's wait, under mu_: an undelivered result is an error,
  // and the link ends.
  [[gnu::always_inline]] void FinishCoCallLocked(Record* self, absl::string_view name,
                                                 absl::StatusOr<Value>& result)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (!self->co_delivered) [[unlikely]] result = ContinuedEarlyError(name);
    Unlink(*self);
    self->co_slot = nullptr;
  }
  [[gnu::noinline]] static absl::Status ContinuedEarlyError(absl::string_view name) {
    return absl::FailedPreconditionError(absl::StrCat(
        "task_co_call: continued before task '", name, "' called task_co_return"));
  }

  [[gnu::noinline]] void CoCallGeneral(Record* self, absl::string_view name,
                                       absl::StatusOr<Value>& result) {
    absl::Status switched = SwitchAndPause(
        self, "task_co_call",
        [&](Record*& target) ABSL_NO_THREAD_SAFETY_ANALYSIS {  // under mu_
          target = LookupCached(self, name);
          return target != nullptr ? absl::OkStatus() : UnknownTask("task_co_call", name);
        },
        // Under mu_ (SwitchAndPause holds it); the analysis cannot see
        // into lambdas.
        [&](Record& target) ABSL_NO_THREAD_SAFETY_ANALYSIS {
          if (target.co_caller != nullptr) {
            return absl::FailedPreconditionError(absl::StrCat(
                "task_co_call: task '", name, "' is already in a co-routine call from '",
                Describe(*target.co_caller), "'"));
          }
          target.co_caller = self;
          self->co_callee = &target;
          self->co_slot = &result;
          self->co_delivered = false;
          return absl::OkStatus();
        },
        [&]() ABSL_NO_THREAD_SAFETY_ANALYSIS { FinishCoCallLocked(self, name, result); });
    if (!switched.ok()) result = std::move(switched);
  }

  // One critical section picks the task to return to, hands it the value
  // and pauses this one.
  [[gnu::noinline]] absl::Status CoReturnGeneral(Record* self, Value&& value) {
    return SwitchAndPause(
        self, "task_co_return",
        [&](Record*& target) ABSL_NO_THREAD_SAFETY_ANALYSIS {  // under mu_
          if (self->co_caller != nullptr) {
            target = self->co_caller;
            return absl::OkStatus();
          }
          if (self->co_default.empty()) {
            return absl::FailedPreconditionError(absl::StrCat(
                "task_co_return: task '", Describe(*self),
                "' was not entered through task_co_call and has no default task "
                "(task_co_setdefault)"));
          }
          target = Lookup(self->co_default);
          if (target == nullptr) {
            return UnknownTask("task_co_return (default task)", self->co_default);
          }
          return absl::OkStatus();
        },
        [&](Record& target) ABSL_NO_THREAD_SAFETY_ANALYSIS {  // under mu_
          if (self->co_caller == &target) {
            Deliver(target, std::move(value));
            Unlink(target);
          }
          return absl::OkStatus();
        },
        [] {});
  }

  absl::Status SetCoReturnDefault(absl::string_view name, absl::string_view default_task) {
    if (absl::Status inside = RequireInside("task_co_setdefault"); !inside.ok()) return inside;
    SpinLockHolder lock(&mu_);
    Record* target = Lookup(name);
    if (target == nullptr) return UnknownTask("task_co_setdefault", name);
    target->co_default = std::string(default_task);
    return absl::OkStatus();
  }

  absl::StatusOr<Value> Eval(Code code, std::shared_ptr<Context> context) {
    if (!code) return absl::InvalidArgumentError("task_eval: the code is empty");
    Record* self = Current();
    absl::StatusOr<Value> result = absl::UnknownError("task_eval: no result");
    Parker done;
    // Registered before the task can run: it delivers into these.
    auto record = std::make_shared<Record>();
    record->owner = this;
    record->code = std::move(code);
    record->context =
        context != nullptr ? std::move(context) : (self != nullptr ? self->context : root_context_);
    record->eval_result = &result;
    record->eval_parker = &done;
    {
      SpinLockHolder lock(&mu_);
      record->id = ++last_id_;
      live_[record->id] = record;
      if (self != nullptr) {
        self->waiting = WaitKind::kEval;
        self->wait_parker = &done;
        if (system_ == self) {
          // Lend SYSTEM to the evaluated code: the holder's section stays
          // atomic, and the code can run at all (no other task may).
          system_ = record.get();
          record->system_heir = self;
        }
      }
    }
    absl::Status scheduled = scheduler_.Schedule(
        [impl = shared_from_this(), record] { impl->RunTask(record); });
    if (!scheduled.ok()) {
      SpinLockHolder lock(&mu_);
      if (system_ == record.get()) system_ = self;
      Forget(*record);
      if (self != nullptr) {
        self->waiting = WaitKind::kNone;
        self->wait_parker = nullptr;
      }
      return scheduled;
    }
    done.Park();
    if (self != nullptr) {
      {
        SpinLockHolder lock(&mu_);
        self->waiting = WaitKind::kNone;
        self->wait_parker = nullptr;
      }
      ResumePoint(self);
    }
    return result;
  }

  absl::Status YieldCurrent() {
    Record* self = Current();
    if (self == nullptr) return NoCurrentTask("Yield()");
    taskrt::Yield();
    ResumePoint(self);
    return absl::OkStatus();
  }

  // Kills every live task (the runtime handle is going away).
  void KillAll() {
    std::vector<Parker*> wake;
    {
      SpinLockHolder lock(&mu_);
      for (auto& [id, record] : live_) {
        if (!record->killed) KillLocked(*record, wake);
      }
    }
    for (Parker* parker : wake) parker->Unpark();
  }

 private:
  // The current task of this runtime, or null (outside any task, or in a
  // task of another runtime or none). Only this runtime's tasks, on its
  // thread, ever hold one of its records as their task-local pointer
  // (RunTask), so the owner check also proves the thread.
  Record* Current() const {
    auto* record = static_cast<Record*>(CurrentExecutionContext().task_local(&kRecordKey));
    return record != nullptr && record->owner == this ? record : nullptr;
  }

  absl::Status RequireInside(const char* what) const {
    if (scheduler_.IsCurrentThreadOwned()) return absl::OkStatus();
    return absl::PermissionDeniedError(absl::StrCat(
        what, ": called from outside the runtime; from outside only task_create, task_check, "
              "task_eval and task_continue of a public task are allowed"));
  }

  // For calls that need a current task: outside the runtime it is the
  // public rule (kPermissionDenied), inside but not in a task misuse.
  absl::Status NotInTask(const char* what) const {
    if (absl::Status inside = RequireInside(what); !inside.ok()) return inside;
    return NoCurrentTask(what);
  }

  static absl::Status NoCurrentTask(const char* what) {
    return absl::FailedPreconditionError(
        absl::StrCat(what, " needs a current task: call it from a task of this runtime"));
  }
  static absl::Status UnknownTask(const char* what, absl::string_view name) {
    return absl::NotFoundError(absl::StrCat(what, ": no live task named '", name, "'"));
  }
  static std::string Describe(const Record& record) {
    return record.name.empty() ? absl::StrCat("#", record.id) : record.name;
  }

  Record* Lookup(absl::string_view name) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (name.empty()) return nullptr;
    auto it = names_.find(name);
    return it == names_.end() ? nullptr : it->second.get();
  }

  // Lookup through `self`'s cache of its last co-call target (see Record).
  Record* LookupCached(Record* self, absl::string_view name) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (self->co_cache_target != nullptr && self->co_cache_generation == names_generation_ &&
        name == self->co_cache_name) {
      return self->co_cache_target;
    }
    Record* target = Lookup(name);
    if (target != nullptr) {
      self->co_cache_name.assign(name.data(), name.size());
      self->co_cache_target = target;
      self->co_cache_generation = names_generation_;
    }
    return target;
  }

  void Forget(Record& record) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    gate_.erase(std::remove(gate_.begin(), gate_.end(), &record), gate_.end());
    if (!record.name.empty()) {
      auto it = names_.find(record.name);
      if (it != names_.end() && it->second.get() == &record) {
        names_.erase(it);
        ++names_generation_;
      }
    }
    live_.erase(record.id);
  }

  // Continues `record`: returns its pause's Parker to unpark, or leaves a
  // pending wake-up for its next pause (so a continue that comes first,
  // such as an outside event racing the pause, is not lost).
  static Parker* WakeLocked(Record& record) {
    record.pause_requested = false;
    if (record.waiting == WaitKind::kPause) return TakeWaiter(record);
    record.wake_pending = true;
    return nullptr;
  }

  static Parker* TakeWaiter(Record& record) {
    Parker* parker = record.wait_parker;
    record.wait_parker = nullptr;
    record.waiting = WaitKind::kNone;
    return parker;
  }

  // Clears SYSTEM and releases the tasks held back at the gate, in the
  // order they arrived there.
  void ClearSystem(std::vector<Parker*>& wake) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    system_ = nullptr;
    for (Record* record : gate_) {
      if (record->waiting == WaitKind::kGate) wake.push_back(TakeWaiter(*record));
    }
    gate_.clear();
  }

  // Marks `record` killed, frees its name, ends its SYSTEM flag and answers
  // its co-routine caller; a waiting task is woken to unwind.
  void KillLocked(Record& record, std::vector<Parker*>& wake)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    record.killed = true;
    if (!record.name.empty()) {
      auto it = names_.find(record.name);
      if (it != names_.end() && it->second.get() == &record) {
        names_.erase(it);
        ++names_generation_;
      }
    }
    if (system_ == &record) ClearSystem(wake);
    AnswerCoCaller(record, absl::AbortedError(absl::StrCat(
                               "task_co_call: task '", Describe(record), "' was killed")),
                   wake);
    if (record.waiting != WaitKind::kNone && record.waiting != WaitKind::kEval) {
      wake.push_back(TakeWaiter(record));
    }
  }

  // A task that will not co_return any more: its caller gets `error`, and
  // a co-call this task itself waits in is unlinked.
  void AnswerCoCaller(Record& record, absl::Status error, std::vector<Parker*>& wake)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    Unlink(record);
    Record* caller = record.co_caller;
    if (caller == nullptr) return;
    Unlink(*caller);
    Deliver(*caller, std::move(error));
    if (caller->waiting == WaitKind::kPause) wake.push_back(TakeWaiter(*caller));
  }

  // After any wait of this module: dies if killed, pauses if asked to, and
  // waits while another task holds SYSTEM. `on_resume` runs under the lock
  // once the task goes on, so a caller that reads its results there needs
  // no second critical section.
  // Whether pausing `self` now needs none of PrepareToPause's side work
  // (a late kill, SYSTEM to release, a pending continue to consume).
  bool QuietLocked(Record* self) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return !self->late_kill && !self->killed && system_ != self && !self->wake_pending;
  }

  // The end of a fast switch: `self`, registered as paused on `parker`,
  // continues `target`, whose pause Parker `wake` was taken; called and
  // returns holding mu_, once `self` may go on (ResumeLocked).
  [[gnu::always_inline]] void HandOffLocked(Record* self, Record* target, Parker& wake,
                                            Parker& parker)
      ABSL_NO_THREAD_SAFETY_ANALYSIS {  // mu_ may pass to the target and back
    lock_heir_.store(target, std::memory_order_relaxed);
    if (!CurrentExecutionContext().SwitchToParked(wake, parker)) {
      lock_heir_.store(nullptr, std::memory_order_relaxed);
      mu_.Unlock();
      wake.Unpark();
      parker.Park();
    }
    ResumeLocked(self);
  }

  // ResumeAfterPark's checks, returning with mu_ held when the task goes
  // on (the caller releases it).
  void ResumeLocked(Record* self) ABSL_NO_THREAD_SAFETY_ANALYSIS {
    if (lock_heir_.load(std::memory_order_relaxed) == self) {
      lock_heir_.store(nullptr, std::memory_order_relaxed);
      // mu_ is held, taken by the task that switched here.
      if (!self->killed && !self->pause_requested && (system_ == nullptr || system_ == self)) {
        return;
      }
      mu_.Unlock();
    }
    ResumePoint(self, [] {}, /*keep_lock=*/true);
  }

  void ResumePoint(Record* self) {
    ResumePoint(self, [] {});
  }
  // With `keep_lock`, returns holding mu_ (after on_resume).
  template <typename OnResume>
  void ResumePoint(Record* self, OnResume on_resume, bool keep_lock = false)
      ABSL_NO_THREAD_SAFETY_ANALYSIS {
    while (true) {
      Parker gate;
      bool gated = false;
      mu_.Lock();
      if (self->killed) {
        mu_.Unlock();
        throw TaskKilled{};
      }
      if (self->pause_requested) {
        self->pause_requested = false;
      } else if (system_ == nullptr || system_ == self) {
        on_resume();
        if (!keep_lock) mu_.Unlock();
        return;
      } else {
        gated = true;
        self->waiting = WaitKind::kGate;
        self->wait_parker = &gate;
        gate_.push_back(self);
      }
      mu_.Unlock();
      if (!gated) {
        PauseSelf(self);  // runs the checks again when continued; so do we
        continue;
      }
      gate.Park();
    }
  }

  // Pauses the current task until continued; dies first if a late kill is
  // pending, and drops SYSTEM.
  void PauseSelf(Record* self) {
    Parker parker;
    std::vector<Parker*> wake;
    bool dies = false;
    bool woken_already = false;
    {
      SpinLockHolder lock(&mu_);
      PrepareToPause(self, parker, wake, dies, woken_already);
    }
    FinishPause(self, parker, wake, dies, woken_already);
  }

  // Continues a task and pauses `self` in one critical section: no other
  // task can run in between, which is what the seed gets from
  // task_system(). Under the lock, `select(target)` picks the task (or
  // fails), then `prepare(target)` runs; an error from either changes
  // nothing. `on_resume` runs under the lock when `self` goes on (see
  // ResumePoint).
  //
  // When the target is paused and would run next anyway, this switches
  // straight to it (ExecutionContext::SwitchToParked) and hands it mu_ as
  // it is: the target finishes its resume checks in the same critical
  // section and releases it (ResumeAfterPark). A same-thread round trip
  // then costs one lock and no trip through the ready queue each way.
  template <typename Select, typename Prepare, typename OnResume>
  absl::Status SwitchAndPause(Record* self, const char* what, Select select, Prepare prepare,
                              OnResume on_resume)
      ABSL_NO_THREAD_SAFETY_ANALYSIS {  // mu_ may pass to the target
    Parker parker;
    Parker* wake_target = nullptr;
    std::vector<Parker*> wake;
    bool dies = false;
    bool woken_already = false;
    mu_.Lock();
    Record* target = nullptr;
    if (absl::Status selected = select(target); !selected.ok()) {
      mu_.Unlock();
      return selected;
    }
    if (target == self) {
      mu_.Unlock();
      return absl::InvalidArgumentError(absl::StrCat(what, ": a task cannot switch to itself"));
    }
    if (absl::Status prepared = prepare(*target); !prepared.ok()) {
      mu_.Unlock();
      return prepared;
    }
    wake_target = WakeLocked(*target);
    PrepareToPause(self, parker, wake, dies, woken_already);
    if (wake_target != nullptr && wake.empty() && !dies && !woken_already) {
      lock_heir_.store(target, std::memory_order_relaxed);
      if (CurrentExecutionContext().SwitchToParked(*wake_target, parker)) {
        // The target ran, released mu_, and someone continued us.
        ResumeAfterPark(self, on_resume);
        return absl::OkStatus();
      }
      lock_heir_.store(nullptr, std::memory_order_relaxed);
    }
    mu_.Unlock();
    if (wake_target != nullptr) wake_target->Unpark();
    FinishPause(self, parker, wake, dies, woken_already, on_resume);
    return absl::OkStatus();
  }

  // After a task's pause Parker returned: when the task that continued it
  // handed it mu_ (SwitchAndPause), the resume checks run in that critical
  // section; otherwise as ResumePoint.
  template <typename OnResume>
  void ResumeAfterPark(Record* self, OnResume on_resume) ABSL_NO_THREAD_SAFETY_ANALYSIS {
    if (lock_heir_.load(std::memory_order_relaxed) == self) {
      lock_heir_.store(nullptr, std::memory_order_relaxed);
      // mu_ is held, taken by the task that switched here.
      if (!self->killed && !self->pause_requested && (system_ == nullptr || system_ == self)) {
        on_resume();
        mu_.Unlock();
        return;
      }
      mu_.Unlock();
    }
    ResumePoint(self, on_resume);
  }

  // A `select` for SwitchAndPause: the live task named `name`.
  struct LookupTask {
    LookupTask(absl::string_view task_name, const char* operation)
        : name(task_name), what(operation) {}
    absl::Status operator()(Record*& target) const ABSL_NO_THREAD_SAFETY_ANALYSIS {  // under mu_
      target = impl->Lookup(name);
      return target != nullptr ? absl::OkStatus() : UnknownTask(what, name);
    }
    Impl* impl = nullptr;
    absl::string_view name;
    const char* what;
  };
  LookupTask ByName(absl::string_view name, const char* what) {
    LookupTask select(name, what);
    select.impl = this;
    return select;
  }

  // The locked half of a pause: a pending late kill dies now, SYSTEM ends,
  // a pending continue is consumed, or the task registers its Parker.
  void PrepareToPause(Record* self, Parker& parker, std::vector<Parker*>& wake, bool& dies,
                      bool& woken_already) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (self->late_kill || self->killed) {
      if (!self->killed) KillLocked(*self, wake);
      dies = true;
      return;
    }
    if (system_ == self) ClearSystem(wake);
    if (self->wake_pending) {
      self->wake_pending = false;
      woken_already = true;
      return;
    }
    self->waiting = WaitKind::kPause;
    self->wait_parker = &parker;
  }

  // The unlocked half: wakes whom the locked half released, then waits.
  void FinishPause(Record* self, Parker& parker, const std::vector<Parker*>& wake, bool dies,
                   bool woken_already) {
    FinishPause(self, parker, wake, dies, woken_already, [] {});
  }
  template <typename OnResume>
  void FinishPause(Record* self, Parker& parker, const std::vector<Parker*>& wake, bool dies,
                   bool woken_already, OnResume on_resume) {
    for (Parker* p : wake) p->Unpark();
    if (dies) throw TaskKilled{};
    if (woken_already) {
      ResumePoint(self, on_resume);
      return;
    }
    parker.Park();
    ResumeAfterPark(self, on_resume);
  }

  // Fills in the result `caller` waits for in CoCall (which starts as an OK
  // null value; a value goes straight into it).
  static void Deliver(Record& caller, Value&& value) {
    if (caller.co_slot == nullptr) return;
    if (caller.co_slot->ok()) [[likely]] {
      **caller.co_slot = std::move(value);
    } else {
      *caller.co_slot = std::move(value);
    }
    caller.co_delivered = true;
  }
  static void Deliver(Record& caller, absl::Status error) {
    if (caller.co_slot == nullptr) return;
    *caller.co_slot = std::move(error);
    caller.co_delivered = true;
  }

  // Ends the co-routine link of `caller` with its callee, both ways.
  static void Unlink(Record& caller) {
    if (caller.co_callee != nullptr && caller.co_callee->co_caller == &caller) {
      caller.co_callee->co_caller = nullptr;
    }
    caller.co_callee = nullptr;
  }

  void RunTask(const std::shared_ptr<Record>& record) {
    CurrentExecutionContext().set_task_local(&kRecordKey, record.get());
    absl::StatusOr<Value> outcome = Value();
    try {
      {
        SpinLockHolder lock(&mu_);
        record->started = true;
      }
      ResumePoint(record.get());
      outcome = record->code(*record->context);
    } catch (const TaskKilled&) {
      outcome = absl::AbortedError(absl::StrCat("task '", Describe(*record), "' was killed"));
    }
    std::vector<Parker*> wake;
    {
      SpinLockHolder lock(&mu_);
      record->finished = true;
      if (system_ == record.get()) {
        Record* heir = record->system_heir;
        if (heir != nullptr && !heir->killed) {
          system_ = heir;  // back to the Eval caller, still waiting for us
        } else {
          ClearSystem(wake);
        }
      }
      AnswerCoCaller(*record,
                     absl::AbortedError(absl::StrCat("task_co_call: task '", Describe(*record),
                                                     "' ended without task_co_return")),
                     wake);
      if (record->eval_result != nullptr) {
        *record->eval_result = std::move(outcome);
        wake.push_back(record->eval_parker);
      }
      Forget(*record);
    }
    CurrentExecutionContext().set_task_local(&kRecordKey, nullptr);
    for (Parker* parker : wake) parker->Unpark();
  }

  Scheduler& scheduler_;
  const std::shared_ptr<Context> root_context_ = std::make_shared<Context>();
  // Tasks take it on their own thread; outside calls (continue, check,
  // create) rarely: a spin lock keeps the co-routine path cheap.
  SpinLock mu_;
  uint64_t last_id_ ABSL_GUARDED_BY(mu_) = 0;
  absl::flat_hash_map<std::string, std::shared_ptr<Record>> names_ ABSL_GUARDED_BY(mu_);
  uint64_t names_generation_ ABSL_GUARDED_BY(mu_) = 0;  // bumped on every change of names_
  absl::flat_hash_map<uint64_t, std::shared_ptr<Record>> live_ ABSL_GUARDED_BY(mu_);
  Record* system_ ABSL_GUARDED_BY(mu_) = nullptr;
  // The task a direct hand-off (SwitchAndPause) passed mu_ to, held, until
  // it takes it over on resuming. Only the runtime's thread touches it.
  std::atomic<Record*> lock_heir_{nullptr};
  std::vector<Record*> gate_ ABSL_GUARDED_BY(mu_);  // held back by SYSTEM, in arrival order
};

absl::StatusOr<std::unique_ptr<Runtime>> Runtime::Create(Scheduler& scheduler) {
  if (scheduler.name() != "cooperative") {
    return absl::InvalidArgumentError(absl::StrCat(
        "spl: the task module runs on the cooperative scheduler, not on ", scheduler.name()));
  }
  return std::unique_ptr<Runtime>(new Runtime(std::make_shared<Impl>(scheduler)));
}

Runtime::Runtime(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}

Runtime::~Runtime() { impl_->KillAll(); }

absl::Status Runtime::CreateTask(absl::string_view name, Code code,
                                 std::shared_ptr<Context> context) {
  if (name.empty()) {
    return absl::InvalidArgumentError(
        "task_create: an empty name; use CreateUnnamedTask for a task without a name");
  }
  return impl_->Create(name, std::move(code), std::move(context)).status();
}
absl::Status Runtime::CreateUnnamedTask(Code code, std::shared_ptr<Context> context) {
  return impl_->Create("", std::move(code), std::move(context)).status();
}
absl::Status Runtime::Pause() { return impl_->PauseCurrent(); }
absl::Status Runtime::Pause(absl::string_view name) { return impl_->PauseNamed(name); }
absl::Status Runtime::Continue() { return impl_->ContinueCurrent(); }
absl::Status Runtime::Continue(absl::string_view name) { return impl_->ContinueNamed(name); }
absl::Status Runtime::SetSystem() { return impl_->SetSystem("", true); }
absl::Status Runtime::SetSystem(absl::string_view name) { return impl_->SetSystem(name, false); }
absl::Status Runtime::SetPublic() { return impl_->SetPublic("", true); }
absl::Status Runtime::SetPublic(absl::string_view name) { return impl_->SetPublic(name, false); }
absl::StatusOr<std::string> Runtime::CurrentName() const { return impl_->CurrentName(); }
bool Runtime::Exists(absl::string_view name) const { return impl_->Exists(name); }
absl::Status Runtime::Kill() { return impl_->Kill("", true, false); }
absl::Status Runtime::Kill(absl::string_view name) { return impl_->Kill(name, false, false); }
absl::Status Runtime::LateKill() { return impl_->Kill("", true, true); }
absl::Status Runtime::LateKill(absl::string_view name) { return impl_->Kill(name, false, true); }
absl::Status Runtime::SwitchTo(absl::string_view name) { return impl_->SwitchTo(name); }
absl::StatusOr<Value> Runtime::CoSwitch(absl::string_view name, Value* returning) {
  return impl_->CoSwitch(name, returning);
}
absl::Status Runtime::SetCoReturnDefault(absl::string_view name,
                                         absl::string_view default_task) {
  return impl_->SetCoReturnDefault(name, default_task);
}
absl::StatusOr<Value> Runtime::Eval(Code code, std::shared_ptr<Context> context) {
  return impl_->Eval(std::move(code), std::move(context));
}
absl::Status Runtime::Yield() { return impl_->YieldCurrent(); }
size_t Runtime::task_count() const { return impl_->task_count(); }

}  // namespace taskrt::spl
