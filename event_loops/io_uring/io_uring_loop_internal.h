#ifndef TASKRT_EVENT_LOOPS_IO_URING_IO_URING_LOOP_INTERNAL_H_
#define TASKRT_EVENT_LOOPS_IO_URING_IO_URING_LOOP_INTERNAL_H_

// Internals of the io_uring event loop, for its own unit tests only.

#include <cstdint>
#include <optional>

#include "core/event_loop.h"

namespace taskrt::io_uring_loop_internal {

struct LoopStats {
  uint64_t submit_calls = 0;  // io_uring_enter() calls that submitted
  uint64_t polls_armed = 0;   // multishot polls armed (Watch, and re-arms)
  uint64_t polls_ended = 0;   // multishot polls the kernel ended, re-armed
  uint64_t wake_ups = 0;      // NOPs submitted by Post/Stop
};

// The counters of an io_uring loop; nullopt for any other loop.
std::optional<LoopStats> GetLoopStats(const EventLoop& loop);

}  // namespace taskrt::io_uring_loop_internal

#endif  // TASKRT_EVENT_LOOPS_IO_URING_IO_URING_LOOP_INTERNAL_H_
