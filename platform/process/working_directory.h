#ifndef TASKRT_PLATFORM_PROCESS_WORKING_DIRECTORY_H_
#define TASKRT_PLATFORM_PROCESS_WORKING_DIRECTORY_H_

// Paths a user gives to a program started by `bazel run`. Bazel runs the
// program in its runfiles directory and names the directory the user ran it
// from in $BUILD_WORKING_DIRECTORY, so a relative path the user typed means
// that directory's.

#include <string>

namespace taskrt {

// `path` made relative to the user's directory when it is relative and the
// program runs under `bazel run`; otherwise `path` unchanged (an empty path
// stays empty).
std::string FromWorkingDirectory(const std::string& path);

}  // namespace taskrt

#endif  // TASKRT_PLATFORM_PROCESS_WORKING_DIRECTORY_H_
