// Conformance group: SPL's task module (spl/spl_task.h), one test per
// sentence of SPL's task module reference, and its edge cases. Linked by
// the targets of schedulers that run every unit as a stackful task on one
// thread (the capability Runtime::Create asks for). All tasks of a runtime
// share that thread, so the order they log in is the order they ran in.

#include <atomic>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "spl/spl_task.h"
#include "tests/conformance/conformance.h"

namespace taskrt::conformance {
namespace {

using spl::Context;
using spl::Runtime;
using spl::Value;

class SplConformance : public ConformanceTest {
 protected:
  void SetUp() override {
    ConformanceTest::SetUp();
    if (IsSkipped()) return;
    absl::StatusOr<std::unique_ptr<Runtime>> runtime = Runtime::Create(*scheduler_);
    ASSERT_TRUE(runtime.ok()) << runtime.status();
    owned_runtime_ = *std::move(runtime);
    runtime_ = owned_runtime_.get();
  }
  void TearDown() override {
    owned_runtime_.reset();  // kills what is left, so the scheduler can drain
    ConformanceTest::TearDown();
  }

  // Appends to the log; only tasks call it, all on the scheduler's thread.
  void Log(std::string entry) { log_.push_back(std::move(entry)); }
  std::string LogLine() const { return absl::StrJoin(log_, " "); }

  // Creates a task whose code is `body`. From inside the runtime it is
  // created at once; from the test's thread it is created by Go(), with the
  // others, in order, from one task, so the tasks start in the order they
  // were spawned.
  void Spawn(const std::string& name, std::function<void()> body) {
    spl::Code code = [body = std::move(body)](Context&) {
      body();
      return Value();
    };
    if (!scheduler_->IsCurrentThreadOwned()) {
      to_create_.emplace_back(name, std::move(code));
      return;
    }
    absl::Status created = runtime_->CreateTask(name, std::move(code));
    EXPECT_TRUE(created.ok()) << created;
  }
  void Go() {
    absl::StatusOr<Value> created = runtime_->Eval([&](Context&) {
      for (auto& [name, code] : to_create_) {
        absl::Status status = runtime_->CreateTask(name, std::move(code));
        EXPECT_TRUE(status.ok()) << status;
      }
      return Value();
    });
    EXPECT_TRUE(created.ok()) << created.status();
    to_create_.clear();
  }
  // Go(), then wait until a task calls done_.Notify().
  bool RunAndWait() {
    Go();
    return done_.WaitForNotification();
  }

  // Tasks read runtime_, which never changes after SetUp; TearDown
  // destroys the runtime through the other pointer.
  Runtime* runtime_ = nullptr;
  std::unique_ptr<Runtime> owned_runtime_;
  std::vector<std::string> log_;
  Notification done_;
  std::vector<std::pair<std::string, spl::Code>> to_create_;
};

// "This function creates a new task. The 1st parameter is the name ... the
// 2nd is the program code ... The third option is the context in which the
// task should be executed."
TEST_P(SplConformance, CreateRunsTheCodeInTheGivenContext) {
  auto context = std::make_shared<Context>();
  context->variables["greeting"] = Value("hello");
  ASSERT_TRUE(runtime_
                  ->CreateTask("greeter",
                               [&](Context& ctx) {
                                 Log(ctx.variables["greeting"].as_string());
                                 EXPECT_EQ(*runtime_->CurrentName(), "greeter");
                                 done_.Notify();
                                 return Value();
                               },
                               context)
                  .ok());
  ASSERT_TRUE(RunAndWait());
  EXPECT_EQ(LogLine(), "hello");
}

// "The 2nd parameter will be compiled when executing the function": empty
// code is refused at create time.
TEST_P(SplConformance, EmptyCodeIsRefusedAtCreate) {
  absl::Status status = runtime_->CreateTask("nothing", spl::Code());
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
  EXPECT_FALSE(runtime_->Exists("nothing"));
}

// "If the task name is undefined, the task won't have a name attached to it
// and it won't be possible to access it later."
TEST_P(SplConformance, AnUnnamedTaskRunsButCannotBeAddressed) {
  ASSERT_TRUE(runtime_
                  ->CreateUnnamedTask([&](Context&) {
                    Log(absl::StrCat("name='", *runtime_->CurrentName(), "'"));
                    EXPECT_FALSE(runtime_->Exists(""));
                    EXPECT_EQ(runtime_->Continue("").code(), absl::StatusCode::kNotFound);
                    done_.Notify();
                    return Value();
                  })
                  .ok());
  ASSERT_TRUE(RunAndWait());
  EXPECT_EQ(LogLine(), "name=''");
}

// "If the context is omitted, the task will run in the same context as the
// function which called this function."
TEST_P(SplConformance, WithoutAContextTheCodeGetsItsCreators) {
  auto context = std::make_shared<Context>();
  context->variables["x"] = Value(7);
  ASSERT_TRUE(runtime_
                  ->CreateTask("parent",
                               [&](Context& ctx) {
                                 ctx.variables["x"] = Value(8);
                                 EXPECT_TRUE(runtime_
                                                 ->CreateTask("child",
                                                              [&](Context& inherited) {
                                                                Log(inherited.variables["x"]
                                                                        .DebugString());
                                                                done_.Notify();
                                                                return Value();
                                                              })
                                                 .ok());
                                 return Value();
                               },
                               context)
                  .ok());
  ASSERT_TRUE(RunAndWait());
  EXPECT_EQ(LogLine(), "8");
  EXPECT_EQ(context->variables["x"], Value(8)) << "the very same context, shared";
}

TEST_P(SplConformance, ADuplicateLiveNameIsRefusedAndFreedWhenTheTaskEnds) {
  Spawn("worker", [&] {
    absl::Status duplicate = runtime_->CreateTask("worker", [](Context&) { return Value(); });
    EXPECT_EQ(duplicate.code(), absl::StatusCode::kAlreadyExists) << duplicate;
    Log("first");
  });
  Spawn("after", [&] {
    // "worker" ended before this task started (FIFO order): its name is free.
    EXPECT_FALSE(runtime_->Exists("worker"));
    EXPECT_TRUE(runtime_
                    ->CreateTask("worker",
                                 [&](Context&) {
                                   Log("second");
                                   done_.Notify();
                                   return Value();
                                 })
                    .ok());
  });
  ASSERT_TRUE(RunAndWait());
  EXPECT_EQ(LogLine(), "first second");
}

// "This function pauses the specified task until it is woken up by
// task_continue()." "If the task name is omitted, the current task will be
// affected."
TEST_P(SplConformance, PauseWaitsForContinue) {
  Spawn("sleeper", [&] {
    Log("sleeper pauses");
    EXPECT_TRUE(runtime_->Pause().ok());
    Log("sleeper continued");
    done_.Notify();
  });
  Spawn("waker", [&] {
    Log("waker runs");
    EXPECT_TRUE(runtime_->Continue("sleeper").ok());
    Log("waker done");
  });
  ASSERT_TRUE(RunAndWait());
  EXPECT_EQ(LogLine(), "sleeper pauses waker runs waker done sleeper continued");
}

// PauseUntil: a pause that nobody continues gives up at its deadline,
// never before it, and the task runs on; a Continue that comes later is
// remembered for the next pause.
TEST_P(SplConformance, PauseUntilGivesUpAtItsDeadlineAndALateContinueIsRemembered) {
  Spawn("sleeper", [&] {
    const absl::Time deadline = absl::Now() + absl::Milliseconds(3);
    absl::Status paused = runtime_->PauseUntil(deadline);
    EXPECT_EQ(paused.code(), absl::StatusCode::kDeadlineExceeded) << paused;
    EXPECT_GE(absl::Now(), deadline) << "gave up early";
    Log("sleeper timed out");
    EXPECT_TRUE(runtime_->Continue("waker").ok());
    EXPECT_TRUE(runtime_->Yield().ok());  // the waker continues us meanwhile
    EXPECT_TRUE(runtime_->PauseUntil(absl::InfinitePast()).ok())
        << "the remembered Continue counts even with a deadline that has passed";
    Log("sleeper used the late continue");
    done_.Notify();
  });
  Spawn("waker", [&] {
    Log("waker pauses");
    EXPECT_TRUE(runtime_->Pause().ok());
    Log("waker continues sleeper");
    EXPECT_TRUE(runtime_->Continue("sleeper").ok());
  });
  ASSERT_TRUE(RunAndWait());
  EXPECT_EQ(LogLine(),
            "waker pauses sleeper timed out waker continues sleeper sleeper used the late continue");
}

TEST_P(SplConformance, PauseUntilReturnsOkWhenContinuedInTime) {
  Spawn("sleeper", [&] {
    Log("sleeper pauses");
    EXPECT_TRUE(runtime_->PauseUntil(absl::Now() + absl::Hours(1)).ok());
    Log("sleeper continued");
    EXPECT_EQ(runtime_->PauseUntil(absl::InfinitePast()).code(),
              absl::StatusCode::kDeadlineExceeded)
        << "nothing pending: a past deadline times out at once";
    done_.Notify();
  });
  Spawn("waker", [&] {
    Log("waker runs");
    EXPECT_TRUE(runtime_->Continue("sleeper").ok());
  });
  ASSERT_TRUE(RunAndWait());
  EXPECT_EQ(LogLine(), "sleeper pauses waker runs sleeper continued");
}

// A kill ends a task waiting in PauseUntil as it ends one in Pause.
TEST_P(SplConformance, KillingATaskInPauseUntilEndsIt) {
  Spawn("sleeper", [&] {
    Log("sleeper pauses");
    (void)runtime_->PauseUntil(absl::Now() + absl::Hours(1));
    Log("sleeper must not get here");
  });
  Spawn("killer", [&] {
    EXPECT_TRUE(runtime_->Kill("sleeper").ok());
    Log("killed");
    done_.Notify();
  });
  ASSERT_TRUE(RunAndWait());
  EXPECT_EQ(LogLine(), "sleeper pauses killed");
}

// task_pause(name) on another task: it pauses at its next suspension point.
TEST_P(SplConformance, PausingAnotherTaskStopsItAtItsNextSuspensionPoint) {
  Spawn("busy", [&] {
    Log("busy 1");
    EXPECT_TRUE(runtime_->Yield().ok());  // paused here by "boss"
    Log("busy 2");
    done_.Notify();
  });
  Spawn("boss", [&] {
    EXPECT_TRUE(runtime_->Pause("busy").ok());
    EXPECT_TRUE(runtime_->Yield().ok());
    EXPECT_TRUE(runtime_->Yield().ok());
    Log("boss continues busy");
    EXPECT_TRUE(runtime_->Continue("busy").ok());
  });
  ASSERT_TRUE(RunAndWait());
  EXPECT_EQ(LogLine(), "busy 1 boss continues busy busy 2");
}

// "This function sets the SYSTEM flag ... the scheduler will not schedule
// any other task until the system flag is removed again using
// task_continue() ..." and "It also can be used to remove the SYSTEM flag
// from the current task."
TEST_P(SplConformance, SystemFlagHoldsOtherTasksUntilContinue) {
  Spawn("other", [&] {
    Log("other paused");
    EXPECT_TRUE(runtime_->Pause().ok());
    Log("other runs");
  });
  Spawn("system", [&] {
    EXPECT_TRUE(runtime_->SetSystem().ok());
    EXPECT_TRUE(runtime_->Continue("other").ok());  // woken, but held back
    for (int i = 1; i <= 3; ++i) {
      EXPECT_TRUE(runtime_->Yield().ok());
      Log(absl::StrCat("system ", i));
    }
    EXPECT_TRUE(runtime_->Continue().ok());  // clears SYSTEM
    EXPECT_TRUE(runtime_->Yield().ok());
    Log("system after");
    done_.Notify();
  });
  ASSERT_TRUE(RunAndWait());
  EXPECT_EQ(LogLine(), "other paused system 1 system 2 system 3 other runs system after")
      << "no other task ran while SYSTEM was set";
}

// "... or the task is paused (task_pause()) or killed (task_kill())."
TEST_P(SplConformance, SystemFlagEndsWithPauseAndWithKill) {
  Spawn("a", [&] {
    Log("a waits");
    EXPECT_TRUE(runtime_->Pause().ok());
    Log("a after pause-of-system");
    Spawn("killer", [&] {
      EXPECT_TRUE(runtime_->SetSystem().ok());
      EXPECT_TRUE(runtime_->Continue("a").ok());
      EXPECT_TRUE(runtime_->Yield().ok());
      Log("killer dies");
      (void)runtime_->Kill();  // ends SYSTEM
      ADD_FAILURE() << "code after task_kill() ran";
    });
    EXPECT_TRUE(runtime_->Pause().ok());
    Log("a after kill-of-system");
    done_.Notify();
  });
  Spawn("pauser", [&] {
    EXPECT_TRUE(runtime_->SetSystem().ok());
    EXPECT_TRUE(runtime_->Continue("a").ok());
    EXPECT_TRUE(runtime_->Yield().ok());
    Log("pauser pauses");
    EXPECT_TRUE(runtime_->Pause().ok());  // ends SYSTEM; never continued
  });
  ASSERT_TRUE(RunAndWait());
  EXPECT_EQ(LogLine(),
            "a waits pauser pauses a after pause-of-system killer dies a after kill-of-system");
}

// Eval() by the SYSTEM holder runs the evaluated code inside the holder's
// section (were it held back like any other task, the holder would wait
// for ever), and no other task runs until the holder clears the flag. When
// EvalUntil gives up, the lent flag comes back to the holder: its section
// stays atomic.
TEST_P(SplConformance, EvalByTheSystemHolderRunsInsideItsSection) {
  Spawn("other", [&] {
    Log("other paused");
    EXPECT_TRUE(runtime_->Pause().ok());
    Log("other runs");
  });
  Spawn("system", [&] {
    EXPECT_TRUE(runtime_->SetSystem().ok());
    EXPECT_TRUE(runtime_->Continue("other").ok());  // woken, but held back
    absl::StatusOr<Value> value = runtime_->Eval([&](Context&) {
      EXPECT_TRUE(runtime_->Yield().ok());
      Log("eval");
      return Value(int64_t{42});
    });
    ASSERT_TRUE(value.ok()) << value.status();
    EXPECT_EQ(value->as_int(), 42);
    EXPECT_TRUE(runtime_->Yield().ok());
    Log("system after eval");
    value = runtime_->EvalUntil(
        [this](Context&) {
          Log("timed eval");
          // Keeps the lent flag (a pause would clear it) until killed.
          while (true) (void)runtime_->Yield();
          return Value();
        },
        absl::Now() + absl::Milliseconds(3));
    EXPECT_EQ(value.status().code(), absl::StatusCode::kDeadlineExceeded) << value.status();
    EXPECT_TRUE(runtime_->Yield().ok());
    Log("system after timed eval");
    EXPECT_TRUE(runtime_->Continue().ok());  // clears SYSTEM
    EXPECT_TRUE(runtime_->Yield().ok());
    Log("system done");
    done_.Notify();
  });
  ASSERT_TRUE(RunAndWait());
  EXPECT_EQ(LogLine(),
            "other paused eval system after eval timed eval system after timed eval other runs "
            "system done");
}

// SYSTEM given to a paused task would stop the runtime for good: the holder
// could not run to clear it and no one else could run to continue it. It is
// refused.
TEST_P(SplConformance, SystemFlagOfAPausedTaskIsRefused) {
  Spawn("sleeper", [&] {
    Log("sleeper pauses");
    EXPECT_TRUE(runtime_->Pause().ok());
    Log("sleeper continued");
  });
  Spawn("setter", [&] {
    absl::Status refused = runtime_->SetSystem("sleeper");
    EXPECT_EQ(refused.code(), absl::StatusCode::kFailedPrecondition) << refused;
    EXPECT_TRUE(runtime_->Continue("sleeper").ok());
    EXPECT_TRUE(runtime_->Yield().ok());
    Log("setter goes on");
    done_.Notify();
  });
  ASSERT_TRUE(RunAndWait());
  EXPECT_EQ(LogLine(), "sleeper pauses sleeper continued setter goes on");
}

// "This function is used to set the PUBLIC flag on a task. This is e.g.
// needed when the task should be woken up by WebSPL" — only public tasks can
// be continued from outside the runtime.
TEST_P(SplConformance, OnlyPublicTasksCanBeContinuedFromOutside) {
  Notification first_pause;
  Notification second_pause;
  Spawn("private", [&] {
    Log("private pauses");
    first_pause.Notify();
    EXPECT_TRUE(runtime_->Pause().ok());
    Log("private continued");
    EXPECT_TRUE(runtime_->SetPublic().ok());
    second_pause.Notify();
    EXPECT_TRUE(runtime_->Pause().ok());
    Log("public continued");
    done_.Notify();
  });
  Go();
  ASSERT_TRUE(first_pause.WaitForNotification());
  // From this thread, outside the runtime: refused while not public.
  absl::Status refused = runtime_->Continue("private");
  EXPECT_EQ(refused.code(), absl::StatusCode::kPermissionDenied) << refused;
  // A task inside the runtime may continue it.
  Spawn("insider", [&] { EXPECT_TRUE(runtime_->Continue("private").ok()); });
  Go();
  ASSERT_TRUE(second_pause.WaitForNotification());
  // Public now: the outside continue is allowed (and not lost if it comes
  // before the pause).
  absl::Status allowed = runtime_->Continue("private");
  EXPECT_TRUE(allowed.ok()) << allowed;
  ASSERT_TRUE(RunAndWait());
  EXPECT_EQ(LogLine(), "private pauses private continued public continued");
}

TEST_P(SplConformance, OperationsOtherThanContinueAreRefusedFromOutside) {
  Spawn("target", [&] { EXPECT_TRUE(runtime_->Pause().ok()); });
  Go();
  EXPECT_EQ(runtime_->Pause("target").code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(runtime_->Kill("target").code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(runtime_->SwitchTo("target").code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(runtime_->SetSystem("target").code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(runtime_->CoCall("target").status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(runtime_->CoReturn(Value(1)).code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(runtime_->CurrentName().status().code(), absl::StatusCode::kFailedPrecondition);
}

// "Returns the name of the current task." / "Returns 1 if the specified
// task exists and 0 otherwise."
TEST_P(SplConformance, GetNameAndCheck) {
  Spawn("named", [&] {
    Log(*runtime_->CurrentName());
    Log(runtime_->Exists("named") ? "1" : "0");
    Log(runtime_->Exists("ghost") ? "1" : "0");
    done_.Notify();
  });
  ASSERT_TRUE(RunAndWait());
  EXPECT_EQ(LogLine(), "named 1 0");
}

// "This function kills the specified task. If the task name is omitted, the
// current task will be affected."
TEST_P(SplConformance, KillingTheCurrentTaskEndsItAtOnce) {
  Spawn("suicidal", [&] {
    Log("before");
    (void)runtime_->Kill();
    Log("after");
  });
  Spawn("observer", [&] {
    Log(runtime_->Exists("suicidal") ? "alive" : "gone");
    done_.Notify();
  });
  ASSERT_TRUE(RunAndWait());
  EXPECT_EQ(LogLine(), "before gone");
}

TEST_P(SplConformance, KillingAnotherTaskFreesIt) {
  Spawn("victim", [&] {
    Log("victim pauses");
    EXPECT_TRUE(runtime_->Pause().ok());
    Log("victim resumed");
  });
  Spawn("killer", [&] {
    EXPECT_TRUE(runtime_->Kill("victim").ok());
    Log(runtime_->Exists("victim") ? "alive" : "gone");
    EXPECT_EQ(runtime_->Continue("victim").code(), absl::StatusCode::kNotFound);
    EXPECT_EQ(runtime_->Kill("victim").code(), absl::StatusCode::kNotFound) << "dead task";
    EXPECT_TRUE(runtime_->Yield().ok());  // let the victim unwind
    Log(absl::StrCat("tasks=", runtime_->task_count()));
    done_.Notify();
  });
  ASSERT_TRUE(RunAndWait());
  EXPECT_EQ(LogLine(), "victim pauses gone tasks=1");
}

// "The task will be killed when becomes paused the next time ... If the task
// is already paused, it will be killed immediately."
TEST_P(SplConformance, LateKillOfAPausedTaskKillsAtOnce) {
  Spawn("paused", [&] {
    EXPECT_TRUE(runtime_->Pause().ok());
    Log("paused resumed");
  });
  Spawn("killer", [&] {
    EXPECT_TRUE(runtime_->LateKill("paused").ok());
    Log(runtime_->Exists("paused") ? "alive" : "gone");
    done_.Notify();
  });
  ASSERT_TRUE(RunAndWait());
  EXPECT_EQ(LogLine(), "gone");
}

TEST_P(SplConformance, LateKillOfARunningTaskKillsItWhenItNextPauses) {
  Spawn("worker", [&] {
    Log("work 1");
    EXPECT_TRUE(runtime_->Yield().ok());  // the late kill arrives meanwhile
    Log("work 2");
    (void)runtime_->Pause();
    Log("after pause");
  });
  Spawn("killer", [&] {
    EXPECT_TRUE(runtime_->LateKill("worker").ok());
    Log(runtime_->Exists("worker") ? "still alive" : "gone");
    EXPECT_TRUE(runtime_->Yield().ok());
    EXPECT_TRUE(runtime_->Yield().ok());
    Log(runtime_->Exists("worker") ? "still alive" : "gone");
    done_.Notify();
  });
  ASSERT_TRUE(RunAndWait());
  EXPECT_EQ(LogLine(), "work 1 still alive work 2 gone");
}

// "This function pauses the current task and wakes up the specified one."
TEST_P(SplConformance, SwitchPausesTheCurrentTaskAndContinuesTheNamedOne) {
  Spawn("b", [&] {
    EXPECT_TRUE(runtime_->Pause().ok());
    Log("b runs");
    EXPECT_TRUE(runtime_->SwitchTo("a").ok());
    Log("b again");
    done_.Notify();
  });
  Spawn("a", [&] {
    Log("a switches");
    EXPECT_TRUE(runtime_->SwitchTo("b").ok());
    Log("a back");
    EXPECT_TRUE(runtime_->Continue("b").ok());
  });
  ASSERT_TRUE(RunAndWait());
  EXPECT_EQ(LogLine(), "a switches b runs a back b again");
}

// "It is using task_system() to make the operation atomic": a third task
// woken at the same time does not run between the two.
TEST_P(SplConformance, SwitchIsAtomic) {
  Spawn("bystander", [&] {
    EXPECT_TRUE(runtime_->Pause().ok());
    Log("bystander");
  });
  Spawn("target", [&] {
    EXPECT_TRUE(runtime_->Pause().ok());
    Log("target");
    done_.Notify();
  });
  Spawn("switcher", [&] {
    EXPECT_TRUE(runtime_->Continue("bystander").ok());  // ready before the target
    EXPECT_TRUE(runtime_->SwitchTo("target").ok());
  });
  ASSERT_TRUE(RunAndWait());
  ASSERT_FALSE(log_.empty());
  EXPECT_EQ(log_.back(), "target") << LogLine();
}

TEST_P(SplConformance, SwitchToAnUnknownNameFailsAndDoesNotPause) {
  Spawn("lonely", [&] {
    absl::Status status = runtime_->SwitchTo("nobody");
    EXPECT_EQ(status.code(), absl::StatusCode::kNotFound) << status;
    EXPECT_EQ(runtime_->SwitchTo("lonely").code(), absl::StatusCode::kInvalidArgument);
    Log("still running");
    done_.Notify();
  });
  ASSERT_TRUE(RunAndWait());
  EXPECT_EQ(LogLine(), "still running");
}

// "when the specified task call task_co_return(), the calling task will be
// woken up again and the parameter to task_co_return() will be returned".
TEST_P(SplConformance, CoCallReturnsTheValueOfCoReturn) {
  Spawn("callee", [&] {
    EXPECT_TRUE(runtime_->Pause().ok());
    EXPECT_TRUE(runtime_->CoReturn(Value(42)).ok());
    EXPECT_TRUE(runtime_->CoReturn(Value(2.5)).ok());
    EXPECT_TRUE(runtime_->CoReturn(Value("text")).ok());
    EXPECT_TRUE(runtime_->CoReturn(Value()).ok());
  });
  Spawn("caller", [&] {
    for (int i = 0; i < 4; ++i) {
      absl::StatusOr<Value> got = runtime_->CoCall("callee");
      ASSERT_TRUE(got.ok()) << got.status();
      Log(got->DebugString());
    }
    done_.Notify();
  });
  ASSERT_TRUE(RunAndWait());
  EXPECT_EQ(LogLine(), "42 2.5 \"text\" null");
}

// "If the current task was not entered using this mechanism, control is
// passed to the task specified by task_co_setdefault()".
TEST_P(SplConformance, CoReturnWithoutACallerGoesToTheDefaultTask) {
  Spawn("home", [&] {
    EXPECT_TRUE(runtime_->Pause().ok());
    Log("home continued");
    done_.Notify();
  });
  Spawn("wanderer", [&] {
    EXPECT_TRUE(runtime_->SetCoReturnDefault("wanderer", "home").ok());
    Log("wanderer returns");
    EXPECT_TRUE(runtime_->CoReturn(Value(1)).ok());
  });
  ASSERT_TRUE(RunAndWait());
  EXPECT_EQ(LogLine(), "wanderer returns home continued");
}

// "... or a runtime error is triggered if no default has been defined."
TEST_P(SplConformance, CoReturnWithoutACallerOrDefaultIsAnError) {
  Spawn("orphan", [&] {
    absl::Status status = runtime_->CoReturn(Value(1));
    EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition) << status;
    Log("orphan continues");
    done_.Notify();
  });
  ASSERT_TRUE(RunAndWait());
  EXPECT_EQ(LogLine(), "orphan continues");
}

// CoCallUntil too, when the kill comes before its deadline.
TEST_P(SplConformance, CoCallIntoATaskThatGetsKilledReturnsAborted) {
  auto callee = [&] {
    EXPECT_TRUE(runtime_->Pause().ok());
    Log("callee entered");
    (void)runtime_->Kill();  // never co_returns
  };
  Spawn("callee", callee);
  Spawn("caller", [&] {
    absl::StatusOr<Value> got = runtime_->CoCall("callee");
    EXPECT_EQ(got.status().code(), absl::StatusCode::kAborted) << got.status();
    Log("caller answered");
    Spawn("callee", callee);  // the name is free again
    got = runtime_->CoCallUntil("callee", absl::Now() + absl::Hours(1));
    EXPECT_EQ(got.status().code(), absl::StatusCode::kAborted) << got.status();
    Log("timed caller answered");
    done_.Notify();
  });
  ASSERT_TRUE(RunAndWait());
  EXPECT_EQ(LogLine(), "callee entered caller answered callee entered timed caller answered");
}

TEST_P(SplConformance, CoCallIntoATaskKilledByAThirdReturnsAborted) {
  Spawn("callee", [&] {
    EXPECT_TRUE(runtime_->Pause().ok());
    Log("callee entered");
    Spawn("killer", [&] {
      Log("killer");
      EXPECT_TRUE(runtime_->Kill("callee").ok());
    });
    EXPECT_TRUE(runtime_->Pause().ok());  // killed while paused here
    ADD_FAILURE() << "a killed task resumed";
  });
  Spawn("caller", [&] {
    absl::StatusOr<Value> got = runtime_->CoCall("callee");
    EXPECT_EQ(got.status().code(), absl::StatusCode::kAborted) << got.status();
    Log("caller answered");
    done_.Notify();
  });
  ASSERT_TRUE(RunAndWait());
  EXPECT_EQ(LogLine(), "callee entered killer caller answered");
}

// A caller that co-called a task, which was then killed and whose name a
// new task took, reaches the new task: it never reuses the old target.
TEST_P(SplConformance, CoCallAfterTheTargetWasKilledAndItsNameReusedReachesTheNewTask) {
  Spawn("callee", [&] {
    EXPECT_TRUE(runtime_->Pause().ok());
    EXPECT_TRUE(runtime_->CoReturn(Value("old")).ok());
    EXPECT_TRUE(runtime_->Pause().ok());  // killed while paused here
    ADD_FAILURE() << "a killed task resumed";
  });
  Spawn("caller", [&] {
    for (int i = 0; i < 2; ++i) {
      absl::StatusOr<Value> got = runtime_->CoCall("callee");
      ASSERT_TRUE(got.ok()) << got.status();
      Log(got->DebugString());
      if (i == 0) {
        EXPECT_TRUE(runtime_->Kill("callee").ok());
        // The name is free at once; the new task waits for its first call.
        Spawn("callee", [&] {
          EXPECT_TRUE(runtime_->Pause().ok());
          EXPECT_TRUE(runtime_->CoReturn(Value("new")).ok());
        });
      }
    }
    // Killed again (the new one is paused in CoReturn) and nobody took the
    // name: not found, not a stale hit.
    EXPECT_TRUE(runtime_->Kill("callee").ok());
    EXPECT_EQ(runtime_->CoCall("callee").status().code(), absl::StatusCode::kNotFound);
    done_.Notify();
  });
  ASSERT_TRUE(RunAndWait());
  EXPECT_EQ(LogLine(), "\"old\" \"new\"");
}

// The same when the target ended by itself: its record is freed and a new
// task of the same name may even reuse its memory.
TEST_P(SplConformance, CoCallAfterTheTargetEndedAndItsNameWasReusedReachesTheNewTask) {
  Spawn("callee", [&] {
    EXPECT_TRUE(runtime_->Pause().ok());
    EXPECT_TRUE(runtime_->CoReturn(Value(1)).ok());
    Log("first ends");
  });
  Spawn("caller", [&] {
    absl::StatusOr<Value> got = runtime_->CoCall("callee");
    ASSERT_TRUE(got.ok()) << got.status();
    Log(got->DebugString());
    EXPECT_TRUE(runtime_->Continue("callee").ok());  // it goes on and ends
    EXPECT_TRUE(runtime_->Yield().ok());
    EXPECT_FALSE(runtime_->Exists("callee"));
    EXPECT_EQ(runtime_->CoCall("callee").status().code(), absl::StatusCode::kNotFound);
    Spawn("callee", [&] {
      EXPECT_TRUE(runtime_->Pause().ok());
      EXPECT_TRUE(runtime_->CoReturn(Value(2)).ok());
    });
    got = runtime_->CoCall("callee");
    ASSERT_TRUE(got.ok()) << got.status();
    Log(got->DebugString());
    done_.Notify();
  });
  ASSERT_TRUE(RunAndWait());
  EXPECT_EQ(LogLine(), "1 first ends 2");
}

// A co_call wakes the callee behind the tasks that were ready first, as a
// continue does: the direct switch to the callee is only a shortcut.
TEST_P(SplConformance, CoCallKeepsTheOrderOfReadyTasks) {
  Spawn("bystander", [&] {
    EXPECT_TRUE(runtime_->Pause().ok());
    Log("bystander");
  });
  Spawn("callee", [&] {
    EXPECT_TRUE(runtime_->Pause().ok());
    Log("callee");
    EXPECT_TRUE(runtime_->CoReturn(Value(1)).ok());
  });
  Spawn("caller", [&] {
    EXPECT_TRUE(runtime_->Continue("bystander").ok());  // ready before the callee
    absl::StatusOr<Value> got = runtime_->CoCall("callee");
    ASSERT_TRUE(got.ok()) << got.status();
    Log(got->DebugString());
    done_.Notify();
  });
  ASSERT_TRUE(RunAndWait());
  EXPECT_EQ(LogLine(), "bystander callee 1");
}

// Co-call round trips (direct switches that hand the runtime's lock from
// task to task) while another thread keeps continuing a public task.
TEST_P(SplConformance, CoCallRoundTripsWhileAnotherThreadContinuesAPublicTask) {
  constexpr int kRoundTrips = 2000;
  // On the heap: "idle" may be continued once more after the test body has
  // returned, and runs (or is killed) only then; a local it wrote to would
  // be a dead stack frame by that time.
  struct Shared {
    std::atomic<bool> stop{false};
    std::atomic<int> idle_wakeups{0};
    std::atomic<bool> idle_public{false};
  };
  auto shared = std::make_shared<Shared>();
  Spawn("idle", [this, shared] {
    EXPECT_TRUE(runtime_->SetPublic().ok());
    shared->idle_public.store(true);
    while (!shared->stop.load()) {
      EXPECT_TRUE(runtime_->Pause().ok());
      shared->idle_wakeups.fetch_add(1);
    }
  });
  Spawn("callee", [this] {
    EXPECT_TRUE(runtime_->Pause().ok());
    int64_t n = 0;
    while (runtime_->CoReturn(Value(++n)).ok()) {
    }
  });
  Spawn("caller", [this, shared] {
    for (int64_t i = 1; i <= kRoundTrips; ++i) {
      absl::StatusOr<Value> got = runtime_->CoCall("callee");
      ASSERT_TRUE(got.ok()) << got.status();
      ASSERT_EQ(got->as_int(), i);
    }
    shared->stop.store(true);
    done_.Notify();
  });
  Go();
  std::thread outside([this, shared] {
    while (!shared->idle_public.load() && !shared->stop.load()) std::this_thread::yield();
    while (!shared->stop.load()) {
      absl::Status continued = runtime_->Continue("idle");
      EXPECT_TRUE(continued.ok() || continued.code() == absl::StatusCode::kNotFound)
          << continued;
    }
  });
  EXPECT_TRUE(done_.WaitForNotification());
  outside.join();
}

// "An eval, implemented as own task ... allows you to specify a different
// function context in which the code should be executed."
TEST_P(SplConformance, EvalRunsCodeAsItsOwnTaskAndReturnsItsValue) {
  auto context = std::make_shared<Context>();
  context->variables["n"] = Value(20);
  Spawn("evaluator", [&] {
    absl::StatusOr<Value> got = runtime_->Eval(
        [&](Context& ctx) {
          Log(absl::StrCat("eval task named '", *runtime_->CurrentName(), "'"));
          return Value(ctx.variables["n"].as_int() + 1);
        },
        context);
    ASSERT_TRUE(got.ok()) << got.status();
    Log(got->DebugString());
    done_.Notify();
  });
  ASSERT_TRUE(RunAndWait());
  EXPECT_EQ(LogLine(), "eval task named '' 21");
  // And from outside the runtime, blocking the calling thread.
  absl::StatusOr<Value> outside = runtime_->Eval([](Context&) { return Value("out"); });
  ASSERT_TRUE(outside.ok()) << outside.status();
  EXPECT_EQ(outside->as_string(), "out");
  EXPECT_EQ(runtime_->Eval(spl::Code()).status().code(), absl::StatusCode::kInvalidArgument);
}

// CoCallUntil: CoCall with a deadline.
TEST_P(SplConformance, CoCallUntilReturnsTheValueWhenTheCalleeReturnsInTime) {
  Spawn("callee", [&] {
    EXPECT_TRUE(runtime_->Pause().ok());
    for (int64_t n = 1; runtime_->CoReturn(Value(n * 10)).ok(); ++n) {
    }
  });
  Spawn("caller", [&] {
    std::vector<int64_t> got;
    for (absl::Time deadline : {absl::Now() + absl::Hours(1), absl::InfiniteFuture()}) {
      absl::StatusOr<Value> value = runtime_->CoCallUntil("callee", deadline);
      EXPECT_TRUE(value.ok()) << value.status();
      got.push_back(value.ok() ? value->as_int() : -1);
    }
    EXPECT_EQ(got, (std::vector<int64_t>{10, 20}));
    done_.Notify();
  });
  EXPECT_TRUE(RunAndWait());
}

// The callee pauses past the deadline: the caller gives up, never early;
// the callee's later co_return finds no caller (refused, then to its
// default task), and never resumes the caller.
TEST_P(SplConformance, CoCallUntilGivesUpAtItsDeadlineAndALateCoReturnFindsNoCaller) {
  Spawn("callee", [&] {
    EXPECT_TRUE(runtime_->Pause().ok());
    Log("callee entered");
    EXPECT_TRUE(runtime_->Pause().ok());  // past the caller's deadline
    Log("callee continued");
    absl::Status refused = runtime_->CoReturn(Value(1));
    EXPECT_EQ(refused.code(), absl::StatusCode::kFailedPrecondition) << refused;
    Log("callee's return refused");
    EXPECT_TRUE(runtime_->SetCoReturnDefault("callee", "home").ok());
    EXPECT_TRUE(runtime_->CoReturn(Value(2)).ok());
  });
  Spawn("home", [&] {
    EXPECT_TRUE(runtime_->Pause().ok());
    Log("home continued");
    EXPECT_TRUE(runtime_->Continue("caller").ok());
  });
  Spawn("caller", [&] {
    const absl::Time deadline = absl::Now() + absl::Milliseconds(3);
    absl::StatusOr<Value> got = runtime_->CoCallUntil("callee", deadline);
    EXPECT_EQ(got.status().code(), absl::StatusCode::kDeadlineExceeded) << got.status();
    EXPECT_GE(absl::Now(), deadline) << "gave up early";
    Log("caller timed out");
    EXPECT_TRUE(runtime_->Continue("callee").ok());
    EXPECT_TRUE(runtime_->Pause().ok());  // only "home" continues it
    Log("caller continued by home");
    done_.Notify();
  });
  ASSERT_TRUE(RunAndWait());
  EXPECT_EQ(LogLine(),
            "callee entered caller timed out callee continued callee's return refused "
            "home continued caller continued by home");
}

// A deadline that has passed: the name checks first, then an immediate
// kDeadlineExceeded that leaves the callee paused and uncalled.
TEST_P(SplConformance, CoCallUntilAPassedDeadlineNeitherCallsNorSuspends) {
  Spawn("callee", [&] {
    EXPECT_TRUE(runtime_->Pause().ok());
    Log("callee entered");
    EXPECT_TRUE(runtime_->CoReturn(Value(3)).ok());
  });
  Spawn("caller", [&] {
    EXPECT_EQ(runtime_->CoCallUntil("ghost", absl::InfinitePast()).status().code(),
              absl::StatusCode::kNotFound);
    EXPECT_EQ(runtime_->CoCallUntil("caller", absl::InfinitePast()).status().code(),
              absl::StatusCode::kInvalidArgument);
    absl::StatusOr<Value> got = runtime_->CoCallUntil("callee", absl::Now() - absl::Seconds(1));
    EXPECT_EQ(got.status().code(), absl::StatusCode::kDeadlineExceeded) << got.status();
    EXPECT_TRUE(runtime_->Yield().ok());
    Log("caller after yield");
    const absl::StatusOr<Value> called = runtime_->CoCall("callee");
    EXPECT_TRUE(called.ok() && *called == Value(3)) << called.status();
    done_.Notify();
  });
  ASSERT_TRUE(RunAndWait());
  EXPECT_EQ(LogLine(), "caller after yield callee entered");
}

TEST_P(SplConformance, CoCallUntilOutsideATaskIsRefused) {
  Spawn("target", [&] { EXPECT_TRUE(runtime_->Pause().ok()); });
  Go();
  // From outside the runtime: the public rule, as CoCall.
  EXPECT_EQ(runtime_->CoCallUntil("target", absl::Now() + absl::Hours(1)).status().code(),
            absl::StatusCode::kPermissionDenied);
  // On the runtime's thread but in a unit that is not one of its tasks.
  absl::Status in_unit;
  Notification ran;
  ASSERT_TRUE(scheduler_->Schedule([&] {
    in_unit = runtime_->CoCallUntil("target", absl::Now() + absl::Hours(1)).status();
    ran.Notify();
  }).ok());
  ASSERT_TRUE(ran.WaitForNotification());
  EXPECT_EQ(in_unit.code(), absl::StatusCode::kFailedPrecondition) << in_unit;
  EXPECT_TRUE(runtime_->Exists("target"));
}

// Deadlines that race the callee's co_return: each round ends with the
// next value or kDeadlineExceeded, and no value arrives twice or late.
TEST_P(SplConformance, CoCallUntilRacingItsDeadlineDeliversEachValueOnce) {
  constexpr int kRounds = 300;
  Spawn("callee", [&] {
    EXPECT_TRUE(runtime_->Pause().ok());
    int64_t n = 0;
    while (true) {
      absl::Status returned = runtime_->CoReturn(Value(++n));
      if (!returned.ok()) {
        // The caller gave up first: wait for its next call.
        EXPECT_EQ(returned.code(), absl::StatusCode::kFailedPrecondition) << returned;
        EXPECT_TRUE(runtime_->Pause().ok());
      }
    }
  });
  Spawn("caller", [&] {
    int64_t last = 0;
    int timed_out = 0;
    for (int round = 0; round < kRounds; ++round) {
      const absl::Time deadline = absl::Now() + absl::Nanoseconds((round * 7919) % 60'000);
      absl::StatusOr<Value> got = runtime_->CoCallUntil("callee", deadline);
      if (got.ok()) {
        EXPECT_GT(got->as_int(), last) << "round " << round << ": a value came twice";
        last = got->as_int();
      } else {
        EXPECT_EQ(got.status().code(), absl::StatusCode::kDeadlineExceeded) << got.status();
        EXPECT_GE(absl::Now(), deadline) << "round " << round << ": gave up early";
        ++timed_out;
      }
    }
    std::printf("[ spl      ] %d of %d co_calls timed out\n", timed_out, kRounds);
    done_.Notify();
  });
  ASSERT_TRUE(RunAndWait());
}

// EvalUntil: Eval with a deadline; the evaluated task is killed when it
// comes first.
TEST_P(SplConformance, EvalUntilReturnsTheValueOrKillsTheCodeAtItsDeadline) {
  auto resumed = std::make_shared<std::atomic<bool>>(false);
  Spawn("evaluator", [&, resumed] {
    absl::StatusOr<Value> got =
        runtime_->EvalUntil([](Context&) { return Value(5); }, absl::Now() + absl::Hours(1));
    ASSERT_TRUE(got.ok()) << got.status();
    Log(got->DebugString());
    const absl::Time deadline = absl::Now() + absl::Milliseconds(3);
    got = runtime_->EvalUntil(
        [this, resumed](Context&) {
          Log("eval pauses");
          (void)runtime_->Pause();  // nobody can continue an unnamed task
          resumed->store(true);
          return Value(6);
        },
        deadline);
    EXPECT_EQ(got.status().code(), absl::StatusCode::kDeadlineExceeded) << got.status();
    EXPECT_GE(absl::Now(), deadline) << "gave up early";
    EXPECT_TRUE(runtime_->Yield().ok());  // the killed task unwinds
    EXPECT_EQ(runtime_->task_count(), 1u) << "the evaluated task outlived its deadline";
    Log("evaluator timed out");
    EXPECT_EQ(runtime_->EvalUntil([](Context&) { return Value(); }, absl::InfinitePast())
                  .status()
                  .code(),
              absl::StatusCode::kDeadlineExceeded);
    EXPECT_EQ(runtime_->task_count(), 1u) << "a passed deadline started a task";
    done_.Notify();
  });
  ASSERT_TRUE(RunAndWait());
  EXPECT_EQ(LogLine(), "5 eval pauses evaluator timed out");
  EXPECT_FALSE(resumed->load());
  // From outside the runtime, blocking this thread.
  absl::StatusOr<Value> outside =
      runtime_->EvalUntil([](Context&) { return Value("out"); }, absl::Now() + absl::Hours(1));
  ASSERT_TRUE(outside.ok()) << outside.status();
  EXPECT_EQ(outside->as_string(), "out");
  const absl::Time deadline = absl::Now() + absl::Milliseconds(3);
  outside = runtime_->EvalUntil(
      [this](Context&) {
        (void)runtime_->Pause();
        return Value();
      },
      deadline);
  EXPECT_EQ(outside.status().code(), absl::StatusCode::kDeadlineExceeded) << outside.status();
  EXPECT_GE(absl::Now(), deadline);
  EXPECT_EQ(runtime_->EvalUntil(spl::Code(), absl::InfinitePast()).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_P(SplConformance, UnknownNamesAreNotFound) {
  Spawn("asker", [&] {
    EXPECT_EQ(runtime_->Continue("ghost").code(), absl::StatusCode::kNotFound);
    EXPECT_EQ(runtime_->Pause("ghost").code(), absl::StatusCode::kNotFound);
    EXPECT_EQ(runtime_->Kill("ghost").code(), absl::StatusCode::kNotFound);
    EXPECT_EQ(runtime_->LateKill("ghost").code(), absl::StatusCode::kNotFound);
    EXPECT_EQ(runtime_->SetSystem("ghost").code(), absl::StatusCode::kNotFound);
    EXPECT_EQ(runtime_->SetPublic("ghost").code(), absl::StatusCode::kNotFound);
    EXPECT_EQ(runtime_->CoCall("ghost").status().code(), absl::StatusCode::kNotFound);
    EXPECT_EQ(runtime_->SetCoReturnDefault("ghost", "x").code(), absl::StatusCode::kNotFound);
    done_.Notify();
  });
  ASSERT_TRUE(RunAndWait());
}

INSTANTIATE_TEST_SUITE_P(Conformance, SplConformance, ::testing::ValuesIn(WorkerCounts()),
                         WorkerCountName);

}  // namespace
}  // namespace taskrt::conformance
