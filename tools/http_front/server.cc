#include "tools/http_front/server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <initializer_list>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <functional>
#include <optional>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "core/errors.h"
#include "core/event_loop.h"
#include "core/mutex.h"
#include "core/scheduler.h"
#include "tools/http_front/http_parser.h"
#include "tools/http_front/job_entry.h"
#include "tools/http_front/jobs.h"

namespace taskrt::http {
namespace {

// Input held ahead of the parser before the connection's receive pauses
// (or max_header_bytes + 1); the chunk that reaches it may go past.
constexpr size_t kInputCap = 64 * 1024;
// One SendAll takes at most this much of the output buffer, so that what
// is pending stays known to within it and its memory is given back as it
// goes.
constexpr size_t kSendBytes = 64 * 1024;
// Sent output is erased from the buffer's front once this much is sent.
constexpr size_t kCompactOutputBytes = 64 * 1024;
// A drained output buffer larger than this gives its memory back.
constexpr size_t kKeptOutputCapacity = 256 * 1024;
// Descriptors kept free for tasks' channels and the server's own.
constexpr size_t kReservedDescriptors = 64;
// How soon accept is tried again after the process ran out of descriptors.
constexpr absl::Duration kAcceptRetry = absl::Milliseconds(10);

// Whether the server's socket operations may still call into it. Their
// callbacks hold it: a server closed off the loop thread cannot cancel
// them (the loop's socket calls are the loop thread's), so they check it
// and do nothing once it is set.
struct IoGuard {
  std::atomic<bool> closed{false};
};

// The socket operations and fds of connections closed off the loop
// thread, for the loop thread to cancel and close (an fd stays open until
// its operations are cancelled, core/event_loop.h). Posted to the loop; if
// the loop never runs it again, the fds close when it destroys the work,
// after its own operations have gone.
struct Orphans {
  EventLoop* loop = nullptr;
  std::vector<IoId> operations;
  std::vector<int> fds;

  Orphans() = default;
  Orphans(const Orphans&) = delete;
  Orphans& operator=(const Orphans&) = delete;
  ~Orphans() {
    for (int fd : fds) close(fd);
  }
  void Release() {
    for (IoId id : operations) loop->CancelIo(id).IgnoreError();
    operations.clear();
    for (int fd : fds) close(fd);
    fds.clear();
  }
};

// Counters shared with the task entries, which may outlive the server.
struct Counters {
  std::atomic<uint64_t> connections_accepted{0};
  std::atomic<uint64_t> requests{0};
  std::atomic<uint64_t> responses_2xx{0};
  std::atomic<uint64_t> responses_4xx{0};
  std::atomic<uint64_t> responses_5xx{0};
  std::atomic<uint64_t> tasks_started{0};
  std::atomic<uint64_t> tasks_finished{0};
  std::atomic<uint64_t> tasks_cancelled{0};
  std::atomic<uint64_t> tasks_refused{0};
  std::atomic<uint64_t> connections_refused{0};
  std::atomic<uint64_t> connections_evicted{0};
  std::atomic<int64_t> output_buffer_bytes{0};

  // What WaitForIdle waits on.
  mutable Mutex mu;
  mutable CondVar idle;
  uint64_t connections_open ABSL_GUARDED_BY(mu) = 0;
  uint64_t tasks_running ABSL_GUARDED_BY(mu) = 0;

  void Add(uint64_t Counters::*field, int64_t delta) ABSL_LOCKS_EXCLUDED(mu) {
    MutexLock lock(&mu);
    this->*field += delta;
    if (connections_open == 0 && tasks_running == 0) idle.SignalAll();
  }
};

// Held by a task's entry closure: the entry counts as running until the
// closure is destroyed, whether it ran or the scheduler dropped it.
struct RunningToken {
  explicit RunningToken(std::shared_ptr<Counters> c) : counters(std::move(c)) {
    counters->Add(&Counters::tasks_running, 1);
  }
  ~RunningToken() { counters->Add(&Counters::tasks_running, -1); }
  RunningToken(const RunningToken&) = delete;
  RunningToken& operator=(const RunningToken&) = delete;
  std::shared_ptr<Counters> counters;
};

const char* StatusText(int status) {
  switch (status) {
    case 200: return "OK";
    case 400: return "Bad Request";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 413: return "Content Too Large";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 503: return "Service Unavailable";
    default: return "Unknown";
  }
}

// Kore's http_state_run: each state returns COMPLETE (the request is done),
// RETRY (wait to be resumed) or CONTINUE (run the state now in fsm_state).
enum class StateResult { kComplete, kRetry, kContinue };
enum RequestState { kStart = 0, kWait = 1 };

// `text` as a label value of the text exposition format: backslash, quote
// and newline escaped.
std::string LabelValue(absl::string_view text) {
  std::string escaped;
  for (char ch : text) {
    if (ch == '\n') {
      escaped += "\\n";
      continue;
    }
    if (ch == '\\' || ch == '"') escaped += '\\';
    escaped += ch;
  }
  return escaped;
}

// The counters in Prometheus's text exposition format (version 0.0.4): the
// server's own, then those of the scheduler its tasks run on and of its
// event loop, each labelled with the backend's name.
std::string PrometheusMetrics(const ServerStats& s, const Scheduler& scheduler,
                              const EventLoop& loop) {
  std::string out;
  auto family = [&](const char* name, const char* type, const char* help) {
    absl::StrAppend(&out, "# HELP ", name, " ", help, "\n# TYPE ", name, " ", type, "\n");
  };
  auto sample = [&](const char* name, absl::string_view labels, uint64_t value) {
    absl::StrAppend(&out, name, labels.empty() ? "" : "{", labels, labels.empty() ? "" : "}", " ",
                    value, "\n");
  };
  auto one = [&](const char* name, const char* type, const char* help, uint64_t value) {
    family(name, type, help);
    sample(name, "", value);
  };
  one("taskrt_http_connections_accepted_total", "counter", "Connections accepted.",
      s.connections_accepted);
  one("taskrt_http_connections_open", "gauge", "Connections open now.", s.connections_open);
  one("taskrt_http_connections_refused_total", "counter",
      "Connections refused at max_connections with none idle.", s.connections_refused);
  one("taskrt_http_connections_evicted_total", "counter",
      "Idle connections closed to make room for new ones.", s.connections_evicted);
  one("taskrt_http_requests_total", "counter", "Requests parsed, good or bad.", s.requests);
  family("taskrt_http_responses_total", "counter", "Responses sent, by status class.");
  sample("taskrt_http_responses_total", "code=\"2xx\"", s.responses_2xx);
  sample("taskrt_http_responses_total", "code=\"4xx\"", s.responses_4xx);
  sample("taskrt_http_responses_total", "code=\"5xx\"", s.responses_5xx);
  one("taskrt_http_tasks_started_total", "counter", "Task entries started.", s.tasks_started);
  one("taskrt_http_tasks_running", "gauge", "Task entries that have not returned yet.",
      s.tasks_running);
  one("taskrt_http_tasks_finished_total", "counter", "Task entries that returned.",
      s.tasks_finished);
  one("taskrt_http_tasks_cancelled_total", "counter",
      "Task entries that stopped early on a cancel.", s.tasks_cancelled);
  one("taskrt_http_tasks_refused_total", "counter", "Jobs answered 503 at max_tasks.",
      s.tasks_refused);
  one("taskrt_http_output_buffer_bytes", "gauge", "Memory held by output buffers.",
      s.output_buffer_bytes);

  const std::string label = absl::StrCat("scheduler=\"", LabelValue(scheduler.name()), "\"");
  const SchedulerMetrics m = scheduler.metrics();
  auto scheduler_one = [&](const char* metric, const char* type, const char* help, uint64_t value) {
    family(metric, type, help);
    sample(metric, label, value);
  };
  scheduler_one("taskrt_scheduler_units_started_total", "counter",
                "Units that began to run, helps included.", m.units_started);
  family("taskrt_scheduler_spawned_total", "counter", "Units accepted, by where they came from.");
  sample("taskrt_scheduler_spawned_total", absl::StrCat(label, ",from=\"inside\""),
         m.spawned_inside);
  sample("taskrt_scheduler_spawned_total", absl::StrCat(label, ",from=\"outside\""),
         m.spawned_outside);
  scheduler_one("taskrt_scheduler_steals_total", "counter",
                "Units taken from another worker's queue.", m.steals);
  scheduler_one("taskrt_scheduler_steal_attempts_total", "counter",
                "Looks into another worker's queue.", m.steal_attempts);
  scheduler_one("taskrt_scheduler_parks_total", "counter",
                "Times a worker slept for want of work.", m.parks);
  scheduler_one("taskrt_scheduler_wakes_total", "counter",
                "Wake-ups sent to sleeping workers.", m.wakes);
  scheduler_one("taskrt_scheduler_helps_total", "counter", "Units run inside a wait.", m.helps);
  scheduler_one("taskrt_scheduler_queue_high_water", "gauge",
                "The most units one queue held at once.", m.queue_high_water);

  const LoopMetrics l = loop.metrics();
  const std::string loop_label = absl::StrCat("loop=\"", LabelValue(loop.name()), "\"");
  auto loop_one = [&](const char* metric, const char* help, uint64_t value) {
    family(metric, "counter", help);
    sample(metric, loop_label, value);
  };
  loop_one("taskrt_loop_iterations_total", "Waits for events, with what ran after each.",
           l.iterations);
  loop_one("taskrt_loop_callbacks_total", "Watch callbacks called.", l.callbacks_run);
  loop_one("taskrt_loop_timers_total", "Timer closures run.", l.timers_run);
  loop_one("taskrt_loop_posted_total", "Posted work run.", l.posted_run);
  loop_one("taskrt_loop_wake_requests_total", "Wake-ups asked of the loop's backend.",
           l.wake_requests);
  loop_one("taskrt_loop_io_started_total", "Socket operations started.", l.io_started);
  return out;
}

class ServerImpl;
struct Connection;

// One request that runs a job: the object bound to the task.
class JobRequest final : public Resumable {
 public:
  JobRequest(ServerImpl* server, Connection* connection, RequestHead head, Job job, bool stream)
      : server_(server), connection_(connection), head_(std::move(head)), job_(job), stream_(stream) {}
  ~JobRequest() override { ReleaseTask(); }
  void Resume() override;
  // Destroys the task (which asks an unfinished one to cancel). A task
  // whose entry runs in another process cannot reach the counters, so the
  // server counts it here, as the local entry counts itself: finished, and
  // cancelled if it stopped early on a cancel or is let go unfinished.
  void ReleaseTask();

  ServerImpl* server_;
  Connection* connection_;
  RequestHead head_;
  Job job_;
  bool stream_;
  int fsm_state_ = kStart;
  std::unique_ptr<Task> task_;
  // Set while a task whose entry runs elsewhere is held: it counts as
  // running until ReleaseTask.
  std::shared_ptr<RunningToken> remote_running_;
  std::string result_;
};

struct Connection {
  uint64_t id = 0;  // unique for the server's life, unlike the fd
  int fd = -1;
  IoId receive = 0;             // the ReceiveEach; 0 once it ended
  bool receive_paused = false;  // held back: input at its cap
  IoId send = 0;                // the SendAll under way, or 0
  size_t sending = 0;           // its bytes
  size_t sending_capacity = 0;  // and their memory
  // The loop timer that checks this connection's deadlines (see
  // ServerImpl::ArmExpiry), and the moment it was armed for.
  TimerId expiry_timer = 0;
  absl::Time expiry_armed_for = absl::InfiniteFuture();
  std::string in;
  std::string out;      // output not handed to a send yet, after out_sent
  size_t out_sent = 0;  // bytes at out's front handed to a send already
  std::shared_ptr<JobRequest> request;  // the request whose task runs, or null
  bool close_after_write = false;
  bool closed = false;
  bool input_ended = false;    // the client sent FIN: answer what it sent, then close
  bool lingering = false;      // answered, sending side shut: discarding input until FIN
  absl::Time last_input;     // when the last request bytes arrived (or accept)
  absl::Time request_start;  // when the first byte of the head now arriving came
  absl::Time last_output;    // when output last left, or was queued into an empty buffer
  absl::Time linger_until;
  size_t counted_output_capacity = 0;  // out.capacity() as the stats know it

  size_t pending_output() const { return sending + out.size() - out_sent; }
};

class ServerImpl final : public Server {
 public:
  ServerImpl(const ServerOptions& options, const TaskEnvironment& env)
      : options_(options),
        env_(env),
        input_cap_(std::max(kInputCap, options.max_header_bytes + 1)),
        counters_(std::make_shared<Counters>()),
        guard_(std::make_shared<IoGuard>()) {}

  ~ServerImpl() override { CloseAll(); }

  void CloseAll() override {
    // Off the loop thread (the loop is not running), the operations are
    // handed to the loop with their fds, and their callbacks do nothing.
    if (!env_.loop->IsLoopThread()) {
      orphans_ = std::make_unique<Orphans>();
      orphans_->loop = env_.loop;
    }
    guard_->closed.store(true, std::memory_order_release);
    CancelTimer(accept_retry_timer_);
    ReleaseIo(listen_fd_, {&accept_io_});
    listen_fd_ = -1;
    std::vector<int> fds;
    for (const auto& [fd, connection] : connections_) fds.push_back(fd);
    for (int fd : fds) Close(*connections_[fd]);
    CancelTimer(free_dead_timer_);  // armed again by the closes above
    dead_.clear();
    if (orphans_ != nullptr && !orphans_->fds.empty()) {
      // If the loop is gone for good, the work is destroyed with it, and
      // closes the fds then.
      env_.loop->Post([orphans = std::move(orphans_)] { orphans->Release(); }).IgnoreError();
    }
    orphans_.reset();
  }

  absl::Status Listen();

  uint16_t port() const override { return port_; }

  ServerStats stats() const override {
    ServerStats s;
    s.connections_accepted = counters_->connections_accepted.load();
    s.requests = counters_->requests.load();
    s.responses_2xx = counters_->responses_2xx.load();
    s.responses_4xx = counters_->responses_4xx.load();
    s.responses_5xx = counters_->responses_5xx.load();
    s.tasks_started = counters_->tasks_started.load();
    s.tasks_finished = counters_->tasks_finished.load();
    s.tasks_cancelled = counters_->tasks_cancelled.load();
    s.tasks_refused = counters_->tasks_refused.load();
    s.connections_refused = counters_->connections_refused.load();
    s.connections_evicted = counters_->connections_evicted.load();
    s.output_buffer_bytes = static_cast<uint64_t>(counters_->output_buffer_bytes.load());
    MutexLock lock(&counters_->mu);
    s.connections_open = counters_->connections_open;
    s.tasks_running = counters_->tasks_running;
    return s;
  }

  bool WaitForIdle(absl::Duration timeout) const override {
    const auto deadline = std::chrono::steady_clock::now() + absl::ToChronoNanoseconds(timeout);
    Counters& c = *counters_;
    MutexLock lock(&c.mu);
    return c.idle.WaitUntil(&c.mu, deadline, [&]() ABSL_NO_THREAD_SAFETY_ANALYSIS {
      return c.connections_open == 0 && c.tasks_running == 0;
    });
  }

  void RunStates(JobRequest& request);

 private:
  // AcceptEach on the listening socket; on failure, tried again soon.
  void StartAccepting();
  void RetryAcceptSoon();
  void OnAccept(absl::StatusOr<int> accepted);
  void OnInput(Connection& c, absl::StatusOr<absl::Span<const char>> data);
  void OnSent(Connection& c, absl::Status status);
  // `handler` of `c` as a socket operation's callback, which does nothing
  // once the server has closed (see IoGuard).
  template <typename Arg>
  std::function<void(Arg)> Guarded(Connection& c, void (ServerImpl::*handler)(Connection&, Arg)) {
    return [this, guard = guard_, connection = &c, handler](Arg arg) {
      if (guard->closed.load(std::memory_order_acquire)) return;
      (this->*handler)(*connection, std::move(arg));
    };
  }
  // Pauses or resumes c's receive: held while its input is at the cap.
  void HoldInput(Connection& c, bool hold);
  // Cancels the operations `ids` point to (zeroing them) and closes `fd`;
  // off the loop thread, hands both to orphans_ instead.
  void ReleaseIo(int fd, std::initializer_list<IoId*> ids);
  // The first moment `c` is due to be cut off in its present state (idle,
  // slow request head, stalled reader, lingering), or InfiniteFuture.
  absl::Time ExpiryOf(const Connection& c) const;
  // Keeps one loop timer per connection no later than ExpiryOf(c). Called
  // after every event that may move the expiry earlier; one that moves it
  // later (more input, say) is found when the timer fires, which then
  // re-arms instead of cutting off: no timer work per read.
  void ArmExpiry(Connection& c);
  void OnExpiry(int fd, uint64_t id);
  void CancelTimer(TimerId& timer);
  // Frees the closed connections (dead_) once the callbacks now on the
  // stack have returned.
  void FreeDeadSoon();
  void Pump(Connection& c);
  void ProcessInput(Connection& c);
  void Dispatch(Connection& c, RequestHead head);
  StateResult StartJob(JobRequest& request);
  StateResult WaitJob(JobRequest& request);

  // Queues a whole response; `close` ends the connection once it is sent.
  void Respond(Connection& c, int status, absl::string_view body, bool close,
               bool head_only = false, absl::string_view content_type = "text/plain",
               absl::string_view extra_headers = "");
  void QueueOutput(Connection& c, absl::string_view bytes);
  // Hands the next part of c's output to a SendAll unless one is under way
  // (its completion continues); with nothing left, ends a connection that
  // closes after its last response.
  void Flush(Connection& c);
  // The end of a connection after its last response: at once if the client
  // has finished sending, else lingering (see server.h).
  void FinishConnection(Connection& c);
  // Abortive: now, with whatever is unsent.
  void Close(Connection& c);
  void CountOutputMemory(Connection& c);
  // Makes room for one more connection at the cap; false if none is idle.
  bool EvictIdleConnection();
  void RefuseConnection(int fd);
  void Count(int status);

  const ServerOptions options_;
  const TaskEnvironment env_;
  const size_t input_cap_;  // > max_header_bytes, so a full buffer always parses or fails
  size_t connection_cap_ = 0;  // max_connections, kept below the open-file limit
  std::shared_ptr<Counters> counters_;
  std::shared_ptr<IoGuard> guard_;
  // Set during a CloseAll off the loop thread.
  std::unique_ptr<Orphans> orphans_;
  int listen_fd_ = -1;
  uint16_t port_ = 0;
  IoId accept_io_ = 0;
  // Starts accepting again after the process ran out of descriptors or
  // memory, which ends the AcceptEach.
  TimerId accept_retry_timer_ = 0;
  TimerId free_dead_timer_ = 0;
  uint64_t next_connection_id_ = 1;
  absl::flat_hash_map<int, std::unique_ptr<Connection>> connections_;
  // Closed connections, freed by a zero-delay timer or with the server: a
  // callback of theirs may still be on the stack when they close.
  std::vector<std::unique_ptr<Connection>> dead_;
};

void JobRequest::Resume() { server_->RunStates(*this); }

void JobRequest::ReleaseTask() {
  if (task_ != nullptr && remote_running_ != nullptr) {
    Counters& counters = *remote_running_->counters;
    const absl::StatusOr<int> result = task_->result();  // an error until finished
    if (!result.ok() || (*result == 2 && task_->cancel_requested())) {
      counters.tasks_cancelled.fetch_add(1);
    }
    counters.tasks_finished.fetch_add(1);
  }
  task_.reset();
  remote_running_.reset();
}

absl::Status ParseListen(const std::string& listen, sockaddr_in& address) {
  std::pair<std::string, std::string> host_port = absl::StrSplit(listen, absl::MaxSplits(':', 1));
  int port = 0;
  std::memset(&address, 0, sizeof address);
  address.sin_family = AF_INET;
  if (!absl::SimpleAtoi(host_port.second, &port) || port < 0 || port > 65535 ||
      inet_pton(AF_INET, host_port.first.c_str(), &address.sin_addr) != 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "listen address \"", listen, "\" is not IPV4:PORT (for example 127.0.0.1:8080)"));
  }
  address.sin_port = htons(static_cast<uint16_t>(port));
  return absl::OkStatus();
}

absl::Status ServerImpl::Listen() {
  sockaddr_in address;
  if (absl::Status status = ParseListen(options_.listen, address); !status.ok()) return status;
  listen_fd_ = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (listen_fd_ < 0) return ErrnoError("socket", errno);
  const int one = 1;
  setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (bind(listen_fd_, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0) {
    return ErrnoError(absl::StrCat("bind ", options_.listen), errno);
  }
  if (listen(listen_fd_, 4096) != 0) return ErrnoError("listen", errno);
  connection_cap_ = options_.max_connections;
  if (rlimit limit{}; getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur != RLIM_INFINITY) {
    // Each running task holds its channel's descriptors (up to four).
    const size_t reserved = kReservedDescriptors + 4 * options_.max_tasks;
    const size_t usable = limit.rlim_cur > reserved ? limit.rlim_cur - reserved : 1;
    connection_cap_ = std::min(connection_cap_, usable);
  }
  socklen_t length = sizeof address;
  getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&address), &length);
  port_ = ntohs(address.sin_port);

  // Started on the loop thread: from here when this is it, else posted.
  if (env_.loop->IsLoopThread()) {
    StartAccepting();
    return absl::OkStatus();
  }
  return env_.loop->Post([this, guard = guard_] {
    if (!guard->closed.load(std::memory_order_acquire)) StartAccepting();
  });
}

void ServerImpl::StartAccepting() {
  absl::StatusOr<IoId> accept =
      env_.loop->AcceptEach(listen_fd_, [this, guard = guard_](absl::StatusOr<int> accepted) {
        if (guard->closed.load(std::memory_order_acquire)) {
          if (accepted.ok()) close(*accepted);
          return;
        }
        OnAccept(std::move(accepted));
      });
  if (accept.ok()) {
    accept_io_ = *accept;
  } else {
    RetryAcceptSoon();
  }
}

void ServerImpl::RetryAcceptSoon() {
  if (accept_retry_timer_ != 0 || listen_fd_ < 0) return;
  absl::StatusOr<TimerId> retry = env_.loop->RunAfter(kAcceptRetry, [this] {
    accept_retry_timer_ = 0;
    StartAccepting();
  });
  if (retry.ok()) accept_retry_timer_ = *retry;
}

void ServerImpl::OnAccept(absl::StatusOr<int> accepted) {
  if (!accepted.ok()) {
    // Out of descriptors or memory, which ends the AcceptEach: the
    // connections wait in the backlog until it starts again.
    accept_io_ = 0;
    RetryAcceptSoon();
    return;
  }
  const int fd = *accepted;
  if (connections_.size() >= connection_cap_ && !EvictIdleConnection()) {
    RefuseConnection(fd);
    return;
  }
  const int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (options_.send_buffer_bytes > 0) {
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &options_.send_buffer_bytes,
               sizeof options_.send_buffer_bytes);
  }
  auto connection = std::make_unique<Connection>();
  Connection& c = *connection;
  c.id = next_connection_id_++;
  c.fd = fd;
  c.last_input = c.last_output = absl::Now();
  absl::StatusOr<IoId> receive =
      env_.loop->ReceiveEach(fd, Guarded<absl::StatusOr<absl::Span<const char>>>(c, &ServerImpl::OnInput));
  if (!receive.ok()) {
    close(fd);
    return;
  }
  c.receive = *receive;
  connections_[fd] = std::move(connection);
  counters_->connections_accepted.fetch_add(1);
  counters_->Add(&Counters::connections_open, 1);
  ArmExpiry(c);
}

absl::Time ServerImpl::ExpiryOf(const Connection& c) const {
  if (c.closed) return absl::InfiniteFuture();
  if (c.lingering) return c.linger_until;
  if (c.request != nullptr || c.close_after_write) {
    // A job runs (or a last response is on its way): only a reader that
    // stalls its output is cut off.
    return c.pending_output() > 0 ? c.last_output + options_.idle_timeout : absl::InfiniteFuture();
  }
  // From the head's first byte: trickling bytes does not extend it.
  if (!c.in.empty()) return c.request_start + options_.request_timeout;
  return c.last_input + options_.idle_timeout;
}

void ServerImpl::ArmExpiry(Connection& c) {
  const absl::Time expiry = ExpiryOf(c);
  if (c.expiry_timer != 0) {
    if (c.expiry_armed_for <= expiry) return;  // fires first, and re-checks
    CancelTimer(c.expiry_timer);
  }
  if (expiry == absl::InfiniteFuture()) return;
  absl::StatusOr<TimerId> timer =
      env_.loop->RunAt(expiry, [this, fd = c.fd, id = c.id] { OnExpiry(fd, id); });
  if (!timer.ok()) return;  // kept alive until its next event re-arms it
  c.expiry_timer = *timer;
  c.expiry_armed_for = expiry;
}

void ServerImpl::OnExpiry(int fd, uint64_t id) {
  auto it = connections_.find(fd);
  if (it == connections_.end() || it->second->id != id) return;  // closed since
  Connection& c = *it->second;
  c.expiry_timer = 0;
  if (absl::Now() < ExpiryOf(c)) {
    ArmExpiry(c);  // activity since it was armed moved the expiry later
    return;
  }
  if (!c.lingering && c.request == nullptr && !c.close_after_write && !c.in.empty()) {
    Respond(c, 408, "the request did not arrive in time\n", /*close=*/true);
  } else {
    Close(c);
  }
  if (!c.closed) ArmExpiry(c);
}

void ServerImpl::CancelTimer(TimerId& timer) {
  if (timer == 0) return;
  env_.loop->Cancel(timer).IgnoreError();  // on the loop thread: it has not run
  timer = 0;
}

void ServerImpl::FreeDeadSoon() {
  if (free_dead_timer_ != 0) return;
  absl::StatusOr<TimerId> timer = env_.loop->RunAfter(absl::ZeroDuration(), [this] {
    free_dead_timer_ = 0;
    dead_.clear();
  });
  if (timer.ok()) free_dead_timer_ = *timer;
}

void ServerImpl::OnInput(Connection& c, absl::StatusOr<absl::Span<const char>> data) {
  if (!data.ok()) {
    // A reset or an error: a running job is cancelled with its Task.
    c.receive = 0;
    Close(c);
    return;
  }
  if (data->empty()) {
    // FIN: the client may still read. What it sent is answered (a running
    // job included), then the connection closes.
    c.receive = 0;
    c.input_ended = true;
    if (c.lingering) {
      Close(c);  // what lingering waited for
      return;
    }
    Pump(c);
    if (!c.closed) ArmExpiry(c);
    return;
  }
  if (c.lingering) {
    // Discarded; lingering ends at the client's FIN or at linger_until.
    if (absl::Now() > c.linger_until) Close(c);
    return;
  }
  c.last_input = absl::Now();
  if (c.in.empty()) c.request_start = c.last_input;
  c.in.append(data->data(), data->size());
  Pump(c);
  if (!c.closed) ArmExpiry(c);
}

void ServerImpl::Pump(Connection& c) {
  if (c.closed || c.lingering) return;  // answered for good: input is discarded
  ProcessInput(c);
  if (c.closed) return;
  if (c.request == nullptr && !c.close_after_write && c.input_ended) {
    // Every whole request the client sent is answered; a partial one never
    // will be.
    c.close_after_write = true;
    Flush(c);
    return;
  }
  // At most input_cap_ bytes ahead of what has been parsed (the parser
  // stops only for a running job or a last response), so a client that
  // pipelines faster than it reads its answers is held back by TCP rather
  // than by our memory. A finished job pumps again, which resumes.
  HoldInput(c, c.in.size() >= input_cap_);
}

void ServerImpl::HoldInput(Connection& c, bool hold) {
  if (c.closed || c.receive == 0 || c.receive_paused == hold) return;
  const absl::Status status =
      hold ? env_.loop->PauseReceive(c.receive) : env_.loop->ResumeReceive(c.receive);
  if (!status.ok()) {
    Close(c);  // not expected: the receive is live
    return;
  }
  c.receive_paused = hold;
}

void ServerImpl::ProcessInput(Connection& c) {
  while (!c.closed && c.request == nullptr && !c.close_after_write && !c.in.empty()) {
    ParseResult parsed = ParseRequestHead(c.in, options_.max_header_bytes);
    if (parsed.kind == ParseResult::Kind::kIncomplete) return;
    counters_->requests.fetch_add(1);
    if (parsed.kind == ParseResult::Kind::kError) {
      Respond(c, parsed.status, parsed.reason + "\n", /*close=*/true);
      return;
    }
    c.in.erase(0, parsed.consumed);
    if (!c.in.empty()) c.request_start = absl::Now();  // the next head's clock
    Dispatch(c, std::move(parsed.head));
  }
}

// Parses a whole number in [0, max] into `out`, or says what is wrong.
std::string ParseSize(const std::vector<std::pair<std::string, std::string>>& params,
                      absl::string_view key, uint64_t max, uint64_t& out) {
  const std::string* value = QueryParam(params, key);
  if (value == nullptr) return absl::StrCat("missing query parameter \"", key, "\"");
  if (!absl::SimpleAtoi(*value, &out) || value->empty() || (*value)[0] == '+' || (*value)[0] == '-') {
    return absl::StrCat("\"", key, "\" must be a whole number");
  }
  if (out > max) return absl::StrCat("\"", key, "\" must be at most ", max);
  return "";
}

void ServerImpl::Dispatch(Connection& c, RequestHead head) {
  const bool keep_alive = head.KeepAlive();
  const bool head_only = head.method == "HEAD";
  if (head.HasBody()) {
    Respond(c, 413, "requests here take no body\n", /*close=*/true);
    return;
  }
  if (head.method != "GET" && !head_only) {
    Respond(c, 405, absl::StrCat("method ", head.method, " is not allowed; use GET or HEAD\n"),
            !keep_alive, /*head_only=*/false, "text/plain", "Allow: GET, HEAD\r\n");
    return;
  }
  const std::vector<std::pair<std::string, std::string>> params = ParseQuery(head.query);
  for (size_t i = 0; i < params.size(); ++i) {
    for (size_t j = 0; j < i; ++j) {
      if (params[j].first != params[i].first) continue;
      // Which one counts is a guess a proxy in front may make differently.
      Respond(c, 400, absl::StrCat("query parameter \"", params[i].first, "\" is given twice\n"),
              /*close=*/true, head_only);
      return;
    }
  }
  if (head.path == "/") {
    Respond(c, 200,
            "GET /primes?below=N[&stream=1] | /hash?mib=N[&stream=1] | /stats | /metrics\n",
            !keep_alive,
            head_only);
    return;
  }
  if (head.path == "/metrics") {
    Respond(c, 200, PrometheusMetrics(stats(), *env_.scheduler, *env_.loop), !keep_alive, head_only,
            "text/plain; version=0.0.4; charset=utf-8");
    return;
  }
  if (head.path == "/stats") {
    const ServerStats s = stats();
    Respond(c, 200,
            absl::StrCat("{\"connections_accepted\": ", s.connections_accepted,
                         ", \"connections_open\": ", s.connections_open, ", \"requests\": ", s.requests,
                         ", \"responses_2xx\": ", s.responses_2xx, ", \"responses_4xx\": ",
                         s.responses_4xx, ", \"responses_5xx\": ", s.responses_5xx,
                         ", \"tasks_started\": ", s.tasks_started, ", \"tasks_finished\": ",
                         s.tasks_finished, ", \"tasks_running\": ",
                         s.tasks_running, ", \"tasks_cancelled\": ", s.tasks_cancelled,
                         ", \"tasks_refused\": ", s.tasks_refused, ", \"connections_refused\": ",
                         s.connections_refused, ", \"connections_evicted\": ", s.connections_evicted,
                         ", \"output_buffer_bytes\": ", s.output_buffer_bytes, "}\n"),
            !keep_alive, head_only, "application/json");
    return;
  }
  Job job;
  std::string error;
  const char* size_key;
  if (head.path == "/primes") {
    job.kind = JobKind::kPrimes;
    size_key = "below";
    error = ParseSize(params, size_key, options_.max_primes_below, job.size);
  } else if (head.path == "/hash") {
    job.kind = JobKind::kHash;
    size_key = "mib";
    error = ParseSize(params, size_key, options_.max_hash_mib, job.size);
  } else {
    Respond(c, 404, absl::StrCat("no such path: ", head.path, "\n"), !keep_alive, head_only);
    return;
  }
  bool stream = false;
  for (const auto& [key, value] : params) {
    if (!error.empty()) break;
    if (key == size_key) continue;
    if (key == "stream" && (value == "0" || value == "1")) {
      stream = value == "1";
    } else if (key == "stream") {
      error = "\"stream\" must be 0 or 1";
    } else {
      error = absl::StrCat("unknown query parameter \"", key, "\"");
    }
  }
  if (error.empty() && stream && head.minor_version == 0) error = "stream=1 needs HTTP/1.1 (chunked)";
  if (!error.empty()) {
    Respond(c, 400, error + "\n", !keep_alive, head_only);
    return;
  }
  if (options_.run_jobs_inline && !stream) {
    const std::optional<uint64_t> result =
        RunJobSteps(job, [](uint64_t, uint64_t) { return true; });
    Respond(c, 200, FormatResult(job, *result) + "\n", !keep_alive, head_only);
    return;
  }
  uint64_t running;
  {
    MutexLock lock(&counters_->mu);
    running = counters_->tasks_running;
  }
  if (running >= options_.max_tasks) {
    counters_->tasks_refused.fetch_add(1);
    Respond(c, 503,
            absl::StrCat(running, " jobs are running, the most this server takes; retry later\n"),
            !keep_alive, head_only, "text/plain", "Retry-After: 1\r\n");
    return;
  }
  c.request = std::make_shared<JobRequest>(this, &c, std::move(head), job, stream);
  RunStates(*c.request);
}

void ServerImpl::RunStates(JobRequest& request) {
  // Keeps the request alive while its states run: completing it drops the
  // connection's reference.
  std::shared_ptr<JobRequest> keep = request.connection_->request;
  if (keep.get() != &request || request.connection_->closed) return;
  while (true) {
    const StateResult result = request.fsm_state_ == kStart ? StartJob(request) : WaitJob(request);
    if (result == StateResult::kContinue) continue;
    if (result == StateResult::kRetry) {
      // Progress may have queued output that a stalled reader leaves unsent.
      if (!request.connection_->closed) ArmExpiry(*request.connection_);
      return;
    }
    break;
  }
  // Complete: serve what is pipelined behind it; a head that came in part
  // during the job is timed from now.
  Connection& c = *request.connection_;
  c.request = nullptr;
  if (!c.in.empty()) c.request_start = absl::Now();
  Pump(c);
  if (!c.closed) ArmExpiry(c);
}

StateResult ServerImpl::StartJob(JobRequest& request) {
  Connection& c = *request.connection_;
  const bool keep_alive = request.head_.KeepAlive();
  const bool head_only = request.head_.method == "HEAD";
  const Job job = request.job_;
  // A scheduler that runs entries in worker processes takes the named
  // entry, which reads its job from the first message (job_entry.h).
  const bool remote = env_.scheduler->capabilities().runs_named_entries_elsewhere;
  auto token = std::make_shared<RunningToken>(counters_);
  absl::StatusOr<std::unique_ptr<Task>> task;
  if (remote) {
    task = Task::CreateNamed(kJobEntryName);
  } else {
    task = Task::Create([job, token](TaskContext& self) {
      const int result = RunJob(self, job);
      if (result == 2 && self.cancel_requested()) token->counters->tasks_cancelled.fetch_add(1);
      token->counters->tasks_finished.fetch_add(1);
      return result;
    });
    token.reset();  // the entry's closure holds it now
  }
  absl::Status status = task.status();
  if (status.ok()) status = (*task)->BindRequest(c.request);
  if (status.ok()) status = (*task)->Run(env_);
  // Does not wait: a fresh task's window is empty.
  if (status.ok() && remote) status = (*task)->Write(JobDescription(job));
  if (!status.ok()) {
    // Out of descriptors or memory for the channel, or the scheduler refused.
    Respond(c, 503, absl::StrCat("cannot start the task: ", status.ToString(), "\n"), !keep_alive,
            head_only);
    return StateResult::kComplete;
  }
  counters_->tasks_started.fetch_add(1);
  request.task_ = *std::move(task);
  request.remote_running_ = std::move(token);  // null for a local task
  if (request.stream_) {
    QueueOutput(c, absl::StrCat("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n",
                                head_only ? "" : "Transfer-Encoding: chunked\r\n",
                                keep_alive ? "" : "Connection: close\r\n", "\r\n"));
    Count(200);
  }
  request.fsm_state_ = kWait;
  return StateResult::kRetry;
}

std::string Chunk(absl::string_view data) { return absl::StrCat(absl::Hex(data.size()), "\r\n", data, "\r\n"); }

StateResult ServerImpl::WaitJob(JobRequest& request) {
  Connection& c = *request.connection_;
  Task& task = *request.task_;
  const bool head_only = request.head_.method == "HEAD";
  char message[128];
  while (true) {
    absl::StatusOr<size_t> n = task.TryRead(absl::MakeSpan(message));
    if (!n.ok()) break;  // WouldBlock, or kOutOfRange once finished and drained
    absl::string_view text(message, std::min(*n, sizeof message));
    if (absl::ConsumePrefix(&text, "r ")) {
      request.result_ = std::string(text);
    } else if (absl::ConsumePrefix(&text, "p ") && request.stream_ && !head_only) {
      std::pair<absl::string_view, absl::string_view> done_total = absl::StrSplit(text, ' ');
      QueueOutput(c, Chunk(absl::StrCat("progress ", done_total.first, "/", done_total.second, "\n")));
    }
    if (c.closed) return StateResult::kComplete;
  }
  if (!task.finished()) return StateResult::kRetry;
  const bool keep_alive = request.head_.KeepAlive();
  if (request.stream_) {
    // The status line went out already; a failed job ends the stream early.
    if (!head_only) {
      if (!request.result_.empty()) QueueOutput(c, Chunk(absl::StrCat("result ", request.result_, "\n")));
      QueueOutput(c, "0\r\n\r\n");
    }
    if (request.result_.empty() || !keep_alive) {
      c.close_after_write = true;
      Flush(c);
    }
  } else if (request.result_.empty()) {
    Respond(c, 500, "the task ended without a result\n", /*close=*/!keep_alive, head_only);
  } else {
    Respond(c, 200, request.result_ + "\n", !keep_alive, head_only);
  }
  request.ReleaseTask();
  return StateResult::kComplete;
}

void ServerImpl::Count(int status) {
  if (status < 300) {
    counters_->responses_2xx.fetch_add(1);
  } else if (status < 500) {
    counters_->responses_4xx.fetch_add(1);
  } else {
    counters_->responses_5xx.fetch_add(1);
  }
}

void ServerImpl::Respond(Connection& c, int status, absl::string_view body, bool close,
                         bool head_only, absl::string_view content_type,
                         absl::string_view extra_headers) {
  Count(status);
  QueueOutput(c, absl::StrCat("HTTP/1.1 ", status, " ", StatusText(status), "\r\nContent-Type: ",
                              content_type, "\r\nContent-Length: ", body.size(), "\r\n",
                              extra_headers, close ? "Connection: close\r\n" : "", "\r\n",
                              head_only ? "" : body));
  if (close) c.close_after_write = true;
  Flush(c);
}

void ServerImpl::QueueOutput(Connection& c, absl::string_view bytes) {
  if (c.closed) return;
  if (c.pending_output() == 0) c.last_output = absl::Now();
  c.out.append(bytes.data(), bytes.size());
  Flush(c);
  if (!c.closed && c.pending_output() > options_.max_pending_output) Close(c);  // a reader that reads nothing
}

void ServerImpl::Flush(Connection& c) {
  if (c.closed || c.send != 0) return;
  if (c.pending_output() == 0) {
    c.out.clear();
    c.out_sent = 0;
    if (c.out.capacity() > kKeptOutputCapacity) c.out.shrink_to_fit();
    CountOutputMemory(c);
    if (c.close_after_write) FinishConnection(c);
    return;
  }
  const size_t size = std::min(c.out.size() - c.out_sent, kSendBytes);
  std::string bytes;
  if (c.out_sent == 0 && size == c.out.size()) {
    bytes.swap(c.out);  // all of it, without a copy
  } else {
    // A slow reader: erase what was handed over as it goes, so the buffer
    // holds about what is pending, not everything since it last drained.
    bytes.assign(c.out, c.out_sent, size);
    c.out_sent += size;
    if (c.out_sent >= kCompactOutputBytes) {
      c.out.erase(0, c.out_sent);
      c.out_sent = 0;
    }
  }
  c.sending = size;
  c.sending_capacity = bytes.capacity();
  absl::StatusOr<IoId> send =
      env_.loop->SendAll(c.fd, std::move(bytes), Guarded<absl::Status>(c, &ServerImpl::OnSent));
  if (!send.ok()) {
    Close(c);
    return;
  }
  c.send = *send;
  CountOutputMemory(c);
}

void ServerImpl::OnSent(Connection& c, absl::Status status) {
  c.send = 0;
  c.sending = 0;
  c.sending_capacity = 0;
  if (!status.ok()) {
    Close(c);  // EPIPE, ECONNRESET: the client is gone
    return;
  }
  c.last_output = absl::Now();
  Flush(c);
  if (!c.closed) ArmExpiry(c);
}

void ServerImpl::CountOutputMemory(Connection& c) {
  const size_t capacity = c.closed ? 0 : c.out.capacity() + c.sending_capacity;
  counters_->output_buffer_bytes.fetch_add(static_cast<int64_t>(capacity) -
                                           static_cast<int64_t>(c.counted_output_capacity));
  c.counted_output_capacity = capacity;
}

void ServerImpl::FinishConnection(Connection& c) {
  if (c.closed || c.lingering) return;
  if (c.input_ended) {
    Close(c);  // the client has sent all it will
    return;
  }
  // The client may still be sending (pipelined requests behind an error,
  // say): closing now with its bytes unread makes the kernel reset the
  // connection, and the reset can destroy the answers still on their way.
  // Send FIN, then read and discard until the client's FIN or the timeout.
  // Nothing is being sent: the output is all out.
  shutdown(c.fd, SHUT_WR);
  c.lingering = true;
  c.linger_until = absl::Now() + options_.linger_timeout;
  c.request = nullptr;
  c.in.clear();
  c.in.shrink_to_fit();
  ArmExpiry(c);
  HoldInput(c, false);
}

bool ServerImpl::EvictIdleConnection() {
  Connection* oldest = nullptr;
  for (const auto& [fd, c] : connections_) {
    const bool idle = c->request == nullptr && c->in.empty() && c->pending_output() == 0 &&
                      !c->close_after_write;
    if ((idle || c->lingering) && (oldest == nullptr || c->last_input < oldest->last_input)) {
      oldest = c.get();
    }
  }
  if (oldest == nullptr) return false;
  counters_->connections_evicted.fetch_add(1);
  Close(*oldest);
  return true;
}

void ServerImpl::RefuseConnection(int fd) {
  counters_->connections_refused.fetch_add(1);
  Count(503);
  static constexpr char kRefusal[] =
      "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: 28\r\n"
      "Retry-After: 1\r\nConnection: close\r\n\r\ntoo many connections; retry\n";
  // Best effort: a new socket's buffer takes it whole, or the client misses
  // it. What the client sent already is read first, so that the close is a
  // FIN rather than a reset that could destroy the answer.
  [[maybe_unused]] ssize_t sent = send(fd, kRefusal, sizeof kRefusal - 1, MSG_DONTWAIT | MSG_NOSIGNAL);
  shutdown(fd, SHUT_WR);
  char buffer[4096];
  while (recv(fd, buffer, sizeof buffer, MSG_DONTWAIT) > 0) {
  }
  close(fd);
}

void ServerImpl::Close(Connection& c) {
  if (c.closed) return;
  c.closed = true;
  CountOutputMemory(c);
  CancelTimer(c.expiry_timer);
  shutdown(c.fd, SHUT_WR);
  ReleaseIo(c.fd, {&c.receive, &c.send});
  // Destroying the Task asks its entry to cancel; the entry frees itself.
  c.request = nullptr;
  auto it = connections_.find(c.fd);
  dead_.push_back(std::move(it->second));
  connections_.erase(it);
  FreeDeadSoon();
  counters_->Add(&Counters::connections_open, -1);
}

void ServerImpl::ReleaseIo(int fd, std::initializer_list<IoId*> ids) {
  if (fd < 0) return;
  bool orphaned = false;
  for (IoId* id : ids) {
    if (*id == 0) continue;
    if (orphans_ != nullptr) {
      orphans_->operations.push_back(*id);
      orphaned = true;
    } else {
      env_.loop->CancelIo(*id).IgnoreError();  // live: it is cancelled
    }
    *id = 0;
  }
  if (orphaned) {
    orphans_->fds.push_back(fd);
  } else {
    close(fd);
  }
}

}  // namespace

absl::Status RaiseOpenFileLimit() {
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) != 0) return ErrnoError("getrlimit(RLIMIT_NOFILE)", errno);
  if (limit.rlim_cur == limit.rlim_max) return absl::OkStatus();
  limit.rlim_cur = limit.rlim_max;
  if (setrlimit(RLIMIT_NOFILE, &limit) != 0) {
    return ErrnoError(absl::StrCat("setrlimit(RLIMIT_NOFILE, ", limit.rlim_max, ")"), errno);
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<Server>> Server::Start(const ServerOptions& options,
                                                      const TaskEnvironment& env) {
  if (env.scheduler == nullptr || env.loop == nullptr) {
    return absl::InvalidArgumentError("Server::Start: the environment needs a scheduler and a loop");
  }
  if (env.scheduler->capabilities().runs_named_entries_elsewhere) {
    if (absl::Status registered = RegisterHttpFrontEntries(); !registered.ok()) return registered;
  } else if (env.channels == nullptr) {
    return absl::InvalidArgumentError(
        "Server::Start: the environment needs channels for a scheduler that runs tasks here");
  }
  if (options.max_header_bytes < 64 || options.idle_timeout <= absl::ZeroDuration() ||
      options.request_timeout <= absl::ZeroDuration() ||
      options.linger_timeout < absl::ZeroDuration() || options.max_pending_output == 0 ||
      options.max_connections == 0 || options.max_tasks == 0) {
    return absl::InvalidArgumentError(
        "Server::Start: max_header_bytes must be at least 64; the timeouts, max_pending_output, "
        "max_connections and max_tasks positive (linger_timeout may be zero)");
  }
  auto server = std::make_unique<ServerImpl>(options, env);
  if (absl::Status status = server->Listen(); !status.ok()) return status;
  return server;
}

}  // namespace taskrt::http
