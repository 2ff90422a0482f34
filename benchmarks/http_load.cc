// HTTP load: wrk (Debian's wrk, installed by tools/bazel) drives the HTTP
// front of tools/http_front, started in-process on 127.0.0.1 with a free
// port, with 1000 keep-alive connections on 2 wrk threads asking
// GET /primes?below=100000: each request is one background task that counts
// the primes (9592) and wakes the request's state machine on the loop.
//
//   http_load/<scheduler>+<channel>+<loop>  every combination of
//                                           backends/registry.h,
//                                           scheduler with 2 workers
//   http_load/raw_inline_epoll              baseline: the same server on
//                                           epoll computing each answer on
//                                           its loop thread, with no task
//   http_load_hello/<loop>                  GET /primes?below=10 computed
//                                           on the loop thread (body
//                                           "4\n", no task): next to no
//                                           work per request, so the
//                                           loop's socket I/O is what is
//                                           measured, for every loop
//
// One benchmark run = one iteration = one wrk run of 2 s (1 s with --quick).
// The iteration's manual time is wrk's duration / requests, the time per
// request, so the report ranks backends by throughput; the counters are
// items_per_second (requests per second) and wrk's p50/p99 latency.
//
// Every response is checked by the wrk script below (status 200, body
// exactly the expected body); the run fails, naming the numbers, on any bad response,
// any wrk socket error or timeout, no request at all, or a server that
// counted a 4xx/5xx or fewer 2xx than wrk saw. A backend the kernel refuses
// (io_uring under seccomp) is unavailable with the backend's reason.

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "benchmark/benchmark.h"
#include "benchmarks/job_registry.h"
#include "benchmarks/runtime_counters.h"
#include "benchmarks/subprocess.h"
#include "backends/registry.h"
#include "tools/http_front/server.h"


namespace taskrt {
namespace {

constexpr int kWorkers = 2;
constexpr int kConnections = 1000;
constexpr int kWrkThreads = 2;
// A request and the body every response must carry.
struct Request {
  const char* path;
  const char* body;  // as a Lua string literal's contents
};
// There are 9592 primes below 100000.
constexpr Request kPrimes = {"/primes?below=100000", "9592\\n"};
// And 4 below 10.
constexpr Request kHello = {"/primes?below=10", "4\\n"};

// How long the server may take, after wrk exits, to see its 1000 connections
// close and its cancelled tasks return. Far above what it needs; a server
// that does not get there is reported, not waited for.
constexpr absl::Duration kIdleTimeout = absl::Seconds(10);

// The wrk script: counts good and bad responses per thread and prints one
// machine-readable line at the end. wrk gives durations in microseconds.
// math.floor: string.format's %d refuses fractions on some Lua versions.
constexpr char kScript[] = R"lua(
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  good = 0
  bad = 0
end

function response(status, headers, body)
  if status == 200 and body == "$BODY" then
    good = good + 1
  else
    bad = bad + 1
  end
end

function done(summary, latency, requests)
  local good, bad = 0, 0
  for _, thread in ipairs(threads) do
    good = good + thread:get("good")
    bad = bad + thread:get("bad")
  end
  local e = summary.errors
  io.write(string.format(
    "taskrt good=%d bad=%d requests=%d duration_us=%d p50_us=%d p99_us=%d " ..
    "connect=%d read=%d write=%d status=%d timeout=%d\n",
    good, bad, summary.requests, summary.duration,
    math.floor(latency:percentile(50)), math.floor(latency:percentile(99)),
    e.connect, e.read, e.write, e.status, e.timeout))
end
)lua";

// The script in a temporary file, removed when this goes away.
class ScriptFile {
 public:
  static absl::StatusOr<std::unique_ptr<ScriptFile>> Create(const Request& request) {
    const std::string script = absl::StrReplaceAll(kScript, {{"$BODY", request.body}});
    const char* dir = std::getenv("TMPDIR");
    std::string path = absl::StrCat(dir != nullptr && *dir != '\0' ? dir : "/tmp",
                                    "/taskrt_http_load_XXXXXX.lua");
    const int fd = mkstemps(path.data(), 4);
    if (fd < 0) {
      return absl::InternalError(
          absl::StrCat("cannot create the wrk script ", path, ": ", std::strerror(errno)));
    }
    auto file = std::unique_ptr<ScriptFile>(new ScriptFile(path));
    const size_t size = script.size();
    const ssize_t written = write(fd, script.data(), size);
    const int write_errno = errno;
    close(fd);
    if (written != static_cast<ssize_t>(size)) {
      return absl::InternalError(absl::StrCat("cannot write the wrk script ", path, ": ",
                                              std::strerror(write_errno)));
    }
    return file;
  }
  ~ScriptFile() { unlink(path_.c_str()); }
  const std::string& path() const { return path_; }

 private:
  explicit ScriptFile(std::string path) : path_(std::move(path)) {}
  std::string path_;
};


// The script's "taskrt key=value ..." line as numbers; empty if it is
// missing or a value is not a whole number.
std::map<std::string, int64_t> ParseResultLine(const std::string& output) {
  std::map<std::string, int64_t> values;
  for (absl::string_view line : absl::StrSplit(output, '\n')) {
    if (!absl::ConsumePrefix(&line, "taskrt ")) continue;
    for (absl::string_view field : absl::StrSplit(line, ' ', absl::SkipEmpty())) {
      std::pair<absl::string_view, absl::string_view> kv = absl::StrSplit(field, '=');
      int64_t value;
      if (!absl::SimpleAtoi(kv.second, &value)) return {};
      values[std::string(kv.first)] = value;
    }
    return values;
  }
  return values;
}

// What the wrk run found wrong, or "".
std::string CheckWrk(std::map<std::string, int64_t>& r, const Request& request) {
  for (const char* key : {"good", "bad", "requests", "duration_us", "p50_us", "p99_us",
                          "connect", "read", "write", "status", "timeout"}) {
    if (r.count(key) == 0) return absl::StrCat("wrk's result line lacks ", key);
  }
  const std::string numbers =
      absl::StrCat("requests=", r["requests"], " good=", r["good"], " bad=", r["bad"],
                   " errors connect=", r["connect"], " read=", r["read"], " write=", r["write"],
                   " status=", r["status"], " timeout=", r["timeout"]);
  if (r["connect"] + r["read"] + r["write"] + r["status"] + r["timeout"] != 0) {
    return "wrk saw errors: " + numbers;
  }
  if (r["bad"] != 0) {
    return absl::StrCat("responses that were not 200 \"", request.body, "\": ", numbers);
  }
  if (r["requests"] == 0) return "wrk completed no request: " + numbers;
  if (r["good"] != r["requests"]) return "good responses != requests: " + numbers;
  if (r["duration_us"] <= 0) return "wrk reported no duration: " + numbers;
  return "";
}

void HttpLoad(benchmark::State& state, const std::string& scheduler, const std::string& channel,
              const std::string& loop_name, bool jobs_inline, const Request& request) {
  absl::StatusOr<Backends> backends =
      NewBackends(scheduler, channel, loop_name, kWorkers);
  if (!backends.ok()) {
    state.SkipWithError(backends.status().ToString().c_str());
    return;
  }
  if (absl::Status status = http::RaiseOpenFileLimit(); !status.ok()) {
    state.SkipWithError(status.ToString().c_str());
    return;
  }
  absl::StatusOr<std::unique_ptr<ScriptFile>> script = ScriptFile::Create(request);
  if (!script.ok()) {
    state.SkipWithError(script.status().ToString().c_str());
    return;
  }
  http::ServerOptions options;
  options.listen = "127.0.0.1:0";
  options.run_jobs_inline = jobs_inline;
  // The job measures the hand-off of every connection's request to a task:
  // all of them in flight at once, not the 503s of the default cap.
  options.max_tasks = kConnections;
  TaskEnvironment env{backends->scheduler.get(), backends->channels.get(), backends->loop.get(),
                      {}};
  absl::StatusOr<std::unique_ptr<http::Server>> server = http::Server::Start(options, env);
  if (!server.ok()) {
    state.SkipWithError(("server did not start: " + server.status().ToString()).c_str());
    return;
  }
  const SchedulerMetrics scheduler_before = backends->scheduler->metrics();
  const LoopMetrics loop_before = backends->loop->metrics();
  double requests_served = 0;
  absl::Status loop_status;
  std::thread loop_thread([&] { loop_status = backends->loop->Run(); });

  const std::string duration = bench::Quick() ? "1s" : "2s";
  const std::string url = absl::StrCat("http://127.0.0.1:", (*server)->port(), request.path);
  std::string error;
  for (auto _ : state) {
    std::string output;
    absl::StatusOr<int> exit_status =
        bench::RunCapturingOutput({"wrk", absl::StrCat("-t", kWrkThreads), absl::StrCat("-c", kConnections),
             "-d" + duration, "--timeout", "10s", "--latency", "-s", (*script)->path(), url},
            output);
    if (!exit_status.ok()) {
      error = exit_status.status().ToString() + " (tools/bazel installs the Debian package wrk)";
      break;
    }
    if (*exit_status != 0) {
      error = absl::StrCat("wrk failed (exit status ", *exit_status, "): ", bench::OneLine(output));
      break;
    }
    std::map<std::string, int64_t> result = ParseResultLine(output);
    if (result.empty()) {
      error = "wrk printed no \"taskrt ...\" result line: " + bench::OneLine(output);
      break;
    }
    if (error = CheckWrk(result, request); !error.empty()) break;
    // wrk closed its connections when it exited; the counters are final once
    // the server has seen every close and its cancelled tasks returned.
    if (!(*server)->WaitForIdle(kIdleTimeout)) {
      const http::ServerStats stats = (*server)->stats();
      error = absl::StrCat("server not idle ", absl::FormatDuration(kIdleTimeout),
                           " after wrk exited: connections_open=", stats.connections_open,
                           " tasks_running=", stats.tasks_running);
      break;
    }
    const http::ServerStats stats = (*server)->stats();
    if (stats.responses_4xx != 0 || stats.responses_5xx != 0 ||
        stats.responses_2xx < static_cast<uint64_t>(result["good"])) {
      error = absl::StrCat("server counters disagree with wrk: responses_2xx=",
                           stats.responses_2xx, " 4xx=", stats.responses_4xx,
                           " 5xx=", stats.responses_5xx, " but wrk saw good=", result["good"]);
      break;
    }
    const double seconds = result["duration_us"] * 1e-6;
    const double requests = static_cast<double>(result["requests"]);
    state.SetIterationTime(seconds / requests);
    // Plain counters: the value is already a rate and the times are wrk's.
    state.counters["items_per_second"] = requests / seconds;
    state.counters[bench::kOperationsCounter] = requests;
    requests_served += requests;
    state.counters["p50_ns"] = result["p50_us"] * 1e3;
    state.counters["p99_ns"] = result["p99_us"] * 1e3;
  }

  backends->loop->Stop();
  loop_thread.join();
  server->reset();
  // Entries cancelled by a late close may still be finishing: drain them
  // here, where a failed shutdown can be reported (Backends would also
  // destroy the scheduler first).
  absl::Status shutdown = backends->scheduler->Shutdown();
  if (error.empty() && !loop_status.ok()) error = "loop failed: " + loop_status.ToString();
  if (error.empty() && !shutdown.ok()) error = "scheduler shutdown: " + shutdown.ToString();
  if (!error.empty()) {
    state.SkipWithError(error.c_str());
    return;
  }
  // Per request, as the row's times and system calls are.
  bench::ReportSchedulerMetrics(state, *backends->scheduler, scheduler_before, requests_served);
  bench::ReportLoopMetrics(state, *backends->loop, loop_before, requests_served);
}

void Register() {
  for (const std::string& scheduler : SchedulerNames()) {
    for (const std::string& channel : ChannelNames()) {
      for (const std::string& loop : LoopNames()) {
        bench::AddJob(absl::StrCat("http_load/", scheduler, "+", channel, "+", loop),
                      [scheduler, channel, loop](benchmark::State& state) {
                        HttpLoad(state, scheduler, channel, loop, /*jobs_inline=*/false,
                                 kPrimes);
                      })
            ->Iterations(1)
            ->UseManualTime();
      }
    }
  }
  // The baseline: the same server computing each answer on its loop thread,
  // with no task, channel or wake-up (the backends are created but unused).
  bench::AddJob("http_load/raw_inline_epoll",
                [](benchmark::State& state) {
                  const DefaultBackends& defaults = Defaults();
                  HttpLoad(state, std::string(defaults.scheduler), std::string(defaults.channel),
                           std::string(defaults.loop), /*jobs_inline=*/true, kPrimes);
                })
      ->Iterations(1)
      ->UseManualTime();
  // Each loop's own socket I/O: answers computed on the loop thread (the
  // scheduler and channel are created but unused).
  for (const std::string& loop : LoopNames()) {
    bench::AddJob(absl::StrCat("http_load_hello/", loop), [loop](benchmark::State& state) {
      const DefaultBackends& defaults = Defaults();
      HttpLoad(state, std::string(defaults.scheduler), std::string(defaults.channel), loop,
               /*jobs_inline=*/true, kHello);
    })
        ->Iterations(1)
        ->UseManualTime();
  }
}

TASKRT_BENCHMARK_JOBS(Register);

}  // namespace
}  // namespace taskrt
