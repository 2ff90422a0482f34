#include "core/errors.h"

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace taskrt {

absl::Status ErrnoError(absl::string_view operation, int error_number) {
  char buffer[128];
  // GNU strerror_r returns the message, which may or may not be `buffer`.
  const char* text = strerror_r(error_number, buffer, sizeof buffer);
  const std::string message = absl::StrCat(operation, ": ", text);
  switch (error_number) {
    case EINVAL:
    case EBADF:
      return absl::InvalidArgumentError(message);
    case EPERM:
    case EACCES:
      return absl::PermissionDeniedError(message);
    case ENOSYS:
    case EOPNOTSUPP:
      return absl::UnavailableError(message);
    case EMFILE:
    case ENFILE:
    case ENOMEM:
    case ENOBUFS:
      return absl::ResourceExhaustedError(message);
    case EPIPE:
    case ECONNRESET:
      return absl::FailedPreconditionError(message);
    default:
      return absl::InternalError(message);
  }
}

}  // namespace taskrt
