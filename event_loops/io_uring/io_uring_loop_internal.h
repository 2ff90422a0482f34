#ifndef TASKRT_EVENT_LOOPS_IO_URING_IO_URING_LOOP_INTERNAL_H_
#define TASKRT_EVENT_LOOPS_IO_URING_IO_URING_LOOP_INTERNAL_H_

// Internals of the io_uring event loop, for its own unit tests and for
// reports that must say how the ring was set up.

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "core/event_loop.h"

namespace taskrt::io_uring_loop_internal {

struct LoopStats {
  uint64_t enter_calls = 0;   // io_uring_enter() calls of the loop thread
  uint64_t polls_armed = 0;   // multishot polls armed (Watch, and re-arms)
  uint64_t polls_ended = 0;   // multishot polls the kernel ended, re-armed
  uint64_t handed_over = 0;   // Watch/Unwatch requests queued by other threads
  uint64_t wake_ups = 0;      // eventfd writes that woke a sleeping loop
  // Multishot accepts and receives (socket I/O as completions) the kernel
  // ended and the loop armed again.
  uint64_t io_rearmed = 0;
};

// The counters of an io_uring loop; nullopt for any other loop.
std::optional<LoopStats> GetLoopStats(const EventLoop& loop);

// How the loop's ring was set up.
struct LoopSetup {
  // The ring has IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN |
  // IORING_SETUP_TASKRUN_FLAG. False: the kernel refused them and the ring
  // has the plain flags; `fallback` says why.
  bool single_issuer = false;
  std::string fallback;
  // io_uring_register_ring_fd succeeded on the loop thread; false until the
  // loop's first iteration.
  bool ring_fd_registered = false;
  // Socket I/O (AcceptEach, ReceiveEach, SendAll) runs as completions on
  // the ring. False: on readiness, as the epoll loop does; `io_fallback`
  // says why (the kernel lacks an opcode, a feature or the provided-buffer
  // ring).
  bool completion_io = false;
  std::string io_fallback;
};

// The setup of an io_uring loop; nullopt for any other loop.
std::optional<LoopSetup> GetLoopSetup(const EventLoop& loop);

// NewIoUringLoop(), but the first setup attempt also asks for
// `extra_setup_flags` (an IORING_SETUP_* bit the kernel does not know makes
// it refuse with EINVAL, as a kernel without SINGLE_ISSUER does), so that
// tests can take the fallback on any kernel; and with `readiness_io` the
// socket I/O takes its readiness fallback.
absl::StatusOr<std::unique_ptr<EventLoop>> NewLoopForTest(unsigned extra_setup_flags,
                                                          bool readiness_io = false);

}  // namespace taskrt::io_uring_loop_internal

#endif  // TASKRT_EVENT_LOOPS_IO_URING_IO_URING_LOOP_INTERNAL_H_
