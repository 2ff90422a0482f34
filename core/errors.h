#ifndef TASKRT_CORE_ERRORS_H_
#define TASKRT_CORE_ERRORS_H_

// Error conventions shared by every backend.
//
//   kUnavailable (empty message)  a non-blocking call could not make progress
//                                 now; wait for readiness and retry. Cheap: an
//                                 empty-message Status allocates nothing.
//   kResourceExhausted            a message over the channel's maximum size.
//   kOutOfRange                   reading a channel that is closed and drained.
//   kFailedPrecondition           the object is in the wrong state: closed,
//                                 shut down, finished, already bound, ...
//   kInvalidArgument              a bad argument (zero workers, null entry).
//   kPermissionDenied             a call from a thread that may not make it.
//   kInternal / errno-derived     the system refused; the message says how.

#include "absl/strings/string_view.h"

#include "absl/status/status.h"

namespace taskrt {

// The "retry after readiness" result of every non-blocking call.
//
// Both are inline on purpose: they sit on every channel operation's hot
// path, and Debian's Abseil is a shared library whose Status(code, message)
// constructor and code() are out of line. Copying the one prebuilt
// WouldBlock status and comparing against it are inline word operations
// (the out-of-line EqualsSlow runs only for statuses that carry a message
// or a payload, which are never WouldBlock).
inline const absl::Status& WouldBlockStatus() {
  static const absl::Status would_block(absl::StatusCode::kUnavailable, "");
  return would_block;
}
inline absl::Status WouldBlock() { return WouldBlockStatus(); }
inline bool IsWouldBlock(const absl::Status& status) {
  return !status.ok() && status == WouldBlockStatus();
}

// Translates an errno value into a Status whose message names the operation,
// e.g. ErrnoError("eventfd", EMFILE) -> "eventfd: Too many open files".
absl::Status ErrnoError(absl::string_view operation, int error_number);

}  // namespace taskrt

#endif  // TASKRT_CORE_ERRORS_H_
