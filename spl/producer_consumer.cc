// SPL's co-routine calls: a consumer co-calls a producer for each item; the
// producer hands items back with co_return. Run:
//   tools/bazel run //spl:producer_consumer

#include <cstdio>
#include <memory>

#include "backends/registry.h"
#include "core/execution_context.h"
#include "spl/spl_task.h"

using taskrt::spl::Context;
using taskrt::spl::Runtime;
using taskrt::spl::Value;

int main() {
  auto scheduler = taskrt::NewSchedulerWith({.single_thread_stackful_tasks = true});
  if (!scheduler.ok()) return 1;
  auto runtime = Runtime::Create(**scheduler);
  if (!runtime.ok()) return 1;
  Runtime& spl = **runtime;

  // task_create("producer", ...): yields the squares 1, 4, 9, then null.
  (void)spl.CreateTask("producer", [&](Context&) -> Value {
    (void)spl.Pause();  // wait for the first task_co_call
    for (int i = 1; i <= 3; ++i) (void)spl.CoReturn(Value(i * i));
    (void)spl.CoReturn(Value());  // end of items
    return Value();
  });
  // The consumer co-calls the producer until it gets null.
  auto done = std::make_shared<taskrt::Parker>();
  (void)spl.CreateTask("consumer", [&, done](Context&) -> Value {
    while (true) {
      absl::StatusOr<Value> item = spl.CoCall("producer");
      if (!item.ok()) {
        std::printf("co_call failed: %s\n", item.status().ToString().c_str());
        break;
      }
      if (item->is_null()) break;
      std::printf("consumer got %s\n", item->DebugString().c_str());
    }
    (void)spl.Kill("producer");
    done->Unpark();
    return Value();
  });
  done->Park();
  return (*scheduler)->Shutdown().ok() ? 0 : 1;
}
