#ifndef TASKRT_TOOLS_HTTP_FRONT_SERVER_H_
#define TASKRT_TOOLS_HTTP_FRONT_SERVER_H_

// A small HTTP/1.1 server on the project's event loop, written the way Kore's
// users write one: a handler hands heavy work to a background Task, binds the
// request to it (Task::BindRequest), and is resumed in a request state
// machine (http_state_run's START / WAIT states) each time the task writes
// progress and once more when it finishes.
//
// Endpoints (GET; HEAD answers the same headers without a body)
//   /primes?below=N[&stream=1]  counts the primes below N (segmented sieve)
//   /hash?mib=N[&stream=1]      FNV-1a 64 of N MiB of a fixed byte pattern
//   /stats                      the counters below, as JSON (no task)
//   /metrics                    the same, the scheduler's and the event
//                               loop's metrics (core/scheduler.h,
//                               core/event_loop.h), in Prometheus's text
//                               exposition format 0.0.4 (no task)
//   /                           a usage line
//   A job answers 200 with "<result>\n" once the task finished. With
//   stream=1 it answers at once with chunked encoding: one "progress d/n\n"
//   chunk per progress message, then "result <result>\n", then the last
//   chunk.
//
// Robustness (each is tested through real sockets in server_test.cc)
//   - A request line or header block that is not HTTP/1.x gets 400 and a
//     close; headers over max_header_bytes get 431 and a close; a request
//     with a body gets 413 and a close; methods other than GET and HEAD
//     get 405; unknown paths 404; a bad or out-of-range query 400 with the
//     reason in the body.
//   - Smuggling: a second Content-Length or Host, an invalid one, or a query
//     parameter given twice gets 400 and a close (http_parser.h).
//   - A request head must arrive whole within request_timeout of its first
//     byte (a client that trickles bytes gains nothing), else 408 and a
//     close; a connection with no request under way (new, or between
//     keep-alive requests) is closed after idle_timeout; a client that reads
//     nothing while its response grows past max_pending_output bytes, or
//     leaves it unread for idle_timeout, is closed. The output buffer
//     shrinks as it is sent: its real size stays near the pending bytes.
//   - A client that half-closes (sends FIN) after its requests gets their
//     answers, then the close.
//   - A close after a response (Connection: close, or an error) lingers as
//     nginx's does: the server shuts down its sending side, then reads and
//     discards what the client still sends until it closes too, for at most
//     linger_timeout, so that the client's unread input cannot make the
//     kernel reset the connection and drop the answers on their way.
//   - Beyond max_connections open connections, a new one replaces the
//     oldest idle keep-alive connection; with none idle it gets 503 and a
//     close. With max_tasks task entries running, a job gets 503 with
//     Retry-After; requests that need no task are still answered.
//   - A client that disconnects while its task runs (its socket reports an
//     error, or a streamed answer cannot be sent): the Task is destroyed,
//     which asks the entry to cancel (it checks between steps) and frees it
//     when the entry returns.
//   Keep-alive and pipelined requests are served in order, one at a time.
//
// I/O: the loop's socket operations (core/event_loop.h, "Socket I/O"):
// AcceptEach on the listening socket, one ReceiveEach per connection,
// paused (PauseReceive) while the connection's unparsed input is at its cap
// and resumed when the job ahead of it finishes, and one SendAll at a time
// per connection, of at most 64 KiB of its output buffer: the stalled
// reader's clock (idle_timeout) restarts when a send completes.
//
// Threads
//   Everything but stats() and WaitForIdle() runs on the loop thread: Start
//   either there or before the loop runs; destroy the server while the loop
//   is not running (or on its thread). Closed off the loop thread, the
//   server hands its socket operations and their fds to the loop, which
//   cancels and closes them when it next runs, or when it is destroyed. Task entries run on the scheduler;
//   they share only the counters with the server, so the server may go away
//   while an entry is still finishing its cancelled work.
//
// Worker processes
//   On a scheduler that runs entries in other processes
//   (capabilities().runs_named_entries_elsewhere, e.g. nats_workers with
//   tools/nats_worker), a job is the named entry of job_entry.h, and the
//   server writes it the job's description; env.channels may then be null.
//   Such a task counts as running until the server lets it go, and is
//   counted finished (and cancelled, if it stopped early on a cancel or
//   was let go unfinished) then, on the server's side.

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "core/task.h"

namespace taskrt::http {

struct ServerOptions {
  // host:port, numeric IPv4. Port 0 picks a free port (see Server::port()).
  std::string listen = "127.0.0.1:8080";
  size_t max_header_bytes = 8 * 1024;
  absl::Duration idle_timeout = absl::Seconds(30);
  absl::Duration request_timeout = absl::Seconds(10);
  size_t max_pending_output = 1 << 20;
  // How long a closing connection reads and discards the client's input.
  absl::Duration linger_timeout = absl::Seconds(5);
  // SO_SNDBUF of each connection's socket; 0 leaves the kernel's default
  // (and its autotuning). Smaller bounds what a slow reader parks in the
  // kernel.
  int send_buffer_bytes = 0;
  // Open connections at most (also kept below the open-file limit).
  size_t max_connections = 10'000;
  // Task entries running at most (cancelled ones count until they return).
  size_t max_tasks = 64;
  // Upper bounds of the job sizes a query may ask for.
  uint64_t max_primes_below = 2'000'000'000;
  uint64_t max_hash_mib = 4096;
  // Baseline only: compute non-streamed jobs on the loop thread, with no
  // task, so that a benchmark can show what the hand-off to a task costs.
  // The loop stalls for the length of each job.
  bool run_jobs_inline = false;
};

struct ServerStats {
  uint64_t connections_accepted = 0;
  uint64_t connections_open = 0;
  uint64_t requests = 0;          // parsed requests, good or bad
  uint64_t responses_2xx = 0;
  uint64_t responses_4xx = 0;
  uint64_t responses_5xx = 0;
  uint64_t tasks_started = 0;
  uint64_t tasks_finished = 0;    // entries that returned
  uint64_t tasks_running = 0;     // entries that have not returned yet
  uint64_t tasks_cancelled = 0;   // entries that stopped early on a cancel
  uint64_t tasks_refused = 0;     // jobs answered 503 at max_tasks
  uint64_t connections_refused = 0;  // at max_connections with none idle
  uint64_t connections_evicted = 0;  // idle ones closed to make room
  uint64_t output_buffer_bytes = 0;  // memory held by output buffers
};

class Server {
 public:
  // Listens on options.listen and accepts on env.loop (AcceptEach: at once
  // when called on the loop thread, else from work posted to it). Errors:
  // kInvalidArgument for a bad address or options, the system error when
  // the socket cannot be bound, and whatever the loop's Post returns.
  static absl::StatusOr<std::unique_ptr<Server>> Start(const ServerOptions& options,
                                                       const TaskEnvironment& env);
  virtual ~Server() = default;

  virtual uint16_t port() const = 0;

  // A snapshot of the counters. Thread-safe.
  virtual ServerStats stats() const = 0;

  // Blocks until no connection is open and no task entry is running, or
  // `timeout` passed; returns whether it got there. Thread-safe; for a
  // thread other than the loop thread (the loop must be running).
  virtual bool WaitForIdle(absl::Duration timeout) const = 0;

  // Stops listening and closes every connection, which cancels their
  // tasks; for a clean exit, before WaitForIdle and the last stats(). On the
  // loop thread, or while the loop is not running.
  virtual void CloseAll() = 0;
};

// Raises this process's open-file limit to its hard limit: each connection
// with a running task holds a socket and its channel's descriptors, so 1,000
// connections need a few thousand. The system error if the kernel refuses.
absl::Status RaiseOpenFileLimit();

}  // namespace taskrt::http

#endif  // TASKRT_TOOLS_HTTP_FRONT_SERVER_H_
