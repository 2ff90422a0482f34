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
#include "absl/strings/escaping.h"
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

constexpr int64_t kFetchTimeoutMs = 1000;
// A job whose owner does not answer is delivered this many times, kRetryDelayMs
// apart, before it is dropped.
constexpr uint32_t kDeliveriesToAnAbsentOwner = 10;
constexpr int64_t kRetryDelayMs = 500;

// What becomes of a job whose attempt ended early.
enum class JobFate {
  kAck,    // the task is over for its owner: the job leaves the queue
  kNak,    // hand it back for another attempt
  kLeave,  // a newer delivery has it: neither
};

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
    (*holder)->Abandon("the subscription ended: connection to the broker lost", JobFate::kNak);
    delete holder;
  }

  // The attempt cannot go on: every call fails from now on, the entry is
  // asked to cancel, and the job gets `fate` (the first one given).
  void Abandon(absl::string_view why, JobFate fate) {
    MutexLock lock(&mutex_);
    if (closing_ || fate_.has_value()) return;
    fate_ = fate;
    failure_ = absl::UnavailableError(absl::StrCat("nats_workers: attempt abandoned: ", why));
    cancel_.store(true, std::memory_order_release);
    receive_.Signal();
    send_.Signal();
  }

  std::optional<JobFate> fate() {
    MutexLock lock(&mutex_);
    return fate_;
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
  uint64_t credit_needed_ ABSL_GUARDED_BY(mutex_) = 0;  // what the blocked send waits for
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
        if (credit_ >= credit_needed_) send_.Wake();
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
        uint64_t offset = 0;
        if (!wire::TakeU64(rest, index) || !wire::TakeU64(rest, offset)) {
          return Reject("a piece without its index and offset");
        }
        if (index != next_index_ || !pull_outstanding_) return;  // not the one asked for
        if (offset != assembling_.size()) {
          // A piece went missing: the owner's messages cannot arrive whole.
          if (!fate_.has_value()) {
            fate_ = JobFate::kNak;
            failure_ = absl::UnavailableError(
                "nats_workers: attempt abandoned: a piece of the owner's message went missing");
            cancel_.store(true, std::memory_order_release);
            receive_.Signal();
            send_.Signal();
          }
          return;
        }
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
        return Reject(absl::StrCat("a message of unknown kind '",
                                   absl::CHexEscape(absl::string_view(&parsed->kind, 1)), "'"));
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
  std::optional<JobFate> fate_ ABSL_GUARDED_BY(mutex_);
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
        max_piece_(std::min<uint64_t>(connection_->max_payload() - wire::kPieceHeaderSize,
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
      const uint64_t cost = message.size() + wire::kPieceOverhead;
      if (cost > state_->credit_) return Blocked(cost);
      absl::Status sent =
          PublishPiece(absl::string_view(message.data(), message.size()), 0, /*last=*/true);
      if (!sent.ok()) return sent;
      state_->credit_ -= cost;
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

  bool TryTakeBackUnsent() override {
    if (!held_.has_value() || held_offset_ != 0) return false;
    counters_.Unsent(held_->size());
    held_.reset();
    return true;
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
    if (absl::Status asked = AskForNext(); !asked.ok()) return asked;
    state_->receive_.Arm();
    counters_.receives_blocked.Add();
    return WouldBlock();
  }

  Readiness send_readiness() const override {
    MutexLock lock(&state_->mutex_);
    return {state_->send_.Watch(state_->credit_ >= state_->credit_needed_ || state_->peer_closed_ ||
                                !state_->failure_.ok()),
            POLLIN};
  }

  Readiness receive_readiness() const override {
    MutexLock lock(&state_->mutex_);
    return {state_->receive_.Watch(!state_->pulled_.empty() || state_->peer_closed_ ||
                                   !state_->failure_.ok() || !state_->protocol_error_.ok()),
            POLLIN};
  }

  // As a receive that finds nothing, a false answer asks the owner for the
  // next message and arms the readiness.
  bool ReceiveReady() override {
    MutexLock lock(&state_->mutex_);
    if (!state_->pulled_.empty()) return true;
    if (state_->failure_.ok() && !state_->peer_closed_ && AskForNext().ok()) {
      state_->receive_.Arm();
    }
    return false;
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

  // After the entry returned: its value and count, behind its messages,
  // and the owner's verdict on them. A message still held could not leave
  // with them: the attempt is handed back.
  absl::StatusOr<std::string> Finish(int result) {
    if (held_.has_value()) {
      return absl::FailedPreconditionError(
          "nats_workers: the entry returned with a message not all sent");
    }
    std::string done = wire::Header(wire::kDone, attempt_);
    wire::AppendI32(done, result);
    wire::AppendU64(done, written_);
    return Request(connection_->handle(), owner_subject_, done);
  }

  // A request to the owner; its verdict, or kNotFound when nobody listens.
  static absl::StatusOr<std::string> Request(natsConnection* connection,
                                             const std::string& owner_subject,
                                             const std::string& bytes,
                                             int64_t timeout_ms = kRequestTimeoutMs) {
    natsMsg* reply = nullptr;
    const natsStatus status = natsConnection_Request(&reply, connection, owner_subject.c_str(),
                                                     bytes.data(), static_cast<int>(bytes.size()),
                                                     timeout_ms);
    if (status == NATS_NO_RESPONDERS) {
      return absl::NotFoundError("nobody listens on the owner's subject");
    }
    if (status != NATS_OK) return NatsError("request to the owner", status);
    std::string answer(wire::DataOf(reply));
    natsMsg_Destroy(reply);
    return answer;
  }

  static constexpr int64_t kRequestTimeoutMs = 5000;

 private:
  absl::Status Usable() {
    MutexLock lock(&state_->mutex_);
    if (!state_->failure_.ok()) return state_->failure_;
    if (state_->peer_closed_) {
      return absl::FailedPreconditionError("nats_workers: the owner closed the task's channel");
    }
    return absl::OkStatus();
  }

  absl::Status AskForNext() ABSL_EXCLUSIVE_LOCKS_REQUIRED(state_->mutex_) {
    if (state_->pull_outstanding_) return absl::OkStatus();
    std::string pull = wire::Header(wire::kPull, attempt_);
    wire::AppendU64(pull, state_->next_index_);
    if (absl::Status sent = Publish(pull); !sent.ok()) return sent;
    state_->pull_outstanding_ = true;
    return absl::OkStatus();
  }

  // Out of credit for `cost`: tells the owner once, and waits for that much.
  absl::Status Blocked(uint64_t cost) ABSL_EXCLUSIVE_LOCKS_REQUIRED(state_->mutex_) {
    state_->credit_needed_ = cost;
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
      const uint64_t cost = piece + wire::kPieceOverhead;
      if (cost > state_->credit_) return Blocked(cost);
      const bool last = piece == remaining;
      absl::Status sent =
          PublishPiece(absl::string_view(held_->data() + held_offset_, piece), held_offset_, last);
      if (!sent.ok()) return sent;
      state_->credit_ -= cost;
      held_offset_ += piece;
      if (last) {
        held_.reset();
        ++written_;
      }
    }
    return absl::OkStatus();
  }

  absl::Status PublishPiece(absl::string_view bytes, uint64_t offset, bool last) {
    blocked_told_ = false;
    std::string out = wire::Header(last ? wire::kLast : wire::kMore, attempt_);
    wire::AppendU64(out, written_);
    wire::AppendU64(out, offset);
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
using JobPtr = std::unique_ptr<natsMsg, JobDeleter>;

// The fate a verdict gives a job.
JobFate FateOf(absl::string_view verdict) {
  if (verdict == wire::kStop || verdict == wire::kAlreadyDone) return JobFate::kAck;
  if (verdict == wire::kSuperseded) return JobFate::kLeave;
  return JobFate::kNak;
}

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

  // Held from fetch to the job's end: JetStream hears it is in progress
  // every third of the ack wait, whatever the owner does.
  uint64_t Track(natsMsg* job) {
    std::lock_guard<std::mutex> lock(tracked_mutex_);
    const uint64_t key = next_key_++;
    tracked_.emplace(key, Tracked{job, nullptr, "", 0});
    return key;
  }

  // Runs one job to its end: the entry's return, acknowledged, or the
  // attempt abandoned and the job handed back (or left to a newer one).
  // `key`: what Track() gave for it at fetch time.
  void RunJob(JobPtr job_message, uint64_t key) {
    natsMsg* raw = job_message.get();
    const JobFate fate = Attempt(raw, key);
    Untrack(key);  // before the message is acknowledged and freed
    switch (fate) {
      case JobFate::kAck:
        natsMsg_AckSync(raw, nullptr, nullptr);
        break;
      case JobFate::kNak:
        natsMsg_NakWithDelay(raw, kRetryDelayMs, nullptr);
        break;
      case JobFate::kLeave:
        break;
    }
  }

  // Every third of the ack wait: JetStream hears that each job is in
  // progress, and each running attempt's owner is asked whether it still
  // counts.
  void KeepAlive(const std::atomic<bool>& stop) {
    const absl::Duration period = options_.queue.ack_wait / 3;
    const int64_t ask_timeout_ms =
        std::max<int64_t>(1, std::min<int64_t>(absl::ToInt64Milliseconds(period) / 4, 1000));
    std::unique_lock<std::mutex> lock(tracked_mutex_);
    while (!stop.load()) {
      tracked_changed_.wait_for(lock, absl::ToChronoNanoseconds(period));
      if (stop.load()) return;
      // The job messages are used under the lock only: RunJob
      // acknowledges and frees each after untracking it.
      std::vector<Tracked> running;
      for (auto& [key, tracked] : tracked_) {
        natsMsg_InProgress(tracked.job, nullptr);
        if (tracked.state != nullptr) running.push_back(tracked);
      }
      lock.unlock();
      for (Tracked& tracked : running) {
        absl::StatusOr<std::string> verdict =
            TaskEnd::Request(connection_->handle(), tracked.owner_subject,
                             wire::Header(wire::kKeepAlive, tracked.attempt), ask_timeout_ms);
        if (absl::IsNotFound(verdict.status())) {
          tracked.state->Abandon("the owner is gone", JobFate::kNak);
        } else if (verdict.ok() && *verdict != wire::kGoOn) {
          tracked.state->Abandon(absl::StrCat("the owner says ", *verdict), FateOf(*verdict));
        }
      }
      lock.lock();
    }
  }

  // Every attempt in progress is abandoned, for `why`; their jobs come back.
  void AbandonAll(absl::string_view why) {
    std::lock_guard<std::mutex> lock(tracked_mutex_);
    for (auto& [key, tracked] : tracked_) {
      if (tracked.state != nullptr) tracked.state->Abandon(why, JobFate::kNak);
    }
  }

  void WakeKeepAlive() {
    std::lock_guard<std::mutex> lock(tracked_mutex_);
    tracked_changed_.notify_all();
  }

 private:
  struct Tracked {
    natsMsg* job;
    std::shared_ptr<AttemptState> state;  // null until the attempt runs
    std::string owner_subject;
    uint32_t attempt;
  };

  JobFate Attempt(natsMsg* raw, uint64_t key) {
    wire::Job job;
    if (absl::Status decoded = wire::DecodeJob(wire::DataOf(raw), job); !decoded.ok()) {
      Log(std::string(decoded.message()) + "; dropped");
      natsMsg_Term(raw, nullptr);
      return JobFate::kLeave;
    }
    uint32_t attempt = 1;
    jsMsgMetaData* meta = nullptr;
    if (natsMsg_GetMetaData(&meta, raw) == NATS_OK) {
      attempt = static_cast<uint32_t>(std::min<uint64_t>(std::max<uint64_t>(meta->NumDelivered, 1),
                                                         UINT32_MAX));
      jsMsgMetaData_Destroy(meta);
    }
    const std::string at = absl::StrCat("attempt ", attempt, " at '", job.entry, "'");
    if (stopping_.load()) {
      Log(at + ": the worker is stopping; handed back");
      return JobFate::kNak;
    }
    absl::StatusOr<RegisteredEntry> entry = FindEntry(job.entry);
    if (!entry.ok()) {
      std::string failed = wire::Header(wire::kFailed, attempt);
      absl::StrAppend(&failed, "no worker entry named '", job.entry, "' (", entry.status().message(),
                      ")");
      absl::StatusOr<std::string> verdict =
          TaskEnd::Request(connection_->handle(), job.owner_subject, failed);
      Log(absl::StrCat(at, ": not registered here; the owner ",
                       verdict.ok() ? "is told" : "cannot be told"));
      return Gone(verdict, attempt);
    }
    absl::StatusOr<std::unique_ptr<TaskEnd>> end = OpenEnd(job, attempt);
    if (!end.ok()) {
      Log(absl::StrCat(at, ": ", end.status().message(), "; handed back"));
      return JobFate::kNak;
    }
    const std::shared_ptr<AttemptState> state = (*end)->state();
    std::string hello = wire::Header(wire::kHello, attempt);
    hello += (*end)->subject();
    absl::StatusOr<std::string> answer =
        TaskEnd::Request(connection_->handle(), job.owner_subject, hello);
    if (!answer.ok() || *answer != wire::kGoOn) {
      Log(absl::StrCat(at, ": ", answer.ok() ? absl::StrCat("the owner says ", *answer)
                                             : std::string(answer.status().message())));
      return answer.ok() ? FateOf(*answer) : Gone(answer, attempt);
    }
    Log(at + " started");
    {
      std::lock_guard<std::mutex> lock(tracked_mutex_);
      tracked_[key] = Tracked{raw, state, job.owner_subject, attempt};
    }
    const int result = RunEntryOn(*entry, **end, static_cast<int>(attempt), state->cancel());
    if (std::optional<JobFate> fate = state->fate(); fate.has_value()) {
      Log(at + " abandoned: the owner or the broker went away");
      return *fate;
    }
    absl::StatusOr<std::string> verdict = (*end)->Finish(result);
    if (verdict.ok() && *verdict == wire::kGoOn) {
      Log(absl::StrCat(at, " returned ", result));
      return JobFate::kAck;
    }
    Log(absl::StrCat(at, " returned ", result, ", but ",
                     verdict.ok() ? absl::StrCat("the owner says ", *verdict)
                                  : std::string(verdict.status().message())));
    return verdict.ok() ? FateOf(*verdict) : Gone(verdict, attempt);
  }

  // A request the owner did not answer: nobody listening is taken for a
  // given-up task only after a few deliveries (an owner may be reconnecting
  // after the broker restarted); anything else hands the job back.
  static JobFate Gone(const absl::StatusOr<std::string>& verdict, uint32_t attempt) {
    if (verdict.ok()) return FateOf(*verdict);
    return absl::IsNotFound(verdict.status()) && attempt >= kDeliveriesToAnAbsentOwner
               ? JobFate::kAck
               : JobFate::kNak;
  }

  absl::StatusOr<std::unique_ptr<TaskEnd>> OpenEnd(const wire::Job& job, uint32_t attempt) {
    auto state = std::make_shared<AttemptState>(job.window);
    if (absl::Status opened = state->Open(); !opened.ok()) return opened;
    std::string subject = connection_->NextUniqueSubject();
    absl::StatusOr<natsSubscription*> subscription = nats_platform::SubscribeShared(
        connection_->handle(), subject, state, [&state] { state->BeginClosing(); });
    if (!subscription.ok()) return subscription.status();
    return std::make_unique<TaskEnd>(connection_, std::move(state), *subscription, std::move(subject),
                                     job.owner_subject, attempt, job);
  }

 public:
  void Untrack(uint64_t key) {
    std::lock_guard<std::mutex> lock(tracked_mutex_);
    tracked_.erase(key);
  }

  std::atomic<bool> stopping_{false};

 private:
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
  if (absl::Status valid = wire::CheckAckWait(options.queue.ack_wait); !valid.ok()) return valid;
  std::string url = options.queue.url;
  if (url.empty()) {
    absl::StatusOr<std::string> broker = nats_platform::BrokerUrl();
    if (!broker.ok()) return broker.status();
    url = *std::move(broker);
  }
  // The connection's news reaches the worker while it exists.
  struct News {
    std::mutex mutex;
    Worker* worker = nullptr;
    bool lost = false;
  };
  auto news = std::make_shared<News>();
  nats_platform::ConnectionOptions connection_options;
  connection_options.allow_reconnect = true;
  connection_options.on_interrupted = [news] {
    std::lock_guard<std::mutex> lock(news->mutex);
    if (news->worker != nullptr) news->worker->AbandonAll("connection to the broker interrupted");
  };
  connection_options.on_lost = [news] {
    std::lock_guard<std::mutex> lock(news->mutex);
    news->lost = true;
    if (news->worker != nullptr) news->worker->AbandonAll("connection to the broker lost");
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
  {
    std::lock_guard<std::mutex> lock(news->mutex);
    news->worker = &worker;
  }
  std::thread keep_alive([&] { worker.KeepAlive(*options.stop); });
  worker.Log(absl::StrCat("taking jobs from ", url, " with ", options.slots, " slots on ",
                          options.scheduler->name(), "; entries: ",
                          absl::StrJoin(RegisteredEntryNames(), ", ")));
  Slots slots(options.slots);
  absl::Status ended;
  while (!options.stop->load()) {
    {
      std::lock_guard<std::mutex> lock(news->mutex);
      if (news->lost) {
        ended = absl::UnavailableError(
            absl::StrCat("nats_workers: connection to the broker at ", url, " lost"));
        break;
      }
    }
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
    const uint64_t key = worker.Track(job);
    // The unit owns the message once it runs; a refused unit never ran.
    absl::Status scheduled = options.scheduler->Schedule([&worker, &slots, job, key] {
      worker.RunJob(JobPtr(job), key);
      slots.Give();
    });
    if (!scheduled.ok()) {
      worker.Untrack(key);
      worker.Log(absl::StrCat("cannot run a job: ", scheduled.message(), "; handed back"));
      natsMsg_Nak(job, nullptr);
      natsMsg_Destroy(job);
      slots.Give();
    }
  }
  worker.stopping_.store(true);
  worker.AbandonAll("the worker is stopping");
  slots.WaitAllFree();
  worker.WakeKeepAlive();
  keep_alive.join();
  {
    std::lock_guard<std::mutex> lock(news->mutex);
    news->worker = nullptr;
  }
  natsSubscription_Unsubscribe(jobs);
  (*connection)->Retire(jobs);
  worker.Log(ended.ok() ? "stopped" : std::string(ended.message()));
  return ended;
}

}  // namespace taskrt
