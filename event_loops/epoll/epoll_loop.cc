#include "event_loops/epoll/epoll_loop.h"

#include <poll.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <limits>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "core/errors.h"
#include "core/execution_context.h"
#include "core/mutex.h"
#include "event_loops/loop_base/loop_base.h"

namespace taskrt {
namespace {

// epoll_event.data of the eventfd that wakes the loop for posted work.
constexpr WatchId kWakeId = 0;
constexpr int kMaxEventsPerWait = 64;

uint32_t ToEpollEvents(short poll_events) {
  uint32_t events = EPOLLET | EPOLLRDHUP;
  if (poll_events & POLLIN) events |= EPOLLIN;
  if (poll_events & POLLOUT) events |= EPOLLOUT;
  return events;
}

class EpollLoop final : public LoopBase {
 public:
  EpollLoop(int epoll_fd, int wake_fd)
      : LoopBase("epoll loop"), epoll_fd_(epoll_fd), wake_fd_(wake_fd) {}
  ~EpollLoop() override {
    close(wake_fd_);
    close(epoll_fd_);
  }

  absl::StatusOr<WatchId> Watch(Readiness readiness, std::function<void()> callback) override {
    if (!callback) return absl::InvalidArgumentError("epoll loop: Watch got an empty callback");
    if (readiness.fd < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("epoll loop: Watch got a bad file descriptor ", readiness.fd));
    }
    auto shared_callback = std::make_shared<std::function<void()>>(std::move(callback));
    MutexLock lock(&mu_);
    const WatchId id = next_id_++;
    epoll_event event{};
    event.events = ToEpollEvents(readiness.events);
    event.data.u64 = id;
    if (epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, readiness.fd, &event) != 0) {
      return ErrnoError("epoll loop: epoll_ctl(ADD)", errno);
    }
    watches_[id] = {readiness.fd, std::move(shared_callback)};
    return id;
  }

  absl::Status Unwatch(WatchId id) override {
    MutexLock lock(&mu_);
    auto it = watches_.find(id);
    if (it == watches_.end()) {
      return absl::NotFoundError(absl::StrCat("epoll loop: Unwatch of unknown watch ", id));
    }
    // The fd may already be closed by its owner; EBADF/ENOENT then mean the
    // kernel dropped it already, which is what we want.
    epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, it->second.fd, nullptr);
    watches_.erase(it);
    return absl::OkStatus();
  }

  std::string name() const override { return "epoll"; }

 private:
  struct WatchEntry {
    int fd;
    std::shared_ptr<std::function<void()>> callback;
  };

  absl::Status Wake() override {
    const uint64_t one = 1;
    // A full counter (EAGAIN) already means "wake up"; nothing else can fail
    // on a valid eventfd.
    [[maybe_unused]] ssize_t written = write(wake_fd_, &one, sizeof one);
    return absl::OkStatus();
  }

  absl::StatusOr<int> DispatchReady(absl::Duration timeout) override {
    if (timeout != absl::ZeroDuration()) {
      // In a stackful task, wait the task's way (the epoll fd is readable
      // while events are pending) so other tasks on the thread keep running.
      ExecutionContext& context = CurrentExecutionContext();
      if (context.suspends_task()) {
        const absl::Time deadline = timeout == absl::InfiniteDuration()
                                        ? absl::InfiniteFuture()
                                        : absl::Now() + timeout;
        absl::Status waited = context.WaitFdUntil(epoll_fd_, POLLIN, deadline);
        if (!waited.ok() && !absl::IsDeadlineExceeded(waited)) return waited;
        timeout = absl::ZeroDuration();
      }
    }
    epoll_event events[kMaxEventsPerWait];
    absl::StatusOr<int> waited = Wait(events, timeout);
    WaitEnded();
    if (!waited.ok()) return waited.status();
    const int ready = *waited;

    int ran = 0;
    for (int i = 0; i < ready; ++i) {
      const WatchId id = events[i].data.u64;
      if (id == kWakeId) {
        uint64_t count;
        [[maybe_unused]] ssize_t got = read(wake_fd_, &count, sizeof count);
        continue;
      }
      std::shared_ptr<std::function<void()>> callback;
      {
        MutexLock lock(&mu_);
        auto it = watches_.find(id);
        if (it == watches_.end()) continue;  // unwatched by an earlier callback
        callback = it->second.callback;
      }
      (*callback)();
      ++ran;
    }
    return ran;
  }

  // epoll_pwait2 takes a timespec, so the wait honours the timers to the
  // nanosecond; on a kernel without it (ENOSYS) epoll_wait's milliseconds
  // are rounded up, so a wait never ends before its timer is due.
  absl::StatusOr<int> Wait(epoll_event* events, absl::Duration timeout) {
    while (true) {
      int ready;
      if (!pwait2_missing_) {
        timespec wait_time;
        timespec* wait_for = nullptr;
        if (timeout != absl::InfiniteDuration()) {
          wait_time = absl::ToTimespec(absl::Ceil(timeout, absl::Nanoseconds(1)));
          wait_for = &wait_time;
        }
        ready = epoll_pwait2(epoll_fd_, events, kMaxEventsPerWait, wait_for, nullptr);
        if (ready < 0 && errno == ENOSYS) {
          pwait2_missing_ = true;
          continue;
        }
        if (ready < 0 && errno != EINTR) return ErrnoError("epoll loop: epoll_pwait2", errno);
      } else {
        const int timeout_ms = timeout == absl::InfiniteDuration()
                                   ? -1
                                   : static_cast<int>(std::min<int64_t>(
                                         absl::ToInt64Milliseconds(
                                             absl::Ceil(timeout, absl::Milliseconds(1))),
                                         std::numeric_limits<int>::max()));
        ready = epoll_wait(epoll_fd_, events, kMaxEventsPerWait, timeout_ms);
        if (ready < 0 && errno != EINTR) return ErrnoError("epoll loop: epoll_wait", errno);
      }
      if (ready >= 0) return ready;
    }
  }

  const int epoll_fd_;
  const int wake_fd_;
  bool pwait2_missing_ = false;  // the loop thread's only
  Mutex mu_;
  WatchId next_id_ ABSL_GUARDED_BY(mu_) = kWakeId + 1;
  absl::flat_hash_map<WatchId, WatchEntry> watches_ ABSL_GUARDED_BY(mu_);
};

}  // namespace

absl::StatusOr<std::unique_ptr<EventLoop>> NewEpollLoop() {
  const int epoll_fd = epoll_create1(EPOLL_CLOEXEC);
  if (epoll_fd < 0) return ErrnoError("epoll loop: epoll_create1", errno);
  const int wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (wake_fd < 0) {
    const int error = errno;
    close(epoll_fd);
    return ErrnoError("epoll loop: eventfd", error);
  }
  epoll_event event{};
  event.events = EPOLLIN;
  event.data.u64 = kWakeId;
  if (epoll_ctl(epoll_fd, EPOLL_CTL_ADD, wake_fd, &event) != 0) {
    const int error = errno;
    close(wake_fd);
    close(epoll_fd);
    return ErrnoError("epoll loop: epoll_ctl(ADD eventfd)", error);
  }
  return std::make_unique<EpollLoop>(epoll_fd, wake_fd);
}

}  // namespace taskrt
