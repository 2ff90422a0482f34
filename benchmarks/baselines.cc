// Plain baselines: what the machine costs before any runtime is involved.
// Every backend's figure in the report is read against these, measured in
// the same run.

#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <thread>

#include "benchmark/benchmark.h"
#include "benchmarks/job_registry.h"

namespace {

// Reads or writes exactly `size` bytes; aborts the benchmark on a socket
// error, which would make every figure meaningless.
void WriteFully(int fd, const void* data, size_t size) {
  const char* p = static_cast<const char*>(data);
  while (size > 0) {
    ssize_t n = write(fd, p, size);
    if (n < 0) {
      std::perror("baseline write");
      std::abort();
    }
    p += n;
    size -= static_cast<size_t>(n);
  }
}

bool ReadFully(int fd, void* data, size_t size) {
  char* p = static_cast<char*>(data);
  while (size > 0) {
    ssize_t n = read(fd, p, size);
    if (n == 0) return false;
    if (n < 0) {
      std::perror("baseline read");
      std::abort();
    }
    p += n;
    size -= static_cast<size_t>(n);
  }
  return true;
}

// Returns once `fd` has data (or EOF), peeking for up to 50 us before the
// blocking read that follows takes over.
void SpinUntilReadable(int fd) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::microseconds(50);
  char byte;
  while (std::chrono::steady_clock::now() < deadline) {
    if (recv(fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT) >= 0) return;
  }
}

// One round trip: 8 bytes to an echo thread over an AF_UNIX stream socketpair
// and back. Kore's channel is such a socketpair, so this is the floor for a
// Kore round trip.
//
// With `spin`, the echo thread first retries a non-blocking recv for up to
// 50 us before it blocks: the same spin-then-park the runtime's OS-thread
// context uses (core/execution_context.cc), so the report shows the floor
// for both waiting policies.
void RoundTripRawSocketpair(benchmark::State& state, bool spin) {
  int fds[2];
  if (socketpair(AF_UNIX, SOCK_STREAM, 0, fds) != 0) {
    state.SkipWithError("socketpair failed");
    return;
  }
  std::thread echo([fd = fds[1], spin] {
    uint64_t value;
    while (true) {
      if (spin) SpinUntilReadable(fd);
      if (!ReadFully(fd, &value, sizeof value)) break;
      WriteFully(fd, &value, sizeof value);
    }
  });
  uint64_t value = 0;
  for (auto _ : state) {
    ++value;
    WriteFully(fds[0], &value, sizeof value);
    uint64_t echoed = 0;
    ReadFully(fds[0], &echoed, sizeof echoed);
    if (echoed != value) {
      state.SkipWithError("echo mismatch");
      break;
    }
  }
  shutdown(fds[0], SHUT_WR);
  echo.join();
  close(fds[0]);
  close(fds[1]);
}
void Register() {
  // Fixed iteration counts, as every job's: the kernel's counts per
  // iteration (compare_main.cc) then cover one run, not the library's probes.
  taskrt::bench::AddJob("round_trip/raw_socketpair", RoundTripRawSocketpair, false)
      ->UseRealTime()
      ->Iterations(taskrt::bench::Iterations(20000));
  taskrt::bench::AddJob("round_trip/raw_socketpair_spin", RoundTripRawSocketpair, true)
      ->UseRealTime()
      ->Iterations(taskrt::bench::Iterations(20000));
  // The same floor beside the channel backends' thread-to-thread round trip
  // (channels.cc), whose echo thread spins 50 us before it blocks.
  taskrt::bench::AddJob("cross_thread_ping_pong/raw_socketpair_spin", RoundTripRawSocketpair, true)
      ->UseRealTime()
      ->Iterations(taskrt::bench::Iterations(20000));
}

TASKRT_BENCHMARK_JOBS(Register);

}  // namespace
