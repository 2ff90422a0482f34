// The worker side of nats_workers: pulls jobs, runs their entries, and is
// the task's end of each task's channel. Protocol: nats_workers.h, wire.h.

#include <nats/nats.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/channel.h"
#include "core/channel_counters.h"
#include "core/entry_registry.h"
#include "core/errors.h"
#include "core/mutex.h"
#include "core/task.h"
#include "platform/nats/broker.h"
#include "platform/nats/connection.h"
#include "schedulers/nats_workers/nats_workers.h"
#include "schedulers/nats_workers/wire.h"

namespace taskrt {
namespace {

namespace wire = nats_workers_wire;
using nats_platform::Connection;
using nats_platform::MessagePtr;
using nats_platform::NatsError;
using nats_platform::WaitPoint;

constexpr int64_t kHelloTimeoutMs = 5000;
constexpr int64_t kFetchTimeoutMs = 1000;
constexpr int64_t kFlushTimeoutMs = 10000;
// A job whose owner does not answer is delivered this many times, kRetryDelayMs
// apart, before it is dropped.
constexpr uint32_t kDeliveriesToAnAbsentOwner = 10;
constexpr int64_t kRetryDelayMs = 500;

// The worker's side of one attempt at a task, shared with its
// subscription's delivery thread.
class AttemptState {
 public:
  explicit AttemptState(uint64_t window) : credit_(window), window_(window) {}

  absl::Status Open() {
    MutexLock lock(&mutex_);
    if (absl::Status opened = receive_.Open(); !opened.ok()) return opened;
    return send_.Open();
  }

  static void OnMessage(natsConnection*, natsSubscription*, natsMsg* raw, void* closure) {
    MessagePtr message(raw);
    (*static_cast<std::shared_ptr<AttemptState>*>(closure))->Take(wire::DataOf(message.get()));
  }
  static void OnComplete(void* closure) {
    auto* holder = static_cast<std::shared_ptr<AttemptState>*>(closure);
    (*holder)->Abandon("the subscription ended: connection to the broker lost");
    delete holder;
  }

  // The attempt cannot go on (the connection dropped, the owner said
  // stop): every call fails from now on, the entry is asked to cancel,
  // and the job is left for another delivery.
  void Abandon(absl::string_view why) {
    MutexLock lock(&mutex_);
    if (closing_ || !failure_.ok()) return;
    failure_ = absl::UnavailableError(absl::StrCat("nats_workers: attempt abandoned: ", why));
    cancel_.store(true, std::memory_order_release);
    receive_.Signal();
    send_.Signal();
  }

  bool abandoned() {
    MutexLock lock(&mutex_);
    return !failure_.ok();
  }
  const std::atomic<bool>* cancel() const { return &cancel_; }

  void BeginClosing() {
    MutexLock lock(&mutex_);
    closing_ = true;
  }

  // For the end's calls, under the lock.
  Mutex mutex_;
  WaitPoint receive_ ABSL_GUARDED_BY(mutex_);
  WaitPoint send_ ABSL_GUARDED_BY(mutex_);
  std::deque<std::string> pulled_ ABSL_GUARDED_BY(mutex_);
  uint64_t next_index_ ABSL_GUARDED_BY(mutex_) = 0;  // the owner's message to pull next
  bool pull_outstanding_ ABSL_GUARDED_BY(mutex_) = false;
  uint64_t credit_ ABSL_GUARDED_BY(mutex_);
  bool peer_closed_ ABSL_GUARDED_BY(mutex_) = false;
  absl::Status failure_ ABSL_GUARDED_BY(mutex_);
  absl::Status protocol_error_ ABSL_GUARDED_BY(mutex_);

 private:
  void Take(absl::string_view bytes) {
    const std::optional<wire::Parsed> parsed = wire::Parse(bytes);
    MutexLock lock(&mutex_);
    if (!parsed.has_value()) return Reject("a message too short for its header");
    absl::string_view rest = parsed->rest;
    switch (parsed->kind) {
      case wire::kCredit: {
        uint64_t credit = 0;
        if (!wire::TakeU64(rest, credit) || !rest.empty() || credit > window_ - credit_) {
          return Reject("credit the worker never had outstanding");
        }
        credit_ += credit;
        send_.Wake();
        return;
      }
      case wire::kCancel:
        cancel_.store(true, std::memory_order_release);
        return;
      case wire::kClose:
        peer_closed_ = true;
        cancel_.store(true, std::memory_order_release);
        receive_.Signal();
        send_.Signal();
        return;
      case wire::kMore:
      case wire::kLast: {
        uint64_t index = 0;
        if (!wire::TakeU64(rest, index)) return Reject("a piece without its index");
        if (index != next_index_ || !pull_outstanding_) return;  // not the one asked for
        assembling_.append(rest.data(), rest.size());
        if (parsed->kind == wire::kMore) return;
        pulled_.push_back(std::move(assembling_));
        assembling_.clear();
        ++next_index_;
        pull_outstanding_ = false;
        receive_.Wake();
        return;
      }
      default:
        return Reject(absl::StrCat("a message of unknown kind '", absl::string_view(&parsed->kind, 1),
                                   "'"));
    }
  }

  void Reject(absl::string_view what) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_) {
    protocol_error_ =
        absl::DataLossError(absl::StrCat("nats_workers: ", what, " on the worker's subject"));
    receive_.Wake();
    send_.Wake();
  }

  const uint64_t window_;
  std::atomic<bool> cancel_{false};
  bool closing_ ABSL_GUARDED_BY(mutex_) = false;
  std::string assembling_ ABSL_GUARDED_BY(mutex_);
};

// The task's end of the channel, in the worker.
class TaskEnd final : public ChannelEnd {
 public:
  TaskEnd(std::shared_ptr<Connection> connection, std::shared_ptr<AttemptState> state,
          natsSubscription* subscription, std::string subject, std::string owner_subject,
          uint32_t attempt, const wire::Job& job)
      : connection_(std::move(connection)),
        state_(std::move(state)),
        subscription_(subscription),
        subject_(std::move(subject)),
        owner_subject_(std::move(owner_subject)),
        attempt_(attempt),
        max_message_size_(job.max_message_size),
        max_piece_(std::min<uint64_t>(connection_->max_payload() - wire::kHeaderSize - 8,
                                      job.window / 2 - wire::kPieceOverhead)) {}
  ~TaskEnd() override { Close(); }

  const std::shared_ptr<AttemptState>& state() const { return state_; }
  // Where this end listens.
  const std::string& subject() const { return subject_; }

  ChannelMetrics metrics() const override { return counters_.Snapshot(); }

  absl::Status TrySend(absl::Span<const char> message) override {
    if (closed_) return absl::FailedPreconditionError("nats_workers: this end is closed");
    if (message.size() > max_message_size_) {
      return absl::ResourceExhaustedError(absl::StrCat("nats_workers: message of ", message.size(),
                                                       " bytes is over the maximum of ",
                                                       max_message_size_));
    }
    if (held_.has_value()) {
      absl::Status pushed = PushHeld();
      if (!pushed.ok()) return pushed;
    }
    if (absl::Status usable = Usable(); !usable.ok()) return usable;
    if (message.size() <= max_piece_) {
      // One piece goes whole or waits whole.
      MutexLock lock(&state_->mutex_);
      if (message.size() + wire::kPieceOverhead > state_->credit_) return Blocked();
      if (absl::Status sent = PublishPiece(absl::string_view(message.data(), message.size()), /*last=*/true);
          !sent.ok()) {
        return sent;
      }
      state_->credit_ -= message.size() + wire::kPieceOverhead;
      ++written_;
      counters_.Sent(message.size());
      return absl::OkStatus();
    }
    held_.emplace(message.data(), message.size());
    held_offset_ = 0;
    counters_.Sent(message.size());
    absl::Status pushed = PushHeld();
    return IsWouldBlock(pushed) ? absl::OkStatus() : pushed;
  }

  absl::Status TryFlush() override {
    if (closed_) return absl::FailedPreconditionError("nats_workers: this end is closed");
    return held_.has_value() ? PushHeld() : absl::OkStatus();
  }

  absl::StatusOr<size_t> TryReceive(absl::Span<char> out) override {
    if (closed_) return absl::FailedPreconditionError("nats_workers: this end is closed");
    MutexLock lock(&state_->mutex_);
    if (!state_->protocol_error_.ok()) return std::exchange(state_->protocol_error_, absl::OkStatus());
    if (!state_->pulled_.empty()) {
      std::string message = std::move(state_->pulled_.front());
      state_->pulled_.pop_front();
      if (const size_t kept = std::min(out.size(), message.size()); kept > 0) {
        std::memcpy(out.data(), message.data(), kept);
      }
      counters_.Received(message.size());
      return message.size();
    }
    if (!state_->failure_.ok()) return state_->failure_;
    if (state_->peer_closed_) {
      return absl::OutOfRangeError("nats_workers: the owner closed the task's channel");
    }
    if (!state_->pull_outstanding_) {
      std::string pull = wire::Header(wire::kPull, attempt_);
      wire::AppendU64(pull, state_->next_index_);
      if (absl::Status sent = Publish(pull); !sent.ok()) return sent;
      state_->pull_outstanding_ = true;
    }
    state_->receive_.Arm();
    counters_.receives_blocked.Add();
    return WouldBlock();
  }

  Readiness send_readiness() const override {
    MutexLock lock(&state_->mutex_);
    if (state_->credit_ == 0 && !state_->peer_closed_ && state_->failure_.ok()) {
      state_->send_.Arm();
    } else {
      state_->send_.Signal();
    }
    return {state_->send_.fd, POLLIN};
  }

  Readiness receive_readiness() const override {
    MutexLock lock(&state_->mutex_);
    if (state_->pulled_.empty() && !state_->peer_closed_ && state_->failure_.ok() &&
        state_->protocol_error_.ok()) {
      state_->receive_.Arm();
    } else {
      state_->receive_.Signal();
    }
    return {state_->receive_.fd, POLLIN};
  }

  bool ReceiveReady() override {
    MutexLock lock(&state_->mutex_);
    return !state_->pulled_.empty();
  }

  void Close() override {
    if (closed_) return;
    closed_ = true;
    held_.reset();
    state_->BeginClosing();
    natsSubscription_Unsubscribe(subscription_);
    connection_->Retire(subscription_);
  }

  size_t max_message_size() const override { return max_message_size_; }

  // After the entry returned: its value and count, behind its messages.
  absl::Status Finish(int result) {
    if (held_.has_value()) {
      return absl::FailedPreconditionError(
          "nats_workers: the entry returned with a message not all sent");
    }
    std::string done = wire::Header(wire::kDone, attempt_);
    wire::AppendI32(done, result);
    wire::AppendU64(done, written_);
    return Publish(done);
  }

 private:
  absl::Status Usable() {
    MutexLock lock(&state_->mutex_);
    if (!state_->failure_.ok()) return state_->failure_;
    if (state_->peer_closed_) {
      return absl::FailedPreconditionError("nats_workers: the owner closed the task's channel");
    }
    return absl::OkStatus();
  }

  // Out of credit: tells the owner once, and waits for news.
  absl::Status Blocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(state_->mutex_) {
    if (!blocked_told_) {
      if (absl::Status told = Publish(wire::Header(wire::kBlocked, attempt_)); !told.ok()) return told;
      blocked_told_ = true;
    }
    state_->send_.Arm();
    counters_.sends_blocked.Add();
    return WouldBlock();
  }

  absl::Status PushHeld() {
    if (absl::Status usable = Usable(); !usable.ok()) return usable;
    MutexLock lock(&state_->mutex_);
    while (held_.has_value()) {
      const size_t remaining = held_->size() - held_offset_;
      const size_t piece = std::min(remaining, max_piece_);
      if (piece + wire::kPieceOverhead > state_->credit_) return Blocked();
      const bool last = piece == remaining;
      absl::Status sent = PublishPiece(absl::string_view(held_->data() + held_offset_, piece), last);
      if (!sent.ok()) return sent;
      state_->credit_ -= piece + wire::kPieceOverhead;
      held_offset_ += piece;
      if (last) {
        held_.reset();
        ++written_;
      }
    }
    return absl::OkStatus();
  }

  absl::Status PublishPiece(absl::string_view bytes, bool last) {
    blocked_told_ = false;
    std::string out = wire::Header(last ? wire::kLast : wire::kMore, attempt_);
    wire::AppendU64(out, written_);
    out.append(bytes.data(), bytes.size());
    return Publish(out);
  }

  absl::Status Publish(const std::string& bytes) {
    const natsStatus status = natsConnection_Publish(connection_->handle(), owner_subject_.c_str(),
                                                     bytes.data(), static_cast<int>(bytes.size()));
    return status == NATS_OK ? absl::OkStatus() : NatsError("publish", status);
  }

  const std::shared_ptr<Connection> connection_;
  const std::shared_ptr<AttemptState> state_;
  natsSubscription* const subscription_;
  const std::string subject_;
  const std::string owner_subject_;
  const uint32_t attempt_;
  const size_t max_message_size_;
  const size_t max_piece_;
  ChannelEndCounters counters_;
  bool closed_ = false;
  uint64_t written_ = 0;  // whole messages published: the next one's sequence
  std::optional<std::string> held_;
  size_t held_offset_ = 0;
  bool blocked_told_ = false;
};

struct JobDeleter {
  void operator()(natsMsg* message) const { natsMsg_Destroy(message); }
};

// One worker process's jobs in progress, for its keep-alive thread.
class Worker {
 public:
  Worker(const NatsWorkerOptions& options, std::shared_ptr<Connection> connection)
      : options_(options), connection_(std::move(connection)) {}

  void Log(const std::string& line) {
    if (options_.log == nullptr) return;
    std::lock_guard<std::mutex> lock(log_mutex_);
    std::fprintf(options_.log, "nats_worker: %s\n", line.c_str());
    std::fflush(options_.log);
  }

  // Runs one job to its end: the entry's return, acknowledged, or the
  // attempt abandoned and the job handed back.
  void RunJob(natsMsg* raw) {
    std::unique_ptr<natsMsg, JobDeleter> job_message(raw);
    wire::Job job;
    if (absl::Status decoded = wire::DecodeJob(wire::DataOf(raw), job); !decoded.ok()) {
      Log(std::string(decoded.message()) + "; dropped");
      natsMsg_Term(raw, nullptr);
      return;
    }
    uint32_t attempt = 1;
    jsMsgMetaData* meta = nullptr;
    if (natsMsg_GetMetaData(&meta, raw) == NATS_OK) {
      attempt = static_cast<uint32_t>(std::max<uint64_t>(meta->NumDelivered, 1));
      jsMsgMetaData_Destroy(meta);
    }
    absl::StatusOr<RegisteredEntry> entry = FindEntry(job.entry);
    if (!entry.ok()) {
      std::string failed = wire::Header(wire::kFailed, attempt);
      absl::StrAppend(&failed, "no worker entry named '", job.entry, "' (", entry.status().message(),
                      ")");
      natsConnection_Publish(connection_->handle(), job.owner_subject.c_str(), failed.data(),
                             static_cast<int>(failed.size()));
      natsConnection_FlushTimeout(connection_->handle(), kFlushTimeoutMs);
      natsMsg_AckSync(raw, nullptr, nullptr);
      Log(absl::StrCat("entry '", job.entry, "' is not registered here; the owner is told"));
      return;
    }
    absl::StatusOr<std::unique_ptr<TaskEnd>> end = OpenEnd(job, attempt);
    if (!end.ok()) {
      Log(absl::StrCat("attempt ", attempt, " at '", job.entry, "': ", end.status().message(),
                       "; handed back"));
      natsMsg_Nak(raw, nullptr);
      return;
    }
    const std::shared_ptr<AttemptState> state = (*end)->state();
    // A missing owner, or one that already has the result, ends it here.
    absl::StatusOr<std::string> answer = Hello(job, attempt, (*end)->subject());
    if (!answer.ok() || *answer != wire::kGoOn) {
      // An owner that does not answer may be reconnecting after the
      // broker restarted: its job comes back a few times before it is
      // taken for given up.
      const bool retry = !answer.ok() && (!absl::IsNotFound(answer.status()) ||
                                          attempt < kDeliveriesToAnAbsentOwner);
      Log(absl::StrCat("attempt ", attempt, " at '", job.entry, "': ",
                       answer.ok() ? absl::StrCat("the owner says ", *answer)
                                   : std::string(answer.status().message()),
                       retry ? "; handed back" : "; dropped"));
      if (retry) {
        natsMsg_NakWithDelay(raw, kRetryDelayMs, nullptr);
      } else {
        natsMsg_AckSync(raw, nullptr, nullptr);
      }
      return;
    }
    Log(absl::StrCat("attempt ", attempt, " at '", job.entry, "' started"));
    const uint64_t key = Track(raw, state, job.owner_subject, attempt);
    const int result = RunEntryOn(*entry, **end, static_cast<int>(attempt), state->cancel());
    Untrack(key);
    absl::Status finished = state->abandoned() ? absl::AbortedError("abandoned") : (*end)->Finish(result);
    if (finished.ok()) {
      // The done must be at the broker before the job leaves the queue.
      const natsStatus flushed = natsConnection_FlushTimeout(connection_->handle(), kFlushTimeoutMs);
      finished = flushed == NATS_OK ? absl::OkStatus() : NatsError("flush", flushed);
    }
    if (finished.ok()) finished = AckStatus(natsMsg_AckSync(raw, nullptr, nullptr));
    if (finished.ok()) {
      Log(absl::StrCat("attempt ", attempt, " at '", job.entry, "' returned ", result));
    } else {
      Log(absl::StrCat("attempt ", attempt, " at '", job.entry, "' abandoned (",
                       state->abandoned() ? "the owner or the broker went away" : finished.message(),
                       "); handed back"));
      natsMsg_Nak(raw, nullptr);
    }
  }

  // Every third of the ack wait: JetStream hears that each running job is
  // in progress, and each owner is asked whether it still wants its task.
  void KeepAlive(const std::atomic<bool>& stop) {
    const absl::Duration period = options_.queue.ack_wait / 3;
    std::unique_lock<std::mutex> lock(tracked_mutex_);
    while (!stop.load()) {
      tracked_changed_.wait_for(lock, absl::ToChronoNanoseconds(period));
      if (stop.load()) return;
      // The job messages are used under the lock only: RunJob acknowledges
      // and frees each after untracking it.
      std::vector<Tracked> running;
      for (auto& [key, tracked] : tracked_) {
        natsMsg_InProgress(tracked.job, nullptr);
        running.push_back(tracked);
      }
      lock.unlock();
      for (Tracked& tracked : running) {
        const std::string ask = wire::Header(wire::kKeepAlive, tracked.attempt);
        natsMsg* reply = nullptr;
        const natsStatus status =
            natsConnection_Request(&reply, connection_->handle(), tracked.owner_subject.c_str(),
                                   ask.data(), static_cast<int>(ask.size()), kHelloTimeoutMs);
        if (status == NATS_NO_RESPONDERS) {
          tracked.state->Abandon("the owner is gone");
        } else if (status == NATS_OK && wire::DataOf(reply) != wire::kGoOn) {
          tracked.state->Abandon("the owner said stop");
        }
        natsMsg_Destroy(reply);
      }
      lock.lock();
    }
  }

  // Every attempt in progress is abandoned, for `why`.
  void AbandonAll(absl::string_view why) {
    std::lock_guard<std::mutex> lock(tracked_mutex_);
    for (auto& [key, tracked] : tracked_) tracked.state->Abandon(why);
  }

  void WakeKeepAlive() {
    std::lock_guard<std::mutex> lock(tracked_mutex_);
    tracked_changed_.notify_all();
  }

 private:
  struct Tracked {
    natsMsg* job;
    std::shared_ptr<AttemptState> state;
    std::string owner_subject;
    uint32_t attempt;
  };

  static absl::Status AckStatus(natsStatus status) {
    return status == NATS_OK ? absl::OkStatus() : NatsError("ack", status);
  }

  absl::StatusOr<std::unique_ptr<TaskEnd>> OpenEnd(const wire::Job& job, uint32_t attempt) {
    auto state = std::make_shared<AttemptState>(job.window);
    if (absl::Status opened = state->Open(); !opened.ok()) return opened;
    std::string subject = connection_->NextUniqueSubject();
    auto* closure = new std::shared_ptr<AttemptState>(state);
    natsSubscription* subscription = nullptr;
    natsStatus status = natsConnection_Subscribe(&subscription, connection_->handle(), subject.c_str(),
                                                 &AttemptState::OnMessage, closure);
    if (status != NATS_OK) {
      delete closure;
      return NatsError("subscribe", status);
    }
    status = natsSubscription_SetPendingLimits(subscription, -1, -1);
    if (status == NATS_OK) {
      status = natsSubscription_SetOnCompleteCB(subscription, &AttemptState::OnComplete, closure);
    }
    if (status != NATS_OK) {
      state->BeginClosing();
      natsSubscription_Unsubscribe(subscription);
      natsSubscription_Destroy(subscription);
      delete closure;  // nobody knows the subject yet
      return NatsError("subscribe", status);
    }
    return std::make_unique<TaskEnd>(connection_, std::move(state), subscription, std::move(subject),
                                     job.owner_subject, attempt, job);
  }

  absl::StatusOr<std::string> Hello(const wire::Job& job, uint32_t attempt, const std::string& subject) {
    std::string hello = wire::Header(wire::kHello, attempt);
    hello += subject;
    natsMsg* reply = nullptr;
    const natsStatus status =
        natsConnection_Request(&reply, connection_->handle(), job.owner_subject.c_str(), hello.data(),
                               static_cast<int>(hello.size()), kHelloTimeoutMs);
    if (status == NATS_NO_RESPONDERS) {
      return absl::NotFoundError("nobody listens on the owner's subject");
    }
    if (status != NATS_OK) return NatsError("hello to the owner", status);
    std::string answer(wire::DataOf(reply));
    natsMsg_Destroy(reply);
    return answer;
  }

  uint64_t Track(natsMsg* job, std::shared_ptr<AttemptState> state, const std::string& owner_subject,
                 uint32_t attempt) {
    std::lock_guard<std::mutex> lock(tracked_mutex_);
    const uint64_t key = next_key_++;
    tracked_.emplace(key, Tracked{job, std::move(state), owner_subject, attempt});
    return key;
  }

  void Untrack(uint64_t key) {
    std::lock_guard<std::mutex> lock(tracked_mutex_);
    tracked_.erase(key);
  }

  const NatsWorkerOptions& options_;
  const std::shared_ptr<Connection> connection_;
  std::mutex log_mutex_;
  std::mutex tracked_mutex_;
  std::condition_variable tracked_changed_;
  absl::flat_hash_map<uint64_t, Tracked> tracked_;
  uint64_t next_key_ = 0;
};

// Free slots for jobs, and the stop request, for RunWorker's loop.
class Slots {
 public:
  explicit Slots(int count) : free_(count), count_(count) {}
  // Waits up to a second for a free slot; false if none came.
  bool Take() {
    std::unique_lock<std::mutex> lock(mutex_);
    if (!changed_.wait_for(lock, std::chrono::seconds(1), [this] { return free_ > 0; })) return false;
    --free_;
    return true;
  }
  void Give() {
    // Notified under the lock: WaitAllFree's caller destroys this at once.
    std::lock_guard<std::mutex> lock(mutex_);
    ++free_;
    changed_.notify_all();
  }
  void WaitAllFree() {
    std::unique_lock<std::mutex> lock(mutex_);
    changed_.wait(lock, [this] { return free_ == count_; });
  }

 private:
  std::mutex mutex_;
  std::condition_variable changed_;
  int free_;
  const int count_;
};

}  // namespace

absl::Status RunWorker(const NatsWorkerOptions& options) {
  if (options.scheduler == nullptr) {
    return absl::InvalidArgumentError("nats_workers: RunWorker needs a scheduler for the entries");
  }
  if (options.slots < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("nats_workers: RunWorker needs at least one slot, not ", options.slots));
  }
  if (options.stop == nullptr) {
    return absl::InvalidArgumentError("nats_workers: RunWorker needs a stop flag");
  }
  std::string url = options.queue.url;
  if (url.empty()) {
    absl::StatusOr<std::string> broker = nats_platform::BrokerUrl();
    if (!broker.ok()) return broker.status();
    url = *std::move(broker);
  }
  // The connection's news reaches the worker once it exists.
  auto worker_for_news = std::make_shared<std::atomic<Worker*>>(nullptr);
  nats_platform::ConnectionOptions connection_options;
  connection_options.allow_reconnect = true;
  connection_options.on_interrupted = [worker_for_news] {
    if (Worker* worker = worker_for_news->load()) {
      worker->AbandonAll("connection to the broker interrupted");
    }
  };
  absl::StatusOr<std::shared_ptr<Connection>> connection =
      Connection::Open(url, std::move(connection_options));
  if (!connection.ok()) return connection.status();
  jsCtx* js = nullptr;
  natsStatus status = natsConnection_JetStream(&js, (*connection)->handle(), nullptr);
  if (status != NATS_OK) return NatsError("JetStream context", status);
  std::unique_ptr<jsCtx, void (*)(jsCtx*)> js_owner(js, &jsCtx_Destroy);
  if (absl::Status queue = wire::EnsureQueue(js, options.queue.ack_wait); !queue.ok()) return queue;
  jsSubOptions bind;
  jsSubOptions_Init(&bind);
  bind.Stream = wire::kStream;
  bind.Consumer = wire::kConsumer;
  natsSubscription* jobs = nullptr;
  jsErrCode error = static_cast<jsErrCode>(0);
  status = js_PullSubscribe(&jobs, js, wire::kJobSubject, wire::kConsumer, nullptr, &bind, &error);
  if (status != NATS_OK) {
    return NatsError(absl::StrCat("subscribing to the work queue (JetStream error ", error, ")"), status);
  }

  Worker worker(options, *connection);
  worker_for_news->store(&worker);
  std::thread keep_alive([&] { worker.KeepAlive(*options.stop); });
  worker.Log(absl::StrCat("taking jobs from ", url, " with ", options.slots, " slots on ",
                          options.scheduler->name(), "; entries: ",
                          absl::StrJoin(RegisteredEntryNames(), ", ")));
  Slots slots(options.slots);
  while (!options.stop->load()) {
    if (!slots.Take()) continue;
    natsMsgList batch{};
    status = natsSubscription_Fetch(&batch, jobs, 1, kFetchTimeoutMs, &error);
    if (status != NATS_OK || batch.Count == 0) {
      natsMsgList_Destroy(&batch);
      slots.Give();
      if (status != NATS_TIMEOUT && status != NATS_OK) {
        // The broker is away: the library reconnects meanwhile.
        std::this_thread::sleep_for(std::chrono::milliseconds(kFetchTimeoutMs));
      }
      continue;
    }
    natsMsg* job = batch.Msgs[0];
    batch.Msgs[0] = nullptr;
    natsMsgList_Destroy(&batch);
    absl::Status scheduled = options.scheduler->Schedule([&worker, &slots, job] {
      worker.RunJob(job);
      slots.Give();
    });
    if (!scheduled.ok()) {
      worker.Log(absl::StrCat("cannot run a job: ", scheduled.message(), "; handed back"));
      natsMsg_Nak(job, nullptr);
      natsMsg_Destroy(job);
      slots.Give();
    }
  }
  worker.AbandonAll("the worker is stopping");
  slots.WaitAllFree();
  worker.WakeKeepAlive();
  keep_alive.join();
  worker_for_news->store(nullptr);
  natsSubscription_Unsubscribe(jobs);
  natsSubscription_Destroy(jobs);
  worker.Log("stopped");
  return absl::OkStatus();
}

}  // namespace taskrt
