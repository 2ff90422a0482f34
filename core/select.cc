#include "core/select.h"

#include <sys/epoll.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <utility>

#include "absl/cleanup/cleanup.h"
#include "absl/container/inlined_vector.h"
#include "absl/strings/str_cat.h"
#include "core/errors.h"
#include "core/execution_context.h"

namespace taskrt {

// Runs the cases; a friend of SelectCase.
class SelectRunner {
 public:
  // Performs case `index` if it can proceed now, with its outcome in
  // `out`; false, touching nothing, if it would block.
  [[gnu::always_inline]] static inline bool Attempt(const SelectCase& c, uint32_t index,
                                                    Selected& out) {
    if (c.direction_ == ChannelDirection::kReceive) {
      absl::StatusOr<size_t> received = c.end_->TryReceive(c.out_);
      if (received.ok()) [[likely]] {
        out.index = index;
        out.length = *received;
        return true;
      }
      if (IsWouldBlock(received.status())) return false;
      out.index = index;
      out.status = received.status();
      return true;
    }
    absl::Status sent = c.end_->TrySend(c.message_);
    if (IsWouldBlock(sent)) return false;
    if (sent.ok() && c.end_->may_hold_unflushed()) {
      // Accepted whole: the case is chosen, and the message leaves the end
      // before Select() returns, as with Send().
      sent = c.end_->TryFlush();
      if (IsWouldBlock(sent)) {
        sent = channel_internal::SendSlow(*c.end_, c.message_, true, absl::InfiniteFuture());
      }
    }
    out.index = index;
    out.status = std::move(sent);
    return true;
  }
};

namespace {

// Small and per thread: the order in which cases are tried only has to be
// uniform, not unpredictable. Seeded on first use from the clock and the
// thread's own address.
uint64_t NextRandom() {
  thread_local constinit uint64_t state = 0;
  if (state == 0) [[unlikely]] {
    state = static_cast<uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count()) ^
            reinterpret_cast<uintptr_t>(&state);
    state |= 1;
  }
  // xorshift64*
  state ^= state >> 12;
  state ^= state << 25;
  state ^= state >> 27;
  return state * 2685821657736338717ULL;
}

// Tries every case once, in a fresh uniformly random order (Fisher-Yates),
// so that of the cases that can proceed each is equally likely to be the
// one performed; true once one did, with its outcome in `out`. Each draw
// takes 16 random bits, scaled into range by a multiply instead of a
// division; the bias, under n / 65536, is far below what any number of
// selects could show.
// One uniformly random bit, 64 per NextRandom() call: a two-case select,
// the commonest, needs only one bit per try.
uint32_t NextRandomBit() {
  thread_local constinit uint64_t bits = 0;
  thread_local constinit int left = 0;
  if (left == 0) [[unlikely]] {
    bits = NextRandom();
    left = 64;
  }
  --left;
  const uint32_t bit = static_cast<uint32_t>(bits & 1);
  bits >>= 1;
  return bit;
}

bool TryInRandomOrder(absl::Span<const SelectCase> cases, Selected& out) {
  const size_t n = cases.size();
  if (n == 1) return SelectRunner::Attempt(cases[0], 0, out);
  if (n == 2) {
    const uint32_t first = NextRandomBit();
    return SelectRunner::Attempt(cases[first], first, out) ||
           SelectRunner::Attempt(cases[first ^ 1], first ^ 1, out);
  }
  absl::InlinedVector<uint32_t, 16> order(n);
  for (size_t i = 0; i < n; ++i) order[i] = static_cast<uint32_t>(i);
  uint64_t bits = 0;
  int draws_left = 0;
  for (size_t i = n; i > 1; --i) {
    if (draws_left == 0) {
      bits = NextRandom();
      draws_left = 4;
    }
    const size_t j = static_cast<size_t>(((bits & 0xffff) * i) >> 16);
    bits >>= 16;
    --draws_left;
    std::swap(order[i - 1], order[j]);
  }
  for (const uint32_t index : order) {
    if (SelectRunner::Attempt(cases[index], index, out)) return true;
  }
  return false;
}

absl::Status DeadlinePassed() {
  return absl::DeadlineExceededError("select: no case could proceed by the deadline");
}

struct FdInterest {
  int fd;
  uint32_t events;  // EPOLLIN / EPOLLOUT
};

// Blocks through the current execution context until one of the cases'
// readiness targets fires (each end's readiness fires once progress is
// possible after a try that would have blocked). One target: waited on
// directly; several: gathered into a short-lived epoll set, which the
// context waits on as on any descriptor.
absl::Status WaitForAnyCase(absl::Span<const SelectCase> cases, absl::Time deadline) {
  // Each case's readiness is held for the wait only (ChannelEnd::
  // AcquireReadiness), and released on every way out.
  size_t acquired = 0;
  absl::Cleanup release = [&] {
    for (size_t i = 0; i < acquired; ++i) cases[i].end()->ReleaseReadiness(cases[i].direction());
  };
  absl::InlinedVector<FdInterest, 8> interests;
  for (size_t i = 0; i < cases.size(); ++i) {
    const SelectCase& c = cases[i];
    const Readiness readiness = c.end()->AcquireReadiness(c.direction());
    if (readiness.fd < 0) {
      return absl::ResourceExhaustedError(
          absl::StrCat("select: case ", i, "'s end has no readiness descriptor to wait on"));
    }
    ++acquired;
    const uint32_t events = ((readiness.events & POLLIN) ? EPOLLIN : 0u) |
                            ((readiness.events & POLLOUT) ? EPOLLOUT : 0u);
    auto same = std::find_if(interests.begin(), interests.end(),
                             [&](const FdInterest& known) { return known.fd == readiness.fd; });
    if (same != interests.end()) {
      same->events |= events;
    } else {
      interests.push_back({readiness.fd, events});
    }
  }
  ExecutionContext& context = CurrentExecutionContext();
  absl::Status waited;
  if (interests.size() == 1) {
    const short poll_events = static_cast<short>(((interests[0].events & EPOLLIN) ? POLLIN : 0) |
                                                 ((interests[0].events & EPOLLOUT) ? POLLOUT : 0));
    waited = context.WaitFdUntil(interests[0].fd, poll_events, deadline);
  } else {
    const int set = epoll_create1(EPOLL_CLOEXEC);
    if (set < 0) return ErrnoError("select: epoll_create1", errno);
    for (const FdInterest& interest : interests) {
      epoll_event event{};
      event.events = interest.events;
      event.data.fd = interest.fd;
      if (epoll_ctl(set, EPOLL_CTL_ADD, interest.fd, &event) != 0) {
        const int error = errno;
        close(set);
        return ErrnoError("select: epoll_ctl", error);
      }
    }
    waited = context.WaitFdUntil(set, POLLIN, deadline);
    close(set);
  }
  if (absl::IsDeadlineExceeded(waited)) return DeadlinePassed();
  return waited;
}

}  // namespace

absl::StatusOr<Selected> Select(absl::Span<const SelectCase> cases, absl::Time deadline) {
  if (cases.empty()) return absl::InvalidArgumentError("select: no cases");
  for (size_t i = 0; i < cases.size(); ++i) {
    if (cases[i].end() == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat("select: case ", i, " has no channel end"));
    }
  }
  Selected selected;
  if (TryInRandomOrder(cases, selected)) return selected;
  if (deadline != absl::InfiniteFuture() && deadline <= absl::Now()) return DeadlinePassed();

  // As the blocking Send() and Receive(): an OS thread spins briefly for a
  // quick answer; a stackful task first lets the ready tasks of its thread
  // run, one of which may be the peer.
  ExecutionContext& context = CurrentExecutionContext();
  if (const auto spin = context.spin_before_wait(); spin.count() > 0) {
    const auto spin_end = std::chrono::steady_clock::now() + spin;
    do {
      CpuRelax();
      if (TryInRandomOrder(cases, selected)) return selected;
    } while (std::chrono::steady_clock::now() < spin_end);
  }
  if (context.YieldToReady() && TryInRandomOrder(cases, selected)) return selected;
  while (true) {
    if (absl::Status waited = WaitForAnyCase(cases, deadline); !waited.ok()) return waited;
    if (TryInRandomOrder(cases, selected)) return selected;
  }
}

}  // namespace taskrt
