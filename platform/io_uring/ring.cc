#include "platform/io_uring/ring.h"

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "core/errors.h"

#if defined(TASKRT_TSAN)
extern "C" void __tsan_acquire(void* addr);
extern "C" void __tsan_release(void* addr);
#endif

namespace taskrt::io_uring_platform {
namespace {

#if defined(TASKRT_TSAN)
// Calls `annotate` with each of the ring's mappings.
void ForEachMapping(io_uring* ring, void (*annotate)(void*)) {
  annotate(ring->sq.ring_ptr);
  annotate(ring->cq.ring_ptr);
  annotate(ring->sq.sqes);
}
#endif

int QueueInit(io_uring* ring, const RingOptions& options, unsigned flags, unsigned* features) {
  io_uring_params params{};
  params.flags = flags | options.flags;
  if (options.cq_entries != 0) {
    params.flags |= IORING_SETUP_CQSIZE;
    params.cq_entries = options.cq_entries;
  }
  const int rc = io_uring_queue_init_params(options.sq_entries, ring, &params);
  if (rc == 0) *features = params.features;
  return rc;
}

}  // namespace

std::string ErrnoText(int error_number) {
  char buffer[128];
  // GNU strerror_r returns the message, which may or may not be `buffer`.
  return strerror_r(error_number, buffer, sizeof buffer);
}

bool IsRefusal(int error_number) {
  return error_number == ENOSYS || error_number == EPERM || error_number == EACCES ||
         error_number == EINVAL || error_number == EOPNOTSUPP;
}

absl::Status RefusedOrError(absl::string_view user, absl::string_view operation,
                            int error_number) {
  if (IsRefusal(error_number)) {
    return absl::UnavailableError(
        absl::StrCat("io_uring: ", operation, " refused: ", ErrnoText(error_number)));
  }
  return ErrnoError(absl::StrCat(user, ": ", operation), error_number);
}

absl::StatusOr<RingSetup> SetUpRing(io_uring* ring, const RingOptions& options) {
  RingSetup setup;
  int rc;
  if (options.cooperative_task_running) {
    rc = QueueInit(ring, options, IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG,
                   &setup.features);
    setup.cooperative_task_running = rc == 0;
    // EINVAL: a kernel without the flags.
    if (rc == -EINVAL) rc = QueueInit(ring, options, 0, &setup.features);
  } else {
    rc = QueueInit(ring, options, 0, &setup.features);
  }
  if (rc < 0) return RefusedOrError(options.user, "io_uring_setup", -rc);
#if defined(TASKRT_TSAN)
  ForEachMapping(ring, __tsan_acquire);  // see "ThreadSanitizer" in the header
#endif
  return setup;
}

void ExitRing(io_uring* ring) {
#if defined(TASKRT_TSAN)
  ForEachMapping(ring, __tsan_release);
#endif
  io_uring_queue_exit(ring);
}

int SubmitRetrying(io_uring* ring) {
  int rc;
  do {
    rc = io_uring_submit(ring);
  } while (rc == -EINTR);
  return rc;
}

int WaitRetrying(io_uring* ring, io_uring_cqe** cqe) {
  int rc;
  do {
    rc = io_uring_wait_cqe(ring, cqe);
  } while (rc == -EINTR);
  return rc;
}

absl::Status CheckFeatures(unsigned features, absl::Span<const Feature> needed) {
  for (const Feature& feature : needed) {
    if (!(features & feature.flag)) {
      return absl::UnavailableError(
          absl::StrCat("io_uring: the kernel lacks ", feature.name, " (", feature.since, ")"));
    }
  }
  return absl::OkStatus();
}

absl::Status CheckOpcodes(const io_uring_probe& probe, absl::Span<const Opcode> needed) {
  for (const Opcode& opcode : needed) {
    if (!io_uring_opcode_supported(&probe, opcode.opcode)) {
      return absl::UnavailableError(
          absl::StrCat("io_uring: the kernel does not support ", opcode.name));
    }
  }
  return absl::OkStatus();
}

absl::Status ProbeOpcodes(io_uring* ring, absl::Span<const Opcode> needed) {
  io_uring_probe* probe = io_uring_get_probe_ring(ring);
  if (probe == nullptr) {
    return absl::UnavailableError("io_uring: the kernel refused IORING_REGISTER_PROBE (Linux 5.6)");
  }
  absl::Status status = CheckOpcodes(*probe, needed);
  io_uring_free_probe(probe);
  return status;
}

}  // namespace taskrt::io_uring_platform
