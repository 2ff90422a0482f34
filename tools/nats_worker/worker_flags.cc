#include "tools/nats_worker/worker_flags.h"

#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace taskrt::nats_worker {

absl::StatusOr<WorkerFlags> ParseWorkerFlags(absl::Span<const char* const> args,
                                             const char* env_url, int cpus,
                                             absl::string_view default_scheduler) {
  WorkerFlags flags;
  flags.url = env_url != nullptr ? env_url : "";
  flags.slots = cpus > 0 ? cpus : 1;
  flags.scheduler = std::string(default_scheduler);
  for (const char* raw : args) {
    const absl::string_view arg = raw;
    if (arg == "--help" || arg == "-h") {
      flags.help = true;
      return flags;
    }
    std::pair<absl::string_view, absl::string_view> kv = absl::StrSplit(arg, absl::MaxSplits('=', 1));
    const absl::string_view name = kv.first;
    const absl::string_view value = kv.second;
    bool ok = absl::StrContains(arg, '=') && !value.empty();
    if (name == "--url") {
      flags.url = std::string(value);
    } else if (name == "--scheduler") {
      flags.scheduler = std::string(value);
    } else if (name == "--slots") {
      ok = ok && absl::SimpleAtoi(value, &flags.slots) && flags.slots >= 1;
    } else if (name == "--ack_wait_ms") {
      ok = ok && absl::SimpleAtoi(value, &flags.ack_wait_ms) && flags.ack_wait_ms >= 1;
    } else {
      return absl::InvalidArgumentError(absl::StrCat("unknown argument \"", arg, "\" (see --help)"));
    }
    if (!ok) return absl::InvalidArgumentError(absl::StrCat("bad value in \"", arg, "\" (see --help)"));
  }
  if (flags.url.empty()) {
    return absl::InvalidArgumentError(
        "no broker: give --url=nats://HOST:PORT or set TASKRT_NATS_URL (a worker serves the "
        "owners of a broker they share, so it needs that broker's address)");
  }
  return flags;
}

}  // namespace taskrt::nats_worker
