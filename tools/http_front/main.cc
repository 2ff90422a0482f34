// http_front: the HTTP server of server.h on backends chosen by flags.
//
//   tools/bazel run //tools/http_front -- --scheduler=work_stealing
//       --channel=memory --loop=epoll --listen=127.0.0.1:8080   (one line)
//   curl 'http://127.0.0.1:8080/primes?below=10000000&stream=1'
//
// SIGINT or SIGTERM stops it: running tasks are cancelled, then it exits.

#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <cstdio>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/time.h"
#include "tools/http_front/backends.h"
#include "tools/http_front/server.h"

ABSL_FLAG(std::string, scheduler, "thread_pool",
          "where tasks run: thread_pool, work_stealing or cooperative");
ABSL_FLAG(std::string, channel, "socketpair", "task <-> owner channel: socketpair, memory or io_uring");
ABSL_FLAG(std::string, loop, "epoll", "the owner's event loop: epoll or io_uring");
ABSL_FLAG(int, workers, 2, "worker threads of thread_pool and work_stealing");
ABSL_FLAG(std::string, listen, "127.0.0.1:8080", "IPV4:PORT to listen on; port 0 picks one");
ABSL_FLAG(int, max_header_bytes, 8 * 1024, "longest request head accepted (431 beyond)");
ABSL_FLAG(absl::Duration, idle_timeout, absl::Seconds(30),
          "how long a client may send nothing mid-request (408), idle between requests, "
          "or stall its response");

namespace {

int Fail(const std::string& message) {
  std::fprintf(stderr, "http_front: %s\n", message.c_str());
  return 1;
}

// 1,000 connections each with a running task need a few thousand descriptors.
void RaiseDescriptorLimit() {
  rlimit limit;
  if (getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur < limit.rlim_max) {
    limit.rlim_cur = limit.rlim_max;
    setrlimit(RLIMIT_NOFILE, &limit);
  }
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "an HTTP/1.1 server whose handlers run heavy work in background tasks.\n"
      "  GET /primes?below=N[&stream=1]   GET /hash?mib=N[&stream=1]   GET /stats");
  std::vector<char*> rest = absl::ParseCommandLine(argc, argv);
  if (rest.size() > 1) return Fail(absl::StrCat("unexpected argument \"", rest[1], "\" (see --help)"));
  RaiseDescriptorLimit();
  // Signals arrive on the loop, as any other event. Blocked before any
  // worker thread starts, so that every thread inherits the mask.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  absl::StatusOr<taskrt::http::Backends> backends =
      taskrt::http::NewBackends(absl::GetFlag(FLAGS_scheduler), absl::GetFlag(FLAGS_channel),
                                absl::GetFlag(FLAGS_loop), absl::GetFlag(FLAGS_workers));
  if (!backends.ok()) return Fail(backends.status().ToString());

  taskrt::http::ServerOptions options;
  options.listen = absl::GetFlag(FLAGS_listen);
  options.max_header_bytes = static_cast<size_t>(std::max(0, absl::GetFlag(FLAGS_max_header_bytes)));
  options.idle_timeout = absl::GetFlag(FLAGS_idle_timeout);
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
              absl::GetFlag(FLAGS_scheduler).c_str(), absl::GetFlag(FLAGS_channel).c_str(),
              absl::GetFlag(FLAGS_loop).c_str());
  std::fflush(stdout);
  absl::Status run = loop.Run();
  loop.Unwatch(*signal_watch).IgnoreError();
  close(signal_fd);
  const taskrt::http::ServerStats stats = (*server)->stats();
  server->reset();
  std::printf("http_front: stopped after %llu requests (%llu tasks, %llu cancelled)\n",
              static_cast<unsigned long long>(stats.requests),
              static_cast<unsigned long long>(stats.tasks_started),
              static_cast<unsigned long long>(stats.tasks_cancelled));
  return run.ok() ? 0 : Fail(run.ToString());
}
