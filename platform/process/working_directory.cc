#include "platform/process/working_directory.h"

#include <cstdlib>
#include <string>

namespace taskrt {

std::string FromWorkingDirectory(const std::string& path) {
  const char* working = std::getenv("BUILD_WORKING_DIRECTORY");
  if (path.empty() || path[0] == '/' || working == nullptr) return path;
  return std::string(working) + "/" + path;
}

}  // namespace taskrt
