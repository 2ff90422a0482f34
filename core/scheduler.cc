#include "core/scheduler.h"

#include "absl/strings/str_cat.h"

namespace taskrt {

absl::StatusOr<std::unique_ptr<RemoteOwnerEnd>> Scheduler::StartNamedEntry(
    absl::string_view entry_name, const ChannelOptions&) {
  return absl::UnimplementedError(absl::StrCat(
      "Scheduler::StartNamedEntry(\"", entry_name, "\"): ", name(),
      " runs its units in this process; run the task with Task::Run instead"));
}

}  // namespace taskrt
