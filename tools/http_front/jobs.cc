#include "tools/http_front/jobs.h"

#include <algorithm>
#include <cmath>
#include <vector>

namespace taskrt::http {
namespace {

constexpr uint64_t kSegment = 256 * 1024;
constexpr uint64_t kMiB = 1 << 20;

// Primes up to and including `limit`, by a plain sieve.
std::vector<uint64_t> PrimesUpTo(uint64_t limit) {
  std::vector<bool> composite(limit + 1, false);
  std::vector<uint64_t> primes;
  for (uint64_t i = 2; i <= limit; ++i) {
    if (composite[i]) continue;
    primes.push_back(i);
    for (uint64_t j = i * i; j <= limit; j += i) composite[j] = true;
  }
  return primes;
}

}  // namespace

std::optional<uint64_t> CountPrimesBelow(uint64_t below, StepFn step) {
  if (below <= 2) return step(1, 1) ? std::optional<uint64_t>(0) : std::nullopt;
  uint64_t root = static_cast<uint64_t>(std::sqrt(static_cast<double>(below)));
  while (root * root < below) ++root;  // covers rounding; extra base primes are harmless
  const std::vector<uint64_t> base = PrimesUpTo(root);
  const uint64_t total = (below + kSegment - 1) / kSegment;
  std::vector<char> composite(kSegment);
  uint64_t count = 0;
  for (uint64_t segment = 0; segment < total; ++segment) {
    const uint64_t low = segment * kSegment;
    const uint64_t high = std::min(low + kSegment, below);
    std::fill(composite.begin(), composite.end(), 0);
    for (uint64_t p : base) {
      if (p * p >= high) break;
      uint64_t first = std::max(p * p, (low + p - 1) / p * p);
      for (uint64_t j = first; j < high; j += p) composite[j - low] = 1;
    }
    for (uint64_t n = std::max<uint64_t>(low, 2); n < high; ++n) count += composite[n - low] == 0;
    if (!step(segment + 1, total)) return std::nullopt;
  }
  return count;
}

std::optional<uint64_t> HashMiB(uint64_t mib, StepFn step) {
  uint64_t hash = 14695981039346656037ull;
  std::vector<unsigned char> block(kMiB);
  for (uint64_t m = 0; m < mib; ++m) {
    for (uint64_t j = 0; j < kMiB; ++j) block[j] = static_cast<unsigned char>(31 * j + m);
    for (unsigned char byte : block) {
      hash ^= byte;
      hash *= 1099511628211ull;
    }
    if (!step(m + 1, mib)) return std::nullopt;
  }
  if (mib == 0 && !step(1, 1)) return std::nullopt;
  return hash;
}

}  // namespace taskrt::http
