// Go 1.19's buffered channel (Debian's golang-go) as a competitor baseline for
// our channels, in the same run as our backends:
//   stream_8B/go_buffered_chan  one goroutine sends the ints 0..N-1 through a
//                               make(chan int, 1024) to the main goroutine,
//                               which checks each sequence number, with
//                               GOMAXPROCS(2): the stream_8B job of
//                               channels.cc, one iteration = one 8-byte
//                               message.
// The Go side is benchmarks/go/stream_chan.go, run by go_program.h with N =
// the stream_8B jobs' count (after its own short warm-up stream).

#include <cstdint>

#include "benchmark/benchmark.h"
#include "benchmarks/go_program.h"
#include "benchmarks/job_registry.h"

namespace taskrt {
namespace {

// As channels.cc's stream_8B jobs, so that the rows stream the same count.
constexpr int64_t kStream8BMessages = 1000000;

void GoStream(benchmark::State& state) {
  bench::RunGoProgram(state, "stream_chan", {}, "ns_per_message");
  state.SetBytesProcessed(state.iterations() * int64_t{sizeof(int64_t)});
}

void Register() {
  bench::AddJob("stream_8B/go_buffered_chan", GoStream)
      ->UseManualTime()
      ->Iterations(bench::Iterations(kStream8BMessages));
}

TASKRT_BENCHMARK_JOBS(Register);

}  // namespace
}  // namespace taskrt
