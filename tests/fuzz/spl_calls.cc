// Fuzz target: sequences of SPL task-module calls (spl/spl_task.h).
//
// One op stream, read by whichever task runs: a root task (started with
// Eval from outside, unnamed so no op can address it) and tasks named a..d
// that it and they create. Ops are every call of the module with names
// drawn from a..d plus an unknown one: create (duplicates too), pause,
// continue, system, public, getname, check, kill, late kill, switch,
// co_call, co_return, co_setdefault, eval, yield, and the outside calls
// from another thread. The root uses only the calls that cannot leave it
// waiting on another task; when the stream ends it kills every name, so the
// run always ends.
//
// Invariants: every call returns OK or one of the module's documented codes
// (NotFound, AlreadyExists, InvalidArgument, FailedPrecondition,
// PermissionDenied, Aborted); a co_call's value is one a task passed; the
// runtime and the scheduler shut down with nothing left (asan: no leak).

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <thread>

#include "backends/registry.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "spl/spl_task.h"
#include "tests/fuzz/fuzz_input.h"

namespace taskrt::fuzz {
namespace {

using spl::Context;
using spl::Runtime;
using spl::Value;

constexpr const char* kNames[] = {"a", "b", "c", "d", "nobody"};
constexpr int kNameCount = 5;
constexpr int kMaxOps = 400;
constexpr int kOpsPerTask = 12;

const bool trace = std::getenv("SPL_CALLS_TRACE") != nullptr;  // for debugging an input

void CheckDocumented(const absl::Status& status, const char* call) {
  if (trace) std::fprintf(stderr, "  %s: %s\n", call, status.ToString().c_str());
  switch (status.code()) {
    case absl::StatusCode::kOk:
    case absl::StatusCode::kNotFound:
    case absl::StatusCode::kAlreadyExists:
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kFailedPrecondition:
    case absl::StatusCode::kPermissionDenied:
    case absl::StatusCode::kAborted:
      return;
    default:
      FUZZ_CHECK(false, "%s returned an undocumented status: %s", call,
                 status.ToString().c_str());
  }
}

class SplRun {
 public:
  SplRun(Runtime& runtime, FuzzInput& in) : runtime_(runtime), in_(in) {}
  SplRun(const SplRun&) = delete;
  SplRun& operator=(const SplRun&) = delete;

  // The root's code: ops until the stream ends, then every name killed.
  Value Root() {
    while (ops_ < kMaxOps && !in_.empty()) Op(/*root=*/true);
    for (int i = 0; i < kNameCount; ++i) CheckDocumented(runtime_.Kill(kNames[i]), "Kill");
    CheckDocumented(runtime_.Continue(), "Continue()");  // drops SYSTEM if the root took it
    return Value(int64_t{-1});
  }

 private:
  const char* Name() { return kNames[in_.Byte() % kNameCount]; }

  // A named task's code: a few ops of the stream.
  spl::Code TaskCode() {
    return [this](Context&) {
      for (int i = 0; i < kOpsPerTask && ops_ < kMaxOps && !in_.empty(); ++i) Op(/*root=*/false);
      return Value(std::string("done"));
    };
  }

  void Op(bool root) {
    ++ops_;
    if (trace) {
      absl::StatusOr<std::string> name = runtime_.CurrentName();
      std::fprintf(stderr, "op %d in %s: %d\n", ops_, root ? "root" : name.ok() ? name->c_str() : "?",
                   in_.Peek() % 20);
    }
    switch (in_.Byte() % 20) {
      case 0:
      case 1: {
        auto context = in_.Byte() % 2 == 0 ? nullptr : std::make_shared<Context>();
        CheckDocumented(runtime_.CreateTask(Name(), TaskCode(), std::move(context)), "CreateTask");
        break;
      }
      case 2:
        CheckDocumented(runtime_.CreateTask(Name(), spl::Code()), "CreateTask(empty)");
        break;
      case 3:
        if (!root) CheckDocumented(runtime_.Pause(), "Pause()");
        break;
      case 4:
        CheckDocumented(runtime_.Pause(Name()), "Pause(name)");
        break;
      case 5:
        CheckDocumented(runtime_.Continue(Name()), "Continue(name)");
        break;
      case 6:
        CheckDocumented(runtime_.Continue(), "Continue()");
        break;
      case 7:
        CheckDocumented(in_.Byte() % 2 == 0 ? runtime_.SetSystem() : runtime_.SetSystem(Name()),
                        "SetSystem");
        break;
      case 8:
        CheckDocumented(in_.Byte() % 2 == 0 ? runtime_.SetPublic() : runtime_.SetPublic(Name()),
                        "SetPublic");
        break;
      case 9:
        CheckDocumented(runtime_.CurrentName().status(), "CurrentName");
        (void)runtime_.Exists(Name());
        break;
      case 10:
        if (!root) CheckDocumented(runtime_.Kill(), "Kill()");
        break;
      case 11:
        CheckDocumented(runtime_.Kill(Name()), "Kill(name)");
        break;
      case 12:
        if (in_.Byte() % 2 == 0) {
          if (!root) CheckDocumented(runtime_.LateKill(), "LateKill()");
        } else {
          CheckDocumented(runtime_.LateKill(Name()), "LateKill(name)");
        }
        break;
      case 13:
        if (!root) CheckDocumented(runtime_.SwitchTo(Name()), "SwitchTo");
        break;
      case 14:
        if (!root) {
          absl::StatusOr<Value> value = runtime_.CoCall(Name());
          CheckDocumented(value.status(), "CoCall");
          if (value.ok()) {
            FUZZ_CHECK(value->is_int() || value->is_string() || value->is_null(),
                       "CoCall returned a value no task passed: %s",
                       value->DebugString().c_str());
          }
        }
        break;
      case 15:
        CheckDocumented(runtime_.CoReturn(Value(int64_t{ops_})), "CoReturn");
        break;
      case 16:
        CheckDocumented(runtime_.SetCoReturnDefault(Name(), Name()), "SetCoReturnDefault");
        break;
      case 17: {
        absl::StatusOr<Value> value = runtime_.Eval([](Context&) { return Value(int64_t{7}); });
        CheckDocumented(value.status(), "Eval");
        if (value.ok()) FUZZ_CHECK(value->as_int() == 7, "Eval returned %s", value->DebugString().c_str());
        break;
      }
      case 18:
        CheckDocumented(runtime_.Yield(), "Yield");
        break;
      case 19:
        OutsideCalls(Name());
        break;
    }
  }

  // The public rule: from another thread only Continue of a public task
  // (and create, check, eval) may pass.
  void OutsideCalls(const char* name) {
    std::thread outside([&] {
      absl::Status paused = runtime_.Pause(name);
      FUZZ_CHECK(paused.code() == absl::StatusCode::kPermissionDenied,
                 "Pause from outside: %s", paused.ToString().c_str());
      absl::Status killed = runtime_.Kill(name);
      FUZZ_CHECK(killed.code() == absl::StatusCode::kPermissionDenied,
                 "Kill from outside: %s", killed.ToString().c_str());
      CheckDocumented(runtime_.Continue(name), "Continue from outside");
      (void)runtime_.Exists(name);
    });
    outside.join();
  }

  Runtime& runtime_;
  FuzzInput& in_;
  int ops_ = 0;
};

}  // namespace
}  // namespace taskrt::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace taskrt;
  absl::StatusOr<std::unique_ptr<Scheduler>> scheduler =
      NewSchedulerWith({.single_thread_stackful_tasks = true});
  FUZZ_CHECK(scheduler.ok(), "stackful scheduler: %s", scheduler.status().ToString().c_str());
  absl::StatusOr<std::unique_ptr<spl::Runtime>> runtime = spl::Runtime::Create(**scheduler);
  FUZZ_CHECK(runtime.ok(), "runtime: %s", runtime.status().ToString().c_str());
  fuzz::FuzzInput in(data, size);
  // Declared after the runtime, so destroyed before it; by then the root
  // has killed every name and no task reads the stream any more.
  fuzz::SplRun run(**runtime, in);
  absl::StatusOr<spl::Value> root = (*runtime)->Eval([&](spl::Context&) { return run.Root(); });
  FUZZ_CHECK(root.ok() && root->as_int() == -1, "the root task: %s",
             root.ok() ? root->DebugString().c_str() : root.status().ToString().c_str());
  runtime->reset();  // kills what is left
  FUZZ_CHECK((*scheduler)->Shutdown().ok(), "scheduler shutdown");
  return 0;
}
