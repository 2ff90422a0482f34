// The cooperative scheduler when the kernel refuses epoll_ctl: the refusal
// reaches the caller as a Status (the factory, or the task whose WaitFd
// armed the descriptor), and the scheduler goes on. epoll_ctl is replaced
// for this binary by the definition below, which fails on request.

#include <dirent.h>
#include <dlfcn.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <memory>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "core/execution_context.h"
#include "gtest/gtest.h"
#include "schedulers/cooperative/cooperative.h"

namespace {

// The next `epoll_failures` calls with operation `epoll_failing_op` fail
// with `epoll_failure_errno`.
std::atomic<int> epoll_failures{0};
std::atomic<int> epoll_failing_op{0};
std::atomic<int> epoll_failure_errno{0};

void FailEpollCtl(int op, int error_number, int times) {
  epoll_failing_op.store(op);
  epoll_failure_errno.store(error_number);
  epoll_failures.store(times);
}

}  // namespace

// Replaces libc's for the whole (statically linked) test binary; the real
// one comes from dlsym(RTLD_NEXT), a sanitizer's interceptor under one.
extern "C" int epoll_ctl(int epfd, int op, int fd, epoll_event* event) {
  using EpollCtl = int (*)(int, int, int, epoll_event*);
  static const EpollCtl real = reinterpret_cast<EpollCtl>(dlsym(RTLD_NEXT, "epoll_ctl"));
  if (op == epoll_failing_op.load()) {
    int left = epoll_failures.load();
    while (left > 0 && !epoll_failures.compare_exchange_weak(left, left - 1)) {
    }
    if (left > 0) {
      errno = epoll_failure_errno.load();
      return -1;
    }
  }
  return real(epfd, op, fd, event);
}

namespace taskrt {
namespace {

int OpenDescriptors() {
  DIR* dir = opendir("/proc/self/fd");
  if (dir == nullptr) return -1;
  int count = 0;
  while (readdir(dir) != nullptr) ++count;
  closedir(dir);
  return count;
}

// A connected pair whose first end cannot take more data until the second
// reads, which it never does here.
struct FullSocketPair {
  FullSocketPair() {
    EXPECT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds), 0);
    char chunk[4096] = {};
    while (write(fds[0], chunk, sizeof chunk) > 0) {
    }
    EXPECT_EQ(errno, EAGAIN);
  }
  ~FullSocketPair() {
    close(fds[0]);
    close(fds[1]);
  }
  int fds[2] = {-1, -1};
};

TEST(CooperativeFaultsTest, ARefusedWakeUpRegistrationIsTheFactorysError) {
  const int before = OpenDescriptors();
  FailEpollCtl(EPOLL_CTL_ADD, ENOMEM, 1);
  absl::StatusOr<std::unique_ptr<Scheduler>> refused = NewCooperativeScheduler();
  EXPECT_EQ(epoll_failures.load(), 0);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kResourceExhausted) << refused.status();
  EXPECT_NE(refused.status().message().find("epoll_ctl"), absl::string_view::npos)
      << refused.status();
  EXPECT_EQ(OpenDescriptors(), before);  // the epoll fd and eventfd are closed

  absl::StatusOr<std::unique_ptr<Scheduler>> scheduler = NewCooperativeScheduler();
  ASSERT_TRUE(scheduler.ok()) << scheduler.status();
  EXPECT_TRUE((*scheduler)->Shutdown().ok());
}

TEST(CooperativeFaultsTest, ARefusedArmIsTheWaitingTasksError) {
  absl::StatusOr<std::unique_ptr<Scheduler>> scheduler = NewCooperativeScheduler();
  ASSERT_TRUE(scheduler.ok()) << scheduler.status();
  int pipe_fds[2];
  ASSERT_EQ(pipe(pipe_fds), 0);
  absl::Status refused;
  absl::Status after;
  Parker done;
  ASSERT_TRUE((*scheduler)
                  ->Schedule([&] {
                    // Set from the task: no other thread calls epoll_ctl now.
                    FailEpollCtl(EPOLL_CTL_ADD, ENOMEM, 1);
                    refused = CurrentExecutionContext().WaitFd(pipe_fds[0], POLLIN);
                    // The scheduler goes on, and the same fd can be waited on.
                    EXPECT_EQ(write(pipe_fds[1], "x", 1), 1);
                    after = CurrentExecutionContext().WaitFd(pipe_fds[0], POLLIN);
                    done.Unpark();
                  })
                  .ok());
  done.Park();
  EXPECT_EQ(refused.code(), absl::StatusCode::kResourceExhausted) << refused;
  EXPECT_NE(refused.message().find("epoll_ctl"), absl::string_view::npos) << refused;
  EXPECT_TRUE(after.ok()) << after;
  EXPECT_TRUE((*scheduler)->Shutdown().ok());
  close(pipe_fds[0]);
  close(pipe_fds[1]);
}

// Two tasks wait on one descriptor for different events; when one leaves
// (by data arriving, or `by_timeout`), the interest is re-armed for the other,
// and the kernel refuses that. The other is woken to retry, and its next
// wait reports the refusal.
void ExpectRefusedRearmReachesTheOtherWaiter(bool by_timeout) {
  absl::StatusOr<std::unique_ptr<Scheduler>> scheduler = NewCooperativeScheduler();
  ASSERT_TRUE(scheduler.ok()) << scheduler.status();
  Scheduler& s = **scheduler;
  FullSocketPair pair;
  const int fd = pair.fds[0];
  absl::Status reader;
  absl::Status writer_first;
  absl::Status writer_retry;
  Parker reader_done;
  Parker writer_done;
  ASSERT_TRUE(
      s.Schedule([&] {
         // Scheduled from the scheduler's thread, these run in order right
         // after this task suspends: the writer waits too, then the third
         // task arms the faults while both are waiting.
         EXPECT_TRUE(s.Schedule([&] {
                        writer_first = CurrentExecutionContext().WaitFd(fd, POLLOUT);
                        writer_retry = CurrentExecutionContext().WaitFd(fd, POLLOUT);
                        writer_done.Unpark();
                      })
                         .ok());
         EXPECT_TRUE(s.Schedule([&] {
                        FailEpollCtl(EPOLL_CTL_MOD, ENOMEM, 2);
                        if (!by_timeout) {
                          EXPECT_EQ(write(pair.fds[1], "x", 1), 1);
                        }
                      })
                         .ok());
         const absl::Time deadline =
             by_timeout ? absl::Now() + absl::Milliseconds(1) : absl::InfiniteFuture();
         reader = CurrentExecutionContext().WaitFdUntil(fd, POLLIN, deadline);
         reader_done.Unpark();
       })
          .ok());
  reader_done.Park();
  writer_done.Park();
  EXPECT_EQ(epoll_failures.load(), 0);
  if (by_timeout) {
    EXPECT_EQ(reader.code(), absl::StatusCode::kDeadlineExceeded) << reader;
  } else {
    EXPECT_TRUE(reader.ok()) << reader;
  }
  EXPECT_TRUE(writer_first.ok()) << writer_first;  // woken to retry: still full
  EXPECT_EQ(writer_retry.code(), absl::StatusCode::kResourceExhausted) << writer_retry;
  EXPECT_NE(writer_retry.message().find("epoll_ctl"), absl::string_view::npos) << writer_retry;
  EXPECT_TRUE(s.Shutdown().ok());
}

TEST(CooperativeFaultsTest, ARefusedRearmAfterAWakeUpReachesTheOtherWaiter) {
  ExpectRefusedRearmReachesTheOtherWaiter(/*by_timeout=*/false);
}

TEST(CooperativeFaultsTest, ARefusedRearmAfterATimeoutReachesTheOtherWaiter) {
  ExpectRefusedRearmReachesTheOtherWaiter(/*by_timeout=*/true);
}

}  // namespace
}  // namespace taskrt
