// Go 1.19's buffered channel (Debian's golang-go) as a competitor baseline for
// our memory channel, in the same run as our backends:
//   stream_8B/go_buffered_chan  one goroutine sends the ints 0..N-1 through a
//                               make(chan int, 1024) to the main goroutine,
//                               which checks each sequence number, with
//                               GOMAXPROCS(2): the stream_8B job of
//                               channels.cc, one iteration = one 8-byte
//                               message. The target for the memory
//                               channel is at most half Go's time per message
//                               (Go: about 56-59 ns here).
// The Go side is benchmarks/go/stream_chan.go, built by a genrule into the
// runfiles; each repetition runs it once as a subprocess with N = the
// iteration count (after its own short warm-up stream) and reports the time
// per message it measured as every iteration's manual time. So the figure
// includes no process start-up, and N is the stream_8B jobs' count. If the
// program is missing or fails, the row is unavailable with the reason.

#include <cstdint>
#include <string>

#include "benchmark/benchmark.h"
#include "benchmarks/job_registry.h"
#include "benchmarks/subprocess.h"


namespace taskrt {
namespace {

// As channels.cc's stream_8B jobs, so that the rows stream the same count.
constexpr int64_t kStream8BMessages = 1000000;

// The Go program inside the runfiles tree of the workspace "taskrt".
constexpr char kProgram[] = "taskrt/benchmarks/go/stream_chan_bin";

void GoStream(benchmark::State& state) {
  if (bench::RunFigureAsIterationTime(state, kProgram, "ns_per_message")) {
    state.SetBytesProcessed(state.iterations() * int64_t{sizeof(int64_t)});
  }
}

void Register() {
  bench::AddJob("stream_8B/go_buffered_chan", GoStream)
      ->UseManualTime()
      ->Iterations(bench::Iterations(kStream8BMessages));
}

TASKRT_BENCHMARK_JOBS(Register);

}  // namespace
}  // namespace taskrt
