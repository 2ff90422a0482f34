#ifndef TASKRT_CORE_REMOTE_ENTRY_H_
#define TASKRT_CORE_REMOTE_ENTRY_H_

// The owner's side of a task whose entry runs in another process
// (Scheduler::StartNamedEntry, core/scheduler.h).
//
// A closure cannot leave its process, so such a task names a registered
// entry (core/entry_registry.h); the scheduler starts that entry wherever it
// runs its units and hands the owner a RemoteOwnerEnd. The end is an
// ordinary channel end for the owner (core/channel.h, every rule of it),
// plus the one thing the owner cannot learn from the channel alone: what
// the entry returned, and when everything it wrote has arrived.
//
// Thread safety: as any ChannelEnd, one thread at a time (the owner's);
// EntryResult() too.

#include <optional>

#include "core/channel.h"

namespace taskrt {

// The owner's end of the channel of a task whose entry runs in another process.
class RemoteOwnerEnd : public ChannelEnd {
 public:
  // The entry's return value, once the process running it said the entry
  // returned and every message it wrote before returning has reached this
  // end; nullopt before. Reached, not read: messages the owner has not read
  // stay readable after. The end's receive readiness fires when this turns
  // to a value (the entry's close arrives behind its messages), so an owner
  // that watches it learns of the end without polling.
  virtual std::optional<int> EntryResult() = 0;

  // The owner asked the task to stop (Task::RequestCancel). A backend that
  // can tells the process running the entry, whose
  // TaskContext::cancel_requested() then turns true; the default does
  // nothing, and the entry learns only of the owner's Close() (the task
  // destroyed), which every backend passes on.
  virtual void RequestCancel() {}
};

}  // namespace taskrt

#endif  // TASKRT_CORE_REMOTE_ENTRY_H_
