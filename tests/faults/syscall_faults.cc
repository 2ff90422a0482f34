// See syscall_faults.h. The definitions below replace libc's sendmsg, send
// and recv for the whole test binary; the real ones come from
// dlsym(RTLD_NEXT), which under a sanitizer is its interceptor, so the
// sanitizers still see every call.

// A fortified recv() would be an inline definition clashing with ours.
#undef _FORTIFY_SOURCE

#include "tests/faults/syscall_faults.h"

#include <dlfcn.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "gtest/gtest.h"

namespace taskrt::faults {
namespace {

// One call in kOneIn of those faulted gets a fault.
constexpr uint64_t kOneIn = 8;
constexpr uint64_t kDefaultSeed = 0x5eed'f00d'cafe'0001;
// sendmsg() calls with more iovecs than this are never shortened.
constexpr size_t kMaxShortenedIovecs = 16;

std::atomic<uint64_t> calls{0};
std::atomic<uint64_t> eintr_count{0};
std::atomic<uint64_t> eagain_count{0};
std::atomic<uint64_t> short_write_count{0};
std::atomic<uint64_t> short_read_count{0};
std::atomic<uint64_t> threads_seen{0};

uint64_t Seed() {
  static const uint64_t seed = [] {
    const char* text = std::getenv("TASKRT_FAULT_SEED");
    if (text == nullptr || *text == '\0') return kDefaultSeed;
    return static_cast<uint64_t>(std::strtoull(text, nullptr, 0));
  }();
  return seed;
}

uint64_t SplitMix64(uint64_t& state) {
  uint64_t z = (state += 0x9e37'79b9'7f4a'7c15);
  z = (z ^ (z >> 30)) * 0xbf58'476d'1ce4'e5b9;
  z = (z ^ (z >> 27)) * 0x94d0'49bb'1331'11eb;
  return z ^ (z >> 31);
}

// Per thread, so draws need no lock and a thread's sequence is its own.
thread_local bool rng_seeded = false;
thread_local uint64_t rng_state = 0;

uint64_t Draw() {
  if (!rng_seeded) {
    rng_state =
        Seed() ^ (threads_seen.fetch_add(1, std::memory_order_relaxed) * 0xd1b5'4a32'd192'ed03);
    rng_seeded = true;
  }
  return SplitMix64(rng_state);
}

enum class Fault { kNone, kEintr, kEagain, kShorten };

// Counts the call and picks its fault among those allowed. `shortenable`:
// the call moves at least 2 bytes, so a shorter one still moves at least 1.
Fault Pick(bool may_eagain, bool shortenable, uint64_t& extra) {
  calls.fetch_add(1, std::memory_order_relaxed);
  const uint64_t r = Draw();
  extra = Draw();
  if (r % kOneIn != 0) return Fault::kNone;
  Fault allowed[3];
  size_t count = 0;
  allowed[count++] = Fault::kEintr;
  if (may_eagain) allowed[count++] = Fault::kEagain;
  if (shortenable) allowed[count++] = Fault::kShorten;
  return allowed[(r / kOneIn) % count];
}

// Fails the call without doing anything, as an interrupted or would-block
// call does; false when `fault` is not such a failure.
bool Fail(Fault fault) {
  if (fault == Fault::kEintr) {
    eintr_count.fetch_add(1, std::memory_order_relaxed);
    errno = EINTR;
    return true;
  }
  if (fault == Fault::kEagain) {
    eagain_count.fetch_add(1, std::memory_order_relaxed);
    errno = EAGAIN;
    return true;
  }
  return false;
}

// Counts a shortened call that moved bytes (one that found nothing to move
// was not cut short); returns `result`.
ssize_t CountShort(ssize_t result, bool write) {
  if (result > 0) {
    (write ? short_write_count : short_read_count).fetch_add(1, std::memory_order_relaxed);
  }
  return result;
}

// A length in [1, length - 1]; length >= 2.
size_t Shorter(size_t length, uint64_t r) { return 1 + static_cast<size_t>(r % (length - 1)); }

template <typename Function>
Function Real(const char* name) {
  void* symbol = dlsym(RTLD_NEXT, name);
  if (symbol == nullptr) {
    std::fprintf(stderr, "syscall_faults: dlsym(RTLD_NEXT, \"%s\") failed: %s\n", name, dlerror());
    std::abort();
  }
  return reinterpret_cast<Function>(symbol);
}

using SendmsgFunction = ssize_t (*)(int, const msghdr*, int);
using SendFunction = ssize_t (*)(int, const void*, size_t, int);
using RecvFunction = ssize_t (*)(int, void*, size_t, int);

// Prints the exit line when the binary's statics are destroyed.
struct ExitReport {
  ~ExitReport() { std::fprintf(stderr, "%s\n", Describe(Counts()).c_str()); }
} exit_report;

}  // namespace

FaultCounts Counts() {
  FaultCounts counts;
  counts.calls = calls.load(std::memory_order_relaxed);
  counts.eintr = eintr_count.load(std::memory_order_relaxed);
  counts.eagain = eagain_count.load(std::memory_order_relaxed);
  counts.short_write = short_write_count.load(std::memory_order_relaxed);
  counts.short_read = short_read_count.load(std::memory_order_relaxed);
  return counts;
}

std::string Describe(const FaultCounts& c) {
  return "faults injected: " + std::to_string(c.injected()) + " (eintr=" + std::to_string(c.eintr) +
         ", eagain=" + std::to_string(c.eagain) + ", short_write=" + std::to_string(c.short_write) +
         ", short_read=" + std::to_string(c.short_read) + ") over " + std::to_string(c.calls) +
         " calls";
}

int RequireFaultsInjected(int suite_result) {
  if (suite_result != 0) return suite_result;
  if (GTEST_FLAG_GET(filter) != "*") return 0;
  const FaultCounts c = Counts();
  if (c.eintr == 0 || c.eagain == 0 || c.short_write == 0 || c.short_read == 0) {
    std::fprintf(stderr,
                 "syscall_faults: the suite passed but some kind of fault was never injected "
                 "(%s): is the shim interposed on the channel's calls?\n",
                 Describe(c).c_str());
    return 1;
  }
  return 0;
}

}  // namespace taskrt::faults

// Outside any namespace: these must be the global C symbols.
using taskrt::faults::CountShort;
using taskrt::faults::Fail;
using taskrt::faults::Fault;
using taskrt::faults::kMaxShortenedIovecs;
using taskrt::faults::Pick;
using taskrt::faults::Real;
using taskrt::faults::RecvFunction;
using taskrt::faults::SendFunction;
using taskrt::faults::SendmsgFunction;
using taskrt::faults::Shorter;

extern "C" ssize_t sendmsg(int fd, const struct msghdr* msg, int flags) {
  static const auto real = Real<SendmsgFunction>("sendmsg");
  if ((flags & MSG_DONTWAIT) == 0) return real(fd, msg, flags);
  size_t total = 0;
  for (size_t i = 0; i < msg->msg_iovlen; ++i) total += msg->msg_iov[i].iov_len;
  uint64_t r;
  const Fault fault =
      Pick(/*may_eagain=*/true, total >= 2 && msg->msg_iovlen <= kMaxShortenedIovecs, r);
  if (Fail(fault)) return -1;
  if (fault != Fault::kShorten) return real(fd, msg, flags);
  // The same message with its iovecs cut to a shorter total.
  iovec parts[kMaxShortenedIovecs];
  size_t left = Shorter(total, r);
  size_t count = 0;
  for (size_t i = 0; i < msg->msg_iovlen && left > 0; ++i, ++count) {
    parts[count] = msg->msg_iov[i];
    parts[count].iov_len = std::min(parts[count].iov_len, left);
    left -= parts[count].iov_len;
  }
  msghdr shorter = *msg;
  shorter.msg_iov = parts;
  shorter.msg_iovlen = count;
  return CountShort(real(fd, &shorter, flags), true);
}

// The channel flushes the rest of a partly sent message with send().
extern "C" ssize_t send(int fd, const void* buffer, size_t length, int flags) {
  static const auto real = Real<SendFunction>("send");
  if ((flags & MSG_DONTWAIT) == 0) return real(fd, buffer, length, flags);
  uint64_t r;
  const Fault fault = Pick(/*may_eagain=*/true, length >= 2, r);
  if (Fail(fault)) return -1;
  if (fault != Fault::kShorten) return real(fd, buffer, length, flags);
  return CountShort(real(fd, buffer, Shorter(length, r), flags), true);
}

// No EAGAIN here. The kernel returns it only when nothing is queued, and
// the owner's event loop is edge-triggered (core/event_loop.h): a made-up
// EAGAIN with bytes queued leaves them unread until the peer writes again,
// which it may never do. With it the task group's final callbacks stopped
// draining early and "lost" messages; the channel cannot tell it apart from
// a real one. A made-up EAGAIN on a send is harmless: every send waiter
// here (poll, a scheduler's one-shot epoll) is level-triggered.
extern "C" ssize_t recv(int fd, void* buffer, size_t length, int flags) {
  static const auto real = Real<RecvFunction>("recv");
  if ((flags & MSG_DONTWAIT) == 0) return real(fd, buffer, length, flags);
  uint64_t r;
  const Fault fault = Pick(/*may_eagain=*/false, length >= 2, r);
  if (Fail(fault)) return -1;
  if (fault != Fault::kShorten) return real(fd, buffer, length, flags);
  return CountShort(real(fd, buffer, Shorter(length, r), flags), false);
}
