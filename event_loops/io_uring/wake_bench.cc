// Measures the cross-thread wake of a thread asleep in its ring, the choice
// behind the io_uring loop's Wake() (io_uring_loop.h, "Threads"). Two
// threads play ping-pong, each asleep in io_uring_submit_and_wait on its own
// ring until the other wakes it by one of:
//
//   eventfd   a write() to an eventfd that the sleeper's ring polls with a
//             multishot poll (rings with SINGLE_ISSUER | DEFER_TASKRUN)
//   eventfd+read  the same, and the sleeper read()s the eventfd back to zero
//             once woken, as a watcher of a channel's readiness eventfd does
//             before it waits again (channels/spsc_rings)
//   msg_ring  IORING_OP_MSG_RING submitted on the waker's own ring into the
//             sleeper's (rings with SINGLE_ISSUER | DEFER_TASKRUN)
//   sync_msg_ring  the same message sent without a ring of the waker's:
//             io_uring_register(-1, IORING_REGISTER_SEND_MSG_RING, sqe)
//             (Linux 6.13)
//   nop       an IORING_OP_NOP that the waker submits into the sleeper's
//             ring under a mutex (plain rings, which any thread may submit to)
//
// Prints the time per one-way wake (half a round trip), the median of
// --repetitions runs of --rounds round trips each.
//
//   tools/bazel run -c opt //event_loops/io_uring:wake_bench -- --rounds=20000

#include <liburing.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace {

enum class Method { kEventFd, kEventFdRead, kMsgRing, kSyncMsgRing, kNop };

// Not in Debian's headers (linux-libc-dev 6.1, liburing 2.3).
constexpr unsigned kRegisterSendMsgRing = 31;

constexpr uint64_t kWakeTag = 1;

// Posts a completion tagged kWakeTag into the ring `ring_fd` without a
// ring of the caller's (IORING_REGISTER_SEND_MSG_RING); false if refused.
bool SendMsgRingWithoutRing(int ring_fd) {
  io_uring_sqe sqe{};
  io_uring_prep_msg_ring(&sqe, ring_fd, 0, kWakeTag, 0);
  return syscall(__NR_io_uring_register, -1, kRegisterSendMsgRing, &sqe, 1) >= 0;
}

struct Side {
  io_uring ring{};
  int event_fd = -1;
  std::mutex submit_mu;  // kNop: the peer submits into this ring
};

bool SetUp(Side& side, Method method) {
  io_uring_params params{};
  if (method != Method::kNop) {
    params.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN |
                   IORING_SETUP_R_DISABLED;
  }
  if (int rc = io_uring_queue_init_params(64, &side.ring, &params); rc < 0) {
    std::fprintf(stderr, "io_uring_queue_init_params: %s\n", std::strerror(-rc));
    return false;
  }
  side.event_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  return side.event_fd >= 0;
}

// On the side's own thread: enables the ring (it becomes the issuer) and
// arms what the method needs.
void Start(Side& side, Method method) {
  if (method != Method::kNop) io_uring_enable_rings(&side.ring);
  if (method == Method::kEventFd || method == Method::kEventFdRead) {
    io_uring_sqe* sqe = io_uring_get_sqe(&side.ring);
    io_uring_prep_poll_multishot(sqe, side.event_fd, POLLIN);
    io_uring_sqe_set_data64(sqe, kWakeTag);
  }
}

void WakePeer(Side& self, Side& peer, Method method) {
  switch (method) {
    case Method::kEventFd:
    case Method::kEventFdRead: {
      const uint64_t one = 1;
      (void)!write(peer.event_fd, &one, sizeof one);
      break;
    }
    case Method::kMsgRing: {
      io_uring_sqe* sqe = io_uring_get_sqe(&self.ring);
      io_uring_prep_msg_ring(sqe, peer.ring.ring_fd, 0, kWakeTag, 0);
      io_uring_sqe_set_data64(sqe, 0);
      io_uring_sqe_set_flags(sqe, IOSQE_CQE_SKIP_SUCCESS);
      io_uring_submit(&self.ring);
      break;
    }
    case Method::kSyncMsgRing:
      (void)SendMsgRingWithoutRing(peer.ring.ring_fd);
      break;
    case Method::kNop: {
      std::lock_guard<std::mutex> lock(peer.submit_mu);
      io_uring_sqe* sqe = io_uring_get_sqe(&peer.ring);
      io_uring_prep_nop(sqe);
      io_uring_sqe_set_data64(sqe, kWakeTag);
      io_uring_submit(&peer.ring);
      break;
    }
  }
}

// Sleeps until one wake-up arrives; reaps everything queued.
void SleepUntilWoken(Side& self, Method method) {
  bool woken = false;
  while (!woken) {
    io_uring_cqe* cqe = nullptr;
    if (method == Method::kNop) {
      // Another thread submits into this ring: only wait here.
      io_uring_wait_cqe(&self.ring, &cqe);
    } else {
      io_uring_submit_and_wait(&self.ring, 1);
    }
    unsigned head;
    unsigned count = 0;
    io_uring_for_each_cqe(&self.ring, head, cqe) {
      if (cqe->user_data == kWakeTag) woken = true;
      ++count;
    }
    io_uring_cq_advance(&self.ring, count);
  }
  if (method == Method::kEventFdRead) {
    uint64_t value;
    (void)!read(self.event_fd, &value, sizeof value);
  }
}

// Whether this kernel takes a MSG_RING without a source ring: sent to a
// ring of its own, the message must arrive.
bool SyncMsgRingWorks() {
  io_uring ring{};
  if (io_uring_queue_init(4, &ring, 0) < 0) return false;
  const bool sent = SendMsgRingWithoutRing(ring.ring_fd);
  io_uring_cqe* cqe = nullptr;
  const bool arrived = sent && io_uring_peek_cqe(&ring, &cqe) == 0 && cqe->user_data == kWakeTag;
  io_uring_queue_exit(&ring);
  return arrived;
}

double RunOnce(Method method, int rounds) {
  Side a;
  Side b;
  if (!SetUp(a, method) || !SetUp(b, method)) std::exit(1);
  std::atomic<bool> b_ready{false};
  std::thread responder([&] {
    Start(b, method);
    io_uring_submit(&b.ring);
    b_ready.store(true);
    for (int i = 0; i < rounds; ++i) {
      SleepUntilWoken(b, method);
      WakePeer(b, a, method);
    }
  });
  Start(a, method);
  io_uring_submit(&a.ring);
  while (!b_ready.load()) std::this_thread::yield();
  const auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < rounds; ++i) {
    WakePeer(a, b, method);
    SleepUntilWoken(a, method);
  }
  const auto elapsed = std::chrono::steady_clock::now() - start;
  responder.join();
  io_uring_queue_exit(&a.ring);
  io_uring_queue_exit(&b.ring);
  close(a.event_fd);
  close(b.event_fd);
  return std::chrono::duration<double, std::nano>(elapsed).count() / (2.0 * rounds);
}

}  // namespace

int main(int argc, char** argv) {
  int rounds = 20000;
  int repetitions = 5;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg.rfind("--rounds=", 0) == 0) rounds = std::atoi(arg.c_str() + 9);
    if (arg.rfind("--repetitions=", 0) == 0) repetitions = std::atoi(arg.c_str() + 14);
  }
  if (rounds <= 0 || repetitions <= 0) {
    std::fprintf(stderr, "--rounds and --repetitions must be positive\n");
    return 1;
  }
  const struct {
    Method method;
    const char* name;
  } methods[] = {{Method::kEventFd, "eventfd"},
                 {Method::kEventFdRead, "eventfd+read"},
                 {Method::kMsgRing, "msg_ring"},
                 {Method::kSyncMsgRing, "sync_msg_ring"},
                 {Method::kNop, "nop"}};
  for (const auto& [method, name] : methods) {
    if (method == Method::kSyncMsgRing && !SyncMsgRingWorks()) {
      std::printf("%-12s skipped: the kernel refuses IORING_REGISTER_SEND_MSG_RING (Linux 6.13)\n",
                  name);
      continue;
    }
    std::vector<double> times;
    for (int r = 0; r < repetitions; ++r) times.push_back(RunOnce(method, rounds));
    std::sort(times.begin(), times.end());
    std::printf("%-12s %8.0f ns per wake (median of %d; min %.0f, max %.0f)\n", name,
                times[times.size() / 2], repetitions, times.front(), times.back());
  }
  return 0;
}
