// The public face of the SPL runtime: Value, Runtime::Create and the calls
// that forward to Runtime::Impl (runtime_impl.h), whose parts live in
// tasks.cc, scheduling.cc, co_call.cc and kill.cc. Runtime::CoSwitch is
// defined in co_call.cc, beside the hot path it inlines.

#include "spl/spl_task.h"

#include <memory>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "spl/runtime_impl.h"

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

absl::StatusOr<std::unique_ptr<Runtime>> Runtime::Create(Scheduler& scheduler) {
  if (!scheduler.capabilities().single_thread_stackful_tasks) {
    return absl::InvalidArgumentError(absl::StrCat(
        "spl: the task module needs a scheduler that runs every unit as a stackful task on "
        "one thread (SchedulerCapabilities::single_thread_stackful_tasks); ",
        scheduler.name(), " does not"));
  }
  return std::unique_ptr<Runtime>(new Runtime(std::make_shared<Impl>(scheduler)));
}

Runtime::Runtime(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}

Runtime::~Runtime() {
  impl_->KillAll();
  impl_->WaitUntilNoTasks();
}

absl::Status Runtime::CreateTask(absl::string_view name, Code code,
                                 std::shared_ptr<Context> context) {
  if (name.empty()) {
    return absl::InvalidArgumentError(
        "task_create: an empty name; use CreateUnnamedTask for a task without a name");
  }
  return impl_->Create(name, std::move(code), std::move(context));
}
absl::Status Runtime::CreateUnnamedTask(Code code, std::shared_ptr<Context> context) {
  return impl_->Create("", std::move(code), std::move(context));
}
absl::Status Runtime::Pause() { return impl_->PauseCurrent(); }
absl::Status Runtime::PauseUntil(absl::Time deadline) {
  return impl_->PauseCurrentUntil(deadline);
}
absl::Status Runtime::Pause(absl::string_view name) { return impl_->PauseNamed(name); }
absl::StatusOr<Value> Runtime::CoCallUntil(absl::string_view name, absl::Time deadline) {
  return impl_->CoCallUntil(name, deadline);
}
absl::Status Runtime::Continue() { return impl_->ContinueCurrent(); }
absl::Status Runtime::Continue(absl::string_view name) { return impl_->ContinueNamed(name); }
absl::Status Runtime::SetSystem() { return impl_->SetSystem(TaskRef::Current()); }
absl::Status Runtime::SetSystem(absl::string_view name) {
  return impl_->SetSystem(TaskRef::Named(name));
}
absl::Status Runtime::SetPublic() { return impl_->SetPublic(TaskRef::Current()); }
absl::Status Runtime::SetPublic(absl::string_view name) {
  return impl_->SetPublic(TaskRef::Named(name));
}
absl::StatusOr<std::string> Runtime::CurrentName() const { return impl_->CurrentName(); }
bool Runtime::Exists(absl::string_view name) const { return impl_->Exists(name); }
absl::Status Runtime::Kill() { return impl_->Kill(TaskRef::Current(), KillTiming::kNow); }
absl::Status Runtime::Kill(absl::string_view name) {
  return impl_->Kill(TaskRef::Named(name), KillTiming::kNow);
}
absl::Status Runtime::LateKill() {
  return impl_->Kill(TaskRef::Current(), KillTiming::kWhenItNextPauses);
}
absl::Status Runtime::LateKill(absl::string_view name) {
  return impl_->Kill(TaskRef::Named(name), KillTiming::kWhenItNextPauses);
}
absl::Status Runtime::SwitchTo(absl::string_view name) { return impl_->SwitchTo(name); }
absl::Status Runtime::SetCoReturnDefault(absl::string_view name, absl::string_view default_task) {
  return impl_->SetCoReturnDefault(name, default_task);
}
absl::StatusOr<Value> Runtime::Eval(Code code, std::shared_ptr<Context> context) {
  return impl_->EvalUntil(std::move(code), absl::InfiniteFuture(), std::move(context));
}
absl::StatusOr<Value> Runtime::EvalUntil(Code code, absl::Time deadline,
                                         std::shared_ptr<Context> context) {
  return impl_->EvalUntil(std::move(code), deadline, std::move(context));
}
absl::Status Runtime::Yield() { return impl_->YieldCurrent(); }
size_t Runtime::task_count() const { return impl_->task_count(); }

}  // namespace taskrt::spl
