#ifndef TASKRT_CORE_TASK_GROUP_H_
#define TASKRT_CORE_TASK_GROUP_H_

// TaskGroup: fork-join on any Scheduler. Spawn children, then Wait() for all
// of them.
//
// Waiting
//   Inside one of the scheduler's own workers, Wait() does not block the
//   thread while there is queued work: it runs other units through
//   Scheduler::RunPendingWork() (helping), so a recursive fork-join on a
//   single worker finishes instead of deadlocking. When nothing is left to
//   help with, it waits for the children that other workers are running.
//   Outside the scheduler, Wait() blocks the calling thread.
//
// Thread safety
//   Spawn() may be called from the group's owner and from its children.
//   Wait() by one thread at a time. The destructor waits for children that
//   are still pending, so they never outlive what they captured.
//
// Errors
//   Spawn returns the scheduler's error (kFailedPrecondition after
//   shutdown); the child is then not run and not counted.

#include <atomic>
#include <cstdint>
#include <utility>

#include "absl/status/status.h"
#include "core/scheduler.h"

namespace taskrt {

class TaskGroup {
 public:
  explicit TaskGroup(Scheduler& scheduler) : scheduler_(scheduler) {}
  ~TaskGroup() { Wait(); }
  TaskGroup(const TaskGroup&) = delete;
  TaskGroup& operator=(const TaskGroup&) = delete;

  template <typename F>
  absl::Status Spawn(F&& child) {
    auto* job = new ChildJob<std::decay_t<F>>(this, std::forward<F>(child));
    pending_.fetch_add(1, std::memory_order_relaxed);
    absl::Status status = scheduler_.ScheduleJob(job);
    if (!status.ok()) {
      delete job;
      ChildDone();
    }
    return status;
  }

  // Returns once every spawned child has finished.
  void Wait();

  Scheduler& scheduler() const { return scheduler_; }

 private:
  template <typename F>
  class ChildJob final : public Job {
   public:
    ChildJob(TaskGroup* group, F&& child) : group_(group), child_(std::move(child)) {}
    ChildJob(TaskGroup* group, const F& child) : group_(group), child_(child) {}
    void RunAndDelete() override {
      TaskGroup* const group = group_;
      child_();
      delete this;
      group->ChildDone();  // last: the group may be gone right after
    }

   private:
    TaskGroup* const group_;
    F child_;
  };

  void ChildDone() {
    if (pending_.fetch_sub(1, std::memory_order_acq_rel) == 1) pending_.notify_all();
  }

  Scheduler& scheduler_;
  std::atomic<int64_t> pending_{0};
};

}  // namespace taskrt

#endif  // TASKRT_CORE_TASK_GROUP_H_
