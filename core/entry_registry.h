#ifndef TASKRT_CORE_ENTRY_REGISTRY_H_
#define TASKRT_CORE_ENTRY_REGISTRY_H_

// Task entries known by name.
//
// A closure cannot leave its process, so a task whose entry runs in another
// process (a worker; core/remote_entry.h) names its entry instead. Every
// process fills the same registry at start-up: the owner, to create tasks
// by name (Task::CreateNamed, core/task.h), and each worker, to find the
// entry a task names. A name means the same entry in every process only if
// every binary registers it so; the registry cannot check that.
//
// Names
//   1 to 128 bytes of [A-Za-z0-9_.:-]: they travel in messages and subjects
//   of other systems, and are written in logs and error messages as they are.
//
// Lifetime and thread safety
//   One registry per process, for the life of the process: nothing is ever
//   unregistered, so a name found once stays valid. Every function may be
//   called from any thread at any time.

#include <functional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace taskrt {

class TaskContext;  // core/task.h

// A task entry that can be named: copyable, so every task created by that name gets its own copy.
using RegisteredEntry = std::function<int(TaskContext&)>;

// Registers `entry` under `name` for Task::CreateNamed in this process. A
// process that runs entries for owners elsewhere (a worker) registers the
// same names as the owners. kInvalidArgument: empty name, a name over 128
// bytes or with a byte outside [A-Za-z0-9_.:-], an empty entry.
// kAlreadyExists: the name is taken (the message names it).
absl::Status RegisterEntry(absl::string_view name, RegisteredEntry entry);

// A copy of the entry registered under `name`. kNotFound, naming the entry,
// when nothing is registered under `name`.
absl::StatusOr<RegisteredEntry> FindEntry(absl::string_view name);

// Sorted, for error messages and a worker's start-up line.
std::vector<std::string> RegisteredEntryNames();

}  // namespace taskrt

#endif  // TASKRT_CORE_ENTRY_REGISTRY_H_
