// http_front: the HTTP server of server.h on backends chosen by flags.
//
//   tools/bazel run //tools/http_front -- --listen=127.0.0.1:8080
//       [--scheduler=NAME --channel=NAME --loop=NAME]   (--help lists them)
//   curl 'http://127.0.0.1:8080/primes?below=10000000&stream=1'
//
// SIGINT or SIGTERM stops it: running tasks are cancelled, then it exits
// (and writes the --trace file, when one was asked for).

#include <poll.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "backends/registry.h"
#include "core/trace.h"
#include "platform/process/working_directory.h"
#include "tools/http_front/server.h"

namespace {

int Fail(const std::string& message) {
  std::fprintf(stderr, "http_front: %s\n", message.c_str());
  return 1;
}

constexpr char kUsage[] =
    "usage: http_front [--scheduler=S] [--channel=C] [--loop=L] [--workers=N]\n"
    "                  [--listen=IPV4:PORT] [--max_header_bytes=N]\n"
    "                  [--idle_timeout=DURATION] [--request_timeout=DURATION]\n"
    "                  [--linger_timeout=DURATION] [--max_connections=N] [--max_tasks=N]\n"
    "                  [--trace=FILE] [--trace_events=N]\n"
    "An HTTP/1.1 server whose handlers run heavy work in background tasks:\n"
    "  GET /primes?below=N[&stream=1]   GET /hash?mib=N[&stream=1]   GET /stats\n"
    "  --scheduler, --channel, --loop\n"
    "                      the backends, by name (defaults and the list: below)\n"
    "  --workers           worker threads, for schedulers that take a count (default 2)\n"
    "  --listen            address to listen on (default 127.0.0.1:8080; port 0 picks one)\n"
    "  --max_header_bytes  longest request head accepted, 431 beyond (default 8192)\n"
    "  --idle_timeout      how long a connection may sit with no request under way, or\n"
    "                      leave its response unread (default 30s)\n"
    "  --request_timeout   how long a request head may take from its first byte, 408\n"
    "                      beyond (default 10s)\n"
    "  --linger_timeout    how long a closing connection discards the client's input\n"
    "                      (default 5s)\n"
    "  --max_connections   open connections at most; beyond, the oldest idle one is closed,\n"
    "                      or the new one gets 503 (default 10000)\n"
    "  --max_tasks         jobs running at most; beyond, 503 with Retry-After (default 64)\n"
    "  --trace             at exit, write what the runtime did (tasks, their runs, parks\n"
    "                      and wake-ups, channel messages) as a Chrome trace-event JSON\n"
    "                      file; open it in ui.perfetto.dev\n"
    "  --trace_events      the trace keeps the last N events (default 262144)\n";

// The whole usage text: the flags, then the registered backends.
std::string Usage() {
  const taskrt::DefaultBackends& defaults = taskrt::Defaults();
  return absl::StrCat(kUsage, "Backends (defaults: --scheduler=", defaults.scheduler,
                      " --channel=", defaults.channel, " --loop=", defaults.loop, "):\n",
                      taskrt::BackendUsage());
}

struct Flags {
  std::string scheduler{taskrt::Defaults().scheduler};
  std::string channel{taskrt::Defaults().channel};
  std::string loop{taskrt::Defaults().loop};
  int workers = taskrt::Defaults().workers;
  std::string trace;
  size_t trace_events = taskrt::trace::TraceRecorder::kDefaultCapacity;
  taskrt::http::ServerOptions server;
};

// --name=value flags; an unknown flag or a bad value is an error that says so.
absl::Status ParseFlags(int argc, char** argv, Flags& flags) {
  for (int i = 1; i < argc; ++i) {
    absl::string_view arg = argv[i];
    std::pair<absl::string_view, absl::string_view> kv = absl::StrSplit(arg, absl::MaxSplits('=', 1));
    const absl::string_view name = kv.first;
    const std::string value(kv.second);
    bool ok = absl::StrContains(arg, '=');
    if (name == "--scheduler") {
      flags.scheduler = value;
    } else if (name == "--channel") {
      flags.channel = value;
    } else if (name == "--loop") {
      flags.loop = value;
    } else if (name == "--listen") {
      flags.server.listen = value;
    } else if (name == "--workers") {
      ok = ok && absl::SimpleAtoi(value, &flags.workers);
    } else if (name == "--max_header_bytes") {
      ok = ok && absl::SimpleAtoi(value, &flags.server.max_header_bytes);
    } else if (name == "--idle_timeout") {
      ok = ok && absl::ParseDuration(value, &flags.server.idle_timeout);
    } else if (name == "--request_timeout") {
      ok = ok && absl::ParseDuration(value, &flags.server.request_timeout);
    } else if (name == "--linger_timeout") {
      ok = ok && absl::ParseDuration(value, &flags.server.linger_timeout);
    } else if (name == "--max_connections") {
      ok = ok && absl::SimpleAtoi(value, &flags.server.max_connections);
    } else if (name == "--trace") {
      flags.trace = value;
      ok = ok && !value.empty();
    } else if (name == "--trace_events") {
      ok = ok && absl::SimpleAtoi(value, &flags.trace_events) && flags.trace_events >= 1 &&
           flags.trace_events <= taskrt::trace::TraceRecorder::kMaxCapacity;
    } else if (name == "--max_tasks") {
      ok = ok && absl::SimpleAtoi(value, &flags.server.max_tasks);
    } else {
      return absl::InvalidArgumentError(absl::StrCat("unknown argument \"", arg, "\" (see --help)"));
    }
    if (!ok) return absl::InvalidArgumentError(absl::StrCat("bad value in \"", arg, "\" (see --help)"));
  }
  return absl::OkStatus();
}

}  // namespace

int main(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    if (absl::string_view(argv[i]) == "--help" || absl::string_view(argv[i]) == "-h") {
      std::fputs(Usage().c_str(), stdout);
      return 0;
    }
  }
  Flags flags;
  if (absl::Status parsed = ParseFlags(argc, argv, flags); !parsed.ok()) {
    return Fail(std::string(parsed.message()));
  }
  // Opened first: a trace file that cannot be written fails before the
  // server listens. Started before the backends, so that every worker and
  // every task's channel is traced.
  std::unique_ptr<taskrt::trace::TraceRecorder> recorder;
  if (!flags.trace.empty()) {
    absl::StatusOr<std::unique_ptr<taskrt::trace::TraceRecorder>> created =
        taskrt::trace::TraceRecorder::Create(taskrt::FromWorkingDirectory(flags.trace), flags.trace_events);
    if (!created.ok()) return Fail(absl::StrCat("--trace: ", created.status().message()));
    recorder = *std::move(created);
    if (absl::Status started = recorder->Start(); !started.ok()) {
      return Fail(absl::StrCat("--trace: ", started.message()));
    }
  }
  if (absl::Status raised = taskrt::http::RaiseOpenFileLimit(); !raised.ok()) {
    std::fprintf(stderr, "http_front: warning: %s\n", std::string(raised.message()).c_str());
  }
  // Signals arrive on the loop, as any other event. Blocked before any
  // worker thread starts, so that every thread inherits the mask.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  absl::StatusOr<taskrt::Backends> backends =
      taskrt::NewBackends(flags.scheduler, flags.channel, flags.loop, flags.workers);
  if (!backends.ok()) return Fail(backends.status().ToString());

  const taskrt::http::ServerOptions& options = flags.server;
  taskrt::TaskEnvironment env{backends->scheduler.get(), backends->channels.get(),
                              backends->loop.get(), {}};
  absl::StatusOr<std::unique_ptr<taskrt::http::Server>> server =
      taskrt::http::Server::Start(options, env);
  if (!server.ok()) return Fail(server.status().ToString());

  const int signal_fd = signalfd(-1, &signals, SFD_NONBLOCK | SFD_CLOEXEC);
  if (signal_fd < 0) return Fail("signalfd failed");
  taskrt::EventLoop& loop = *backends->loop;
  absl::StatusOr<taskrt::WatchId> signal_watch = loop.Watch({signal_fd, POLLIN}, [&loop] { loop.Stop(); });
  if (!signal_watch.ok()) return Fail(signal_watch.status().ToString());

  std::printf("http_front: listening on http://%s:%u/ (scheduler %s, channel %s, loop %s)\n",
              options.listen.substr(0, options.listen.rfind(':')).c_str(), (*server)->port(),
              flags.scheduler.c_str(), flags.channel.c_str(), flags.loop.c_str());
  std::fflush(stdout);
  absl::Status run = loop.Run();
  loop.Unwatch(*signal_watch).IgnoreError();
  close(signal_fd);
  // Cancel what runs, wait for the entries to see it, then count: the
  // cancellations happen after the connections close.
  (*server)->CloseAll();
  if (!(*server)->WaitForIdle(absl::Seconds(30))) {
    std::fprintf(stderr, "http_front: some task entries were still running after 30 s\n");
  }
  const taskrt::http::ServerStats stats = (*server)->stats();
  server->reset();
  if (recorder != nullptr) {
    // Units record their run when they return: let the last ones finish.
    backends->scheduler->Shutdown().IgnoreError();
    absl::StatusOr<size_t> traced = recorder->StopAndWrite();
    if (!traced.ok()) return Fail(absl::StrCat("--trace: ", traced.status().message()));
    std::printf("http_front: wrote the trace %s (%zu events, the last of %llu recorded)\n",
                recorder->path().c_str(), *traced,
                static_cast<unsigned long long>(recorder->recorded()));
  }
  std::printf("http_front: stopped after %llu requests (%llu tasks, %llu cancelled)\n",
              static_cast<unsigned long long>(stats.requests),
              static_cast<unsigned long long>(stats.tasks_started),
              static_cast<unsigned long long>(stats.tasks_cancelled));
  return run.ok() ? 0 : Fail(run.ToString());
}
