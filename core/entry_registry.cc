#include "core/entry_registry.h"

#include <utility>

#include "absl/container/btree_map.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/mutex.h"

namespace taskrt {
namespace {

constexpr size_t kMaxNameBytes = 128;

class Registry {
 public:
  absl::Status Register(absl::string_view name, RegisteredEntry entry) ABSL_LOCKS_EXCLUDED(mu_) {
    MutexLock lock(&mu_);
    if (!entries_.try_emplace(std::string(name), std::move(entry)).second) {
      return absl::AlreadyExistsError(
          absl::StrCat("RegisterEntry: an entry named \"", name, "\" is already registered"));
    }
    return absl::OkStatus();
  }

  absl::StatusOr<RegisteredEntry> Find(absl::string_view name) ABSL_LOCKS_EXCLUDED(mu_) {
    MutexLock lock(&mu_);
    auto it = entries_.find(name);
    if (it != entries_.end()) return it->second;
    return absl::NotFoundError(absl::StrCat(
        "no task entry is registered as \"", absl::CHexEscape(name), "\" in this process (",
        entries_.empty() ? "none is" : absl::StrCat("registered: ", JoinNames()), ")"));
  }

  std::vector<std::string> Names() ABSL_LOCKS_EXCLUDED(mu_) {
    MutexLock lock(&mu_);
    std::vector<std::string> names;
    names.reserve(entries_.size());
    for (const auto& [name, entry] : entries_) names.push_back(name);
    return names;
  }

 private:
  std::string JoinNames() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return absl::StrJoin(entries_, ", ", [](std::string* out, const auto& named) {
      absl::StrAppend(out, named.first);
    });
  }

  Mutex mu_;
  // Ordered, so the names come out sorted.
  absl::btree_map<std::string, RegisteredEntry, std::less<>> entries_ ABSL_GUARDED_BY(mu_);
};

Registry& TheRegistry() {
  static Registry* const registry = new Registry();  // never destroyed: entries outlive exit
  return *registry;
}

bool IsNameByte(char c) {
  return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.' || c == ':' ||
         c == '-';
}

absl::Status CheckName(absl::string_view name) {
  if (name.empty()) return absl::InvalidArgumentError("RegisterEntry: the name is empty");
  if (name.size() > kMaxNameBytes) {
    return absl::InvalidArgumentError(absl::StrCat("RegisterEntry: the name is ", name.size(),
                                                   " bytes, over the ", kMaxNameBytes, " allowed"));
  }
  for (size_t i = 0; i < name.size(); ++i) {
    if (!IsNameByte(name[i])) {
      return absl::InvalidArgumentError(absl::StrCat(
          "RegisterEntry: the name \"", absl::CHexEscape(name), "\" has the byte \"",
          absl::CHexEscape(name.substr(i, 1)), "\" at ", i,
          "; a name is made of A-Z a-z 0-9 _ . : -"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status RegisterEntry(absl::string_view name, RegisteredEntry entry) {
  if (absl::Status valid = CheckName(name); !valid.ok()) return valid;
  if (!entry) {
    return absl::InvalidArgumentError(
        absl::StrCat("RegisterEntry: the entry for \"", name, "\" is empty"));
  }
  return TheRegistry().Register(name, std::move(entry));
}

absl::StatusOr<RegisteredEntry> FindEntry(absl::string_view name) {
  return TheRegistry().Find(name);
}

std::vector<std::string> RegisteredEntryNames() { return TheRegistry().Names(); }

}  // namespace taskrt
