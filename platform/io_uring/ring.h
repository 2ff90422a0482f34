#ifndef TASKRT_PLATFORM_IO_URING_RING_H_
#define TASKRT_PLATFORM_IO_URING_RING_H_

// The Linux io_uring facility as backends that drive io_uring use it:
// setting a ring up and taking it down, submitting and waiting, telling the
// kernel's refusal of io_uring from other failures, and checking the
// features and opcodes a backend needs. Each backend owns its rings and
// decides what it needs; this package keeps what they would otherwise each
// write.
//
// Thread safety
//   Nothing here keeps state. A ring is used as liburing allows: submitting
//   and reaping are each one thread at a time (the caller's locking).
//
// Errors
//   A refusal is an errno by which the kernel or its sandbox says it will
//   not do io_uring (IsRefusal). It becomes kUnavailable,
//   "io_uring: <operation> refused: <errno text>", so that a backend's
//   factory can report "not available here" and a suite can skip. Any other
//   errno becomes the Status of core/errors.h, "<user>: <operation>: <errno
//   text>". A missing feature or opcode is kUnavailable, "io_uring: ...",
//   naming it.
//
// ThreadSanitizer
//   liburing maps and unmaps a ring with raw system calls, which
//   ThreadSanitizer does not see: when a closed ring's addresses come back
//   for a new ring, it pairs the new ring's accesses with the old ring's,
//   from other threads, and reports races that cannot happen. SetUpRing()
//   and ExitRing() tell it the order the kernel guarantees (a release
//   before the unmapping, an acquire after the mapping, keyed by the mapped
//   addresses), so every ring must be set up and exited through them. They
//   cost nothing without TSAN.

#include <liburing.h>

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"

namespace taskrt::io_uring_platform {

// The text of an errno value ("Operation not permitted"), thread-safely.
std::string ErrnoText(int error_number);

// Whether `error_number`, from an io_uring system call, means "this kernel
// or its sandbox will not do io_uring": ENOSYS (no io_uring), EPERM and
// EACCES (seccomp, kernel.io_uring_disabled), EINVAL (a kernel too old for
// the flags or sizes asked for), EOPNOTSUPP.
bool IsRefusal(int error_number);

// kUnavailable "io_uring: <operation> refused: <text>" for a refusal; else
// ErrnoError("<user>: <operation>", error_number). `user` names the caller
// (the backend's label).
absl::Status RefusedOrError(absl::string_view user, absl::string_view operation,
                            int error_number);

struct RingOptions {
  // Names the ring's user in errors that are not refusals.
  absl::string_view user;
  unsigned sq_entries = 0;
  // With 0, the kernel's default (twice sq_entries); else IORING_SETUP_CQSIZE.
  unsigned cq_entries = 0;
  // Asks for IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG, and
  // falls back to a plain ring where the kernel lacks them (before 5.19).
  // With them, completion work that the kernel queues for a thread running
  // in user space does not interrupt it (an inter-processor interrupt is
  // costly on virtual machines): the kernel raises IORING_SQ_TASKRUN in the
  // shared ring instead, and io_uring_peek_cqe() enters the kernel to run
  // the work when it sees the flag. A sleeping thread is still woken. Suits
  // a ring whose requests are submitted by the thread that reaps it: the
  // work runs on the submitting thread, and a busy one runs it only when it
  // next enters the kernel.
  bool cooperative_task_running = false;
  // Further IORING_SETUP_* flags, asked for as given: a kernel that lacks
  // one refuses the setup (kUnavailable, EINVAL), and the caller decides
  // whether to try again without it.
  unsigned flags = 0;
};

// What the kernel gave a ring.
struct RingSetup {
  unsigned features = 0;                   // IORING_FEAT_* it reported
  bool cooperative_task_running = false;   // the ring got what options asked
};

// Sets up `ring` (io_uring_setup). On an error `ring` holds nothing to
// release (no ExitRing()); the error is RefusedOrError(options.user,
// "io_uring_setup", errno).
absl::StatusOr<RingSetup> SetUpRing(io_uring* ring, const RingOptions& options);

// Takes down a ring that SetUpRing() set up.
void ExitRing(io_uring* ring);

// io_uring_submit() and io_uring_wait_cqe(), retried while interrupted by a
// signal (EINTR). Return what liburing returns: >= 0, or -errno.
int SubmitRetrying(io_uring* ring);
int WaitRetrying(io_uring* ring, io_uring_cqe** cqe);

// A kernel feature a backend needs: IORING_FEAT_NODROP, "IORING_FEAT_NODROP",
// "Linux 5.5".
struct Feature {
  unsigned flag;
  const char* name;
  const char* since;
};

// kUnavailable "io_uring: the kernel lacks <name> (<since>)" naming the first
// of `needed` that `features` (RingSetup::features) lacks; OK when none.
absl::Status CheckFeatures(unsigned features, absl::Span<const Feature> needed);

// An opcode a backend needs: IORING_OP_SEND, "IORING_OP_SEND".
struct Opcode {
  int opcode;
  const char* name;
};

// kUnavailable "io_uring: the kernel does not support <name>" naming the
// first of `needed` that `probe` lacks; OK when it has them all.
absl::Status CheckOpcodes(const io_uring_probe& probe, absl::Span<const Opcode> needed);

// Probes `ring`'s kernel (IORING_REGISTER_PROBE) and checks `needed` as
// CheckOpcodes() does; kUnavailable if the kernel refuses the probe.
absl::Status ProbeOpcodes(io_uring* ring, absl::Span<const Opcode> needed);

}  // namespace taskrt::io_uring_platform

#endif  // TASKRT_PLATFORM_IO_URING_RING_H_
