// Select (core/select.h) beside Go's select statement, in the same run:
//   select_ping_pong  a responder unit loops on a Select over the receiving
//                     ends of two channels and answers each message on the
//                     end it came from; a caller unit alternates between
//                     the two channels, sending 8 bytes and waiting for the
//                     answer. One iteration = one round trip through the
//                     select. Rows are <scheduler>+<channel> for every
//                     registered pair; both units run on the scheduler
//                     under test (two workers where it honours a count).
//                     go_select: Go with GOMAXPROCS(1), a goroutine
//                     selecting over two unbuffered channels and a quit
//                     channel and answering on the channel it received
//                     from, the main goroutine alternating between the two
//                     (benchmarks/go/select_ping_pong.go); one iteration =
//                     one round trip, as ours.
// The measuring loop runs inside the caller unit; the benchmark thread
// waits. Times are real time.

#include <array>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "backends/registry.h"
#include "benchmark/benchmark.h"
#include "benchmarks/go_program.h"
#include "benchmarks/job_registry.h"
#include "core/channel.h"
#include "core/execution_context.h"
#include "core/select.h"

namespace taskrt {
namespace {

constexpr char kQuit = 'q';

// Answers every 8-byte message on the end it came from, until a one-byte
// quit; returns false on any error.
bool Respond(ChannelEnd& a, ChannelEnd& b) {
  std::array<char, 8> buffer_a{};
  std::array<char, 8> buffer_b{};
  const std::array<SelectCase, 2> cases = {SelectCase::Receive(&a, absl::MakeSpan(buffer_a)),
                                           SelectCase::Receive(&b, absl::MakeSpan(buffer_b))};
  while (true) {
    absl::StatusOr<Selected> selected = Select(cases);
    if (!selected.ok() || !selected->status.ok()) return false;
    if (selected->length == 1) return true;  // the quit
    const bool from_a = selected->index == 0;
    if (!Send(from_a ? a : b, absl::MakeConstSpan(from_a ? buffer_a : buffer_b)).ok()) return false;
  }
}

void SelectPingPong(benchmark::State& state, const SchedulerDescriptor* scheduler_descriptor,
                    const ChannelDescriptor* channel_descriptor) {
  absl::StatusOr<std::unique_ptr<Scheduler>> scheduler =
      scheduler_descriptor->create(BackendOptions{.workers = 2});
  absl::StatusOr<std::unique_ptr<ChannelFactory>> channels = channel_descriptor->create({});
  if (!scheduler.ok() || !channels.ok()) {
    state.SkipWithError(
        (scheduler.ok() ? channels.status() : scheduler.status()).ToString().c_str());
    return;
  }
  absl::StatusOr<ChannelPair> a = (*channels)->CreatePair({});
  absl::StatusOr<ChannelPair> b = (*channels)->CreatePair({});
  if (!a.ok() || !b.ok()) {
    state.SkipWithError((a.ok() ? b.status() : a.status()).ToString().c_str());
    return;
  }
  bool responded = false;
  bool answered = true;
  Parker responder_done;
  Parker caller_done;
  ChannelEnd& responder_a = *a->task_end;
  ChannelEnd& responder_b = *b->task_end;
  ChannelEnd& caller_a = *a->owner_end;
  ChannelEnd& caller_b = *b->owner_end;
  if (absl::Status scheduled = (*scheduler)->Schedule([&] {
        responded = Respond(responder_a, responder_b);
        responder_done.Unpark();
      });
      !scheduled.ok()) {
    state.SkipWithError(scheduled.ToString().c_str());
    return;
  }
  absl::Status scheduled = (*scheduler)->Schedule([&] {
      uint64_t sequence = 0;
      std::array<char, 8> message{};
      std::array<char, 8> answer{};
      for (auto _ : state) {
        ChannelEnd& end = (sequence & 1) == 0 ? caller_a : caller_b;
        std::memcpy(message.data(), &sequence, sizeof sequence);
        absl::StatusOr<size_t> length;
        if (!Send(end, absl::MakeConstSpan(message)).ok() ||
            !(length = Receive(end, absl::MakeSpan(answer))).ok() || *length != answer.size() ||
            answer != message) {
          answered = false;
          break;
        }
        ++sequence;
      }
      (void)Send(caller_a, absl::MakeConstSpan(&kQuit, 1));
      caller_done.Unpark();
  });
  if (scheduled.ok()) {
    caller_done.Park();
  } else {
    state.SkipWithError(scheduled.ToString().c_str());
    (void)Send(caller_a, absl::MakeConstSpan(&kQuit, 1));  // lets the responder end
  }
  responder_done.Park();
  if (!answered || !responded) state.SkipWithError("a round trip through the select failed");
}

void GoSelect(benchmark::State& state) {
  bench::RunGoProgram(state, "select_ping_pong", {}, "ns_per_round_trip");
}

void Register() {
  for (const SchedulerDescriptor* scheduler : Schedulers()) {
    // A stackful round trip is a pair of context switches; a round trip
    // between OS threads needs wake-ups, hundreds of times slower.
    const int64_t iterations = scheduler->capabilities.single_thread_stackful_tasks ? 200000 : 5000;
    for (const ChannelDescriptor* channel : Channels()) {
      bench::AddJob(absl::StrCat("select_ping_pong/", scheduler->name, "+", channel->name),
                    SelectPingPong, scheduler, channel)
          ->UseRealTime()
          ->Iterations(bench::Iterations(iterations));
    }
  }
  bench::AddJob("select_ping_pong/go_select", GoSelect)
      ->UseManualTime()
      ->Iterations(bench::Iterations(1000000));
}

TASKRT_BENCHMARK_JOBS(Register);

}  // namespace
}  // namespace taskrt
