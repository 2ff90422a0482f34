#include "schedulers/nats_workers/nats_workers.h"

#include <nats/nats.h>

#include <algorithm>
#include <cstring>
#include <deque>
#include <optional>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "core/channel.h"
#include "core/channel_counters.h"
#include "core/entry_registry.h"
#include "core/errors.h"
#include "core/mutex.h"
#include "core/remote_entry.h"
#include "core/scheduler.h"
#include "platform/nats/broker.h"
#include "platform/nats/connection.h"
#include "schedulers/nats_workers/wire.h"

namespace taskrt {
namespace {

namespace wire = nats_workers_wire;
using nats_platform::Connection;
using nats_platform::ConnectionLostError;
using nats_platform::MessagePtr;
using nats_platform::NatsError;
using nats_platform::WaitPoint;

constexpr size_t kDefaultWindow = 256 * 1024;
constexpr int64_t kPublishTimeoutMs = 10000;

// A message the owner's end holds for the owner to read: one the task
// wrote, or an error in its place in the order.
struct Inbound {
  std::string bytes;
  uint32_t attempt = 0;
  size_t cost = 0;  // what its last piece cost the attempt's window
  absl::Status error;

  static Inbound Error(absl::Status error) {
    Inbound inbound;
    inbound.error = std::move(error);
    return inbound;
  }
};

// The owner's side of one task, shared with its subscription's delivery
// thread; the subscription holds it until the library calls no more.
class OwnerState {
 public:
  OwnerState(natsConnection* connection, size_t window, size_t max_message_size, size_t max_piece)
      : connection_(connection),
        window_(window),
        max_message_size_(max_message_size),
        max_piece_(max_piece) {}

  absl::Status Open() {
    MutexLock lock(&mutex_);
    if (absl::Status opened = receive_.Open(); !opened.ok()) return opened;
    return send_.Open();
  }

  // The subscription's callbacks.
  static void OnMessage(natsConnection*, natsSubscription*, natsMsg* raw, void* closure) {
    MessagePtr message(raw);
    (*static_cast<std::shared_ptr<OwnerState>*>(closure))->Take(message.get());
  }
  static void OnComplete(void* closure) {
    auto* holder = static_cast<std::shared_ptr<OwnerState>*>(closure);
    (*holder)->Lose(ConnectionLostError());
    delete holder;
  }

  // The connection dropped and the library reconnects: whatever the
  // current attempt had in flight may be gone. Its done still counts if it
  // proves that nothing was (every message arrived whole); anything else
  // waits for a new attempt.
  void Interrupt() {
    MutexLock lock(&mutex_);
    Break();
  }

  // Nothing more will come (the connection is gone for good).
  void Lose(absl::Status why) {
    MutexLock lock(&mutex_);
    if (closing_ || result_.has_value()) return;
    failure_ = std::move(why);
    receive_.Signal();
    send_.Signal();
  }

  absl::Status TrySend(absl::Span<const char> message, ChannelEndCounters& counters) {
    MutexLock lock(&mutex_);
    // Checked in the order the local channels check: this end closed, the
    // size, then the peer's state.
    if (closing_) return absl::FailedPreconditionError("nats_workers: this end is closed");
    if (message.size() > max_message_size_) {
      return absl::ResourceExhaustedError(absl::StrCat("nats_workers: message of ", message.size(),
                                                       " bytes is over the maximum of ",
                                                       max_message_size_));
    }
    if (result_.has_value()) {
      return absl::FailedPreconditionError("nats_workers: the task's entry has returned");
    }
    if (!failure_.ok()) return failure_;
    // Bounded by what the worker has yet to take; one message always fits.
    const size_t cost = message.size() + wire::kPieceOverhead;
    if (unsent_bytes_ > 0 && unsent_bytes_ + cost > window_) {
      blocked_need_ = cost;
      send_.Arm();
      counters.sends_blocked.Add();
      return WouldBlock();
    }
    log_.emplace_back(message.data(), message.size());
    unsent_bytes_ += cost;
    counters.Sent(message.size());
    if (pull_waiting_ && sent_ == log_.size() - 1) SendNext();
    return absl::OkStatus();
  }

  absl::StatusOr<size_t> TryReceive(absl::Span<char> out, ChannelEndCounters& counters) {
    MutexLock lock(&mutex_);
    if (closing_) return absl::FailedPreconditionError("nats_workers: this end is closed");
    if (!inbound_.empty()) {
      Inbound next = std::move(inbound_.front());
      inbound_.pop_front();
      if (!next.error.ok()) return next.error;
      if (next.attempt == attempt_ && !broken_) Consumed(next.cost);
      if (const size_t kept = std::min(out.size(), next.bytes.size()); kept > 0) {
        std::memcpy(out.data(), next.bytes.data(), kept);
      }
      counters.Received(next.bytes.size());
      return next.bytes.size();
    }
    if (result_.has_value()) {
      if (!failure_.ok()) return failure_;
      return absl::OutOfRangeError("nats_workers: the entry returned and all it wrote was read");
    }
    if (!failure_.ok()) return failure_;
    receive_.Arm();
    counters.receives_blocked.Add();
    return WouldBlock();
  }

  // A message (or an error in its place) is waiting.
  bool ReceiveReady() {
    MutexLock lock(&mutex_);
    if (closing_) return false;
    if (inbound_.empty()) {
      if (!result_.has_value() && failure_.ok()) receive_.Arm();
      return false;
    }
    return true;
  }

  bool MessagesMayBeInFlight() {
    MutexLock lock(&mutex_);
    return !closing_ && !result_.has_value() && failure_.ok();
  }

  std::optional<int> EntryResult() {
    MutexLock lock(&mutex_);
    if (result_.has_value()) return result_;
    if (!failure_.ok()) return -1;
    return std::nullopt;
  }

  Readiness WatchReceive() {
    MutexLock lock(&mutex_);
    return {receive_.Watch(!inbound_.empty() || result_.has_value() || !failure_.ok()), POLLIN};
  }

  Readiness WatchSend() {
    MutexLock lock(&mutex_);
    // Room for the send that last found none, not merely some room: a
    // watcher woken for less would try, fail and wait again at once.
    const bool room = unsent_bytes_ == 0 || unsent_bytes_ + blocked_need_ <= window_;
    return {send_.Watch(room || result_.has_value() || !failure_.ok() || closing_), POLLIN};
  }

  // Where JetStream stored the job: a task given up before any worker
  // took it is taken out of the queue.
  void SetJobSequence(uint64_t sequence) {
    MutexLock lock(&mutex_);
    job_sequence_ = sequence;
  }

  void RequestCancel() {
    MutexLock lock(&mutex_);
    cancel_requested_ = true;
    if (!worker_subject_.empty() && !broken_) SendToWorker(wire::Header(wire::kCancel, attempt_));
  }

  // The owner is done with the task: the current attempt is told to stop.
  // What the worker had not pulled yet is not sent (the task is being
  // cancelled).
  void Close() {
    MutexLock lock(&mutex_);
    if (closing_) return;
    closing_ = true;
    if (worker_subject_.empty() && job_sequence_ != 0) {
      // Not a word lost if this fails: a worker finds nobody listening and
      // drops the job.
      const std::string request = wire::DeleteJobRequest(job_sequence_);
      natsConnection_PublishString(connection_, wire::DeleteJobSubject().c_str(), request.c_str());
    }
    if (!worker_subject_.empty() && !result_.has_value()) {
      // If this is lost, the worker learns from its keep-alive.
      SendToWorker(wire::Header(wire::kClose, attempt_));
    }
  }

 private:
  // What the owner says to a worker's request about an attempt: go on (it
  // is the one), stop (the task is over: drop the job), superseded (a
  // newer attempt has it: leave the job alone), or retry (it cannot count
  // any more: hand the job back).
  const char* Verdict(uint32_t attempt) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_) {
    if (result_.has_value()) return wire::kAlreadyDone;
    if (closing_) return wire::kStop;
    if (attempt < attempt_) return wire::kSuperseded;
    if (attempt > attempt_) return wire::kRetry;  // never said hello
    return broken_ ? wire::kRetry : wire::kGoOn;
  }

  void Take(natsMsg* message) {
    const std::optional<wire::Parsed> parsed = wire::Parse(wire::DataOf(message));
    const char* reply = natsMsg_GetReply(message);
    const bool is_request = reply != nullptr && *reply != '\0';
    MutexLock lock(&mutex_);
    if (!parsed.has_value()) {
      return Reject(absl::StrCat("a message of ", natsMsg_GetDataLength(message),
                                 " bytes, too short for its header"));
    }
    absl::string_view rest = parsed->rest;
    const uint32_t attempt = parsed->attempt;
    switch (parsed->kind) {
      case wire::kHello:
        if (!is_request) return Reject("a hello without a reply subject");
        return Reply(reply, Hello(attempt, rest));
      case wire::kKeepAlive:
        if (!is_request) return Reject("a keep-alive without a reply subject");
        return Reply(reply, Verdict(attempt));
      case wire::kDone: {
        int32_t result = 0;
        uint64_t written = 0;
        if (!is_request || !wire::TakeI32(rest, result) || !wire::TakeU64(rest, written) ||
            !rest.empty()) {
          return Reject("a malformed done");
        }
        return Reply(reply, Done(attempt, result, written));
      }
      case wire::kFailed: {
        if (!is_request) return Reject("a failure without a reply subject");
        const char* verdict = Verdict(attempt);
        // Sent instead of a hello, by a worker that cannot run the entry.
        if (attempt >= attempt_ && !result_.has_value() && !closing_) {
          inbound_.push_back(Inbound::Error(absl::NotFoundError(
              absl::StrCat("nats_workers: ", rest.substr(0, kMaxReasonBytes)))));
          result_ = -1;
          receive_.Signal();
          send_.Signal();
          verdict = wire::kGoOn;
        }
        return Reply(reply, verdict);
      }
      case wire::kPull: {
        uint64_t index = 0;
        if (!wire::TakeU64(rest, index) || !rest.empty()) return Reject("a malformed pull");
        if (attempt != attempt_ || broken_ || closing_) return;  // a stale attempt's
        return Pull(index);
      }
      case wire::kMore:
      case wire::kLast: {
        uint64_t sequence = 0;
        uint64_t offset = 0;
        if (!wire::TakeU64(rest, sequence) || !wire::TakeU64(rest, offset)) {
          return Reject("a piece without its sequence and offset");
        }
        if (attempt != attempt_ || broken_ || closing_) return;
        return Piece(sequence, offset, rest, parsed->kind == wire::kLast);
      }
      case wire::kBlocked:
        if (attempt != attempt_ || broken_) return;
        if (unacknowledged_ > 0) {
          ReturnCredit();
        } else {
          peer_blocked_ = true;
        }
        return;
      default:
        return Reject(absl::StrCat("a message of unknown kind '",
                                   absl::CHexEscape(absl::string_view(&parsed->kind, 1)), "'"));
    }
  }

  const char* Hello(uint32_t attempt, absl::string_view worker_subject)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_) {
    if (result_.has_value()) return wire::kAlreadyDone;
    if (closing_) return wire::kStop;
    if (!wire::IsWorkerSubject(worker_subject)) {
      Reject("a hello naming no subject of a worker");
      return wire::kStop;
    }
    // An older delivery, or a second worker on this one.
    if (attempt < attempt_ || (attempt == attempt_ && !broken_)) return wire::kSuperseded;
    // A new attempt: it pulls from the first message and starts with a
    // full window; the old one's credit, pulls and half-arrived message
    // are void.
    attempt_ = attempt;
    broken_ = false;
    worker_subject_ = std::string(worker_subject);
    assembling_.clear();
    assembling_active_ = false;
    discarding_ = false;
    unacknowledged_ = 0;
    peer_blocked_ = false;
    pull_waiting_ = false;
    sent_ = 0;
    unsent_bytes_ = 0;
    for (const std::string& logged : log_) unsent_bytes_ += logged.size() + wire::kPieceOverhead;
    if (cancel_requested_) SendToWorker(wire::Header(wire::kCancel, attempt_));
    return wire::kGoOn;
  }

  // The entry returned. It counts when it comes from the current attempt
  // and everything that attempt wrote arrived whole, even across an
  // interrupted connection; otherwise the attempt is retried.
  const char* Done(uint32_t attempt, int32_t result, uint64_t written)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_) {
    if (result_.has_value()) return wire::kAlreadyDone;
    if (closing_) return wire::kStop;
    if (attempt < attempt_) return wire::kSuperseded;
    // Messages of this attempt below accepted_ were dropped as repeats;
    // more than accepted_ means some went missing.
    if (attempt > attempt_ || written > accepted_ || assembling_active_ || discarding_) {
      if (attempt == attempt_) Break();
      return wire::kRetry;
    }
    result_ = result;
    receive_.Signal();
    send_.Signal();
    return wire::kGoOn;
  }

  // The current attempt can no longer be trusted to deliver everything.
  void Break() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_) {
    broken_ = true;
    assembling_.clear();
    assembling_active_ = false;
    discarding_ = false;
  }

  // A failed publish means the connection dropped: the attempt cannot
  // count on what this carried, so it is retried.
  void SendToWorker(const std::string& bytes) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_) {
    if (natsConnection_Publish(connection_, worker_subject_.c_str(), bytes.data(),
                               static_cast<int>(bytes.size())) != NATS_OK) {
      Break();
    }
  }

  void Reply(const char* reply, const char* answer) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_) {
    natsConnection_PublishString(connection_, reply, answer);
  }

  // The worker asks for the owner's message `index`: the one after the
  // last it got, or nothing (a stale or forged pull).
  void Pull(uint64_t index) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_) {
    if (index != sent_ || pull_waiting_) return;
    pull_waiting_ = true;
    if (sent_ < log_.size()) SendNext();
  }

  // Publishes the owner's next message to the current attempt, in pieces.
  void SendNext() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_) {
    pull_waiting_ = false;
    const std::string& message = log_[sent_];
    size_t offset = 0;
    do {
      const size_t piece = std::min(max_piece_, message.size() - offset);
      const bool last = offset + piece == message.size();
      std::string out = wire::Header(last ? wire::kLast : wire::kMore, attempt_);
      wire::AppendU64(out, sent_);
      wire::AppendU64(out, offset);
      out.append(message, offset, piece);
      SendToWorker(out);
      if (broken_) return;
      offset += piece;
    } while (offset < message.size());
    unsent_bytes_ -= message.size() + wire::kPieceOverhead;
    ++sent_;
    send_.Wake();
  }

  void Piece(uint64_t sequence, uint64_t offset, absl::string_view bytes, bool last)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_) {
    const size_t cost = bytes.size() + wire::kPieceOverhead;
    if (sequence < accepted_) {
      // A retry repeating what an earlier attempt delivered: dropped, and
      // the credit it cost goes back.
      Consumed(cost);
      return;
    }
    const uint64_t expected_offset = discarding_ ? discarded_bytes_ : assembling_.size();
    if (sequence > accepted_ || offset != expected_offset) {
      // A piece went missing (a connection dropped under it): this
      // attempt can no longer deliver the stream whole.
      Break();
      return;
    }
    if (discarding_) {
      Consumed(cost);
      discarded_bytes_ += bytes.size();
      if (last) {
        discarding_ = false;
        ++accepted_;
      }
      return;
    }
    if (assembling_.size() + bytes.size() > max_message_size_) {
      const size_t announced = assembling_.size() + bytes.size();
      Consumed(cost);
      discarded_bytes_ = announced;
      assembling_.clear();
      assembling_active_ = false;
      PushError(absl::DataLossError(absl::StrCat("nats_workers: the worker sent a message of ",
                                                 announced, " bytes or more, over the maximum of ",
                                                 max_message_size_)));
      if (last) {
        ++accepted_;
      } else {
        discarding_ = true;
      }
      return;
    }
    assembling_.append(bytes.data(), bytes.size());
    assembling_active_ = !last;
    if (!last) {
      // A message larger than the window could never arrive whole if its
      // first pieces held their credit: they give it back as they come.
      Consumed(cost);
      return;
    }
    Inbound message;
    message.bytes = std::move(assembling_);
    message.attempt = attempt_;
    message.cost = cost;  // its earlier pieces gave theirs back
    inbound_.push_back(std::move(message));
    assembling_.clear();
    ++accepted_;
    receive_.Wake();
  }

  // Something on the task's subject that no worker sends. One report
  // waits at a time, so a flood costs no memory.
  void Reject(absl::string_view what) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_) {
    PushError(absl::DataLossError(absl::StrCat("nats_workers: ", what, " on a task's subject")));
  }

  void PushError(absl::Status error) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_) {
    if (!inbound_.empty() && !inbound_.back().error.ok()) return;
    inbound_.push_back(Inbound::Error(std::move(error)));
    receive_.Wake();
  }

  // Pieces of the current attempt taken (`cost`: their bytes and
  // overheads): handed back as credit per quarter window, or at once when
  // the worker waits.
  void Consumed(size_t cost) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_) {
    unacknowledged_ += cost;
    if (unacknowledged_ >= window_ / 4 || peer_blocked_) ReturnCredit();
  }

  void ReturnCredit() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_) {
    if (worker_subject_.empty() || broken_) return;
    std::string out = wire::Header(wire::kCredit, attempt_);
    wire::AppendU64(out, unacknowledged_);
    SendToWorker(out);
    if (broken_) return;
    unacknowledged_ = 0;
    peer_blocked_ = false;
  }

  static constexpr size_t kMaxReasonBytes = 512;

  natsConnection* const connection_;
  const size_t window_;
  const size_t max_message_size_;
  const size_t max_piece_;

  Mutex mutex_;
  WaitPoint receive_ ABSL_GUARDED_BY(mutex_);
  WaitPoint send_ ABSL_GUARDED_BY(mutex_);
  bool closing_ ABSL_GUARDED_BY(mutex_) = false;
  bool cancel_requested_ ABSL_GUARDED_BY(mutex_) = false;
  uint64_t job_sequence_ ABSL_GUARDED_BY(mutex_) = 0;
  absl::Status failure_ ABSL_GUARDED_BY(mutex_);
  std::optional<int> result_ ABSL_GUARDED_BY(mutex_);

  // The attempt the owner heard from last, where it listens, and whether
  // it can still deliver everything (then only a newer attempt counts).
  uint32_t attempt_ ABSL_GUARDED_BY(mutex_) = 0;
  std::string worker_subject_ ABSL_GUARDED_BY(mutex_);
  bool broken_ ABSL_GUARDED_BY(mutex_) = false;

  // Worker to owner.
  std::deque<Inbound> inbound_ ABSL_GUARDED_BY(mutex_);
  uint64_t accepted_ ABSL_GUARDED_BY(mutex_) = 0;  // whole messages, all attempts
  std::string assembling_ ABSL_GUARDED_BY(mutex_);
  bool assembling_active_ ABSL_GUARDED_BY(mutex_) = false;
  bool discarding_ ABSL_GUARDED_BY(mutex_) = false;  // the rest of an oversized message
  uint64_t discarded_bytes_ ABSL_GUARDED_BY(mutex_) = 0;
  uint64_t unacknowledged_ ABSL_GUARDED_BY(mutex_) = 0;
  bool peer_blocked_ ABSL_GUARDED_BY(mutex_) = false;

  // Owner to worker: everything written, for any attempt to pull; the
  // current attempt has been sent log_[0, sent_).
  std::vector<std::string> log_ ABSL_GUARDED_BY(mutex_);
  uint64_t sent_ ABSL_GUARDED_BY(mutex_) = 0;
  size_t unsent_bytes_ ABSL_GUARDED_BY(mutex_) = 0;  // with each message's overhead
  size_t blocked_need_ ABSL_GUARDED_BY(mutex_) = 0;   // what the refused send needed
  bool pull_waiting_ ABSL_GUARDED_BY(mutex_) = false;
};

// The owner ends alive on one connection, for the connection's news.
class LiveEnds {
 public:
  void Add(const std::shared_ptr<OwnerState>& state) {
    MutexLock lock(&mutex_);
    ends_.emplace(state.get(), state);
  }
  void Remove(OwnerState* state) {
    MutexLock lock(&mutex_);
    ends_.erase(state);
  }
  template <typename F>
  void ForEach(F f) {
    std::vector<std::shared_ptr<OwnerState>> ends;
    {
      MutexLock lock(&mutex_);
      for (auto& [key, state] : ends_) ends.push_back(state);
    }
    for (const std::shared_ptr<OwnerState>& state : ends) f(*state);
  }

 private:
  Mutex mutex_;
  absl::flat_hash_map<OwnerState*, std::shared_ptr<OwnerState>> ends_ ABSL_GUARDED_BY(mutex_);
};

// May outlive its scheduler: it holds the connection and the list.
class OwnerEnd final : public RemoteOwnerEnd {
 public:
  OwnerEnd(std::shared_ptr<Connection> connection, std::shared_ptr<LiveEnds> live,
           std::shared_ptr<OwnerState> state, natsSubscription* subscription,
           size_t max_message_size)
      : connection_(std::move(connection)),
        live_(std::move(live)),
        state_(std::move(state)),
        subscription_(subscription),
        max_message_size_(max_message_size) {
    live_->Add(state_);
  }
  ~OwnerEnd() override { Close(); }

  ChannelMetrics metrics() const override { return counters_.Snapshot(); }
  absl::Status TrySend(absl::Span<const char> message) override {
    return state_->TrySend(message, counters_);
  }
  absl::Status TryFlush() override { return absl::OkStatus(); }
  absl::StatusOr<size_t> TryReceive(absl::Span<char> out) override {
    return state_->TryReceive(out, counters_);
  }
  Readiness send_readiness() const override { return state_->WatchSend(); }
  Readiness receive_readiness() const override { return state_->WatchReceive(); }
  bool ReceiveReady() override { return state_->ReceiveReady(); }
  bool MessagesMayBeInFlight() override { return state_->MessagesMayBeInFlight(); }
  std::optional<int> EntryResult() override { return state_->EntryResult(); }
  void RequestCancel() override { state_->RequestCancel(); }
  size_t max_message_size() const override { return max_message_size_; }

  void Close() override {
    if (subscription_ == nullptr) return;
    state_->Close();
    live_->Remove(state_.get());
    natsSubscription_Unsubscribe(subscription_);
    connection_->Retire(subscription_);
    subscription_ = nullptr;
  }

 private:
  const std::shared_ptr<Connection> connection_;
  const std::shared_ptr<LiveEnds> live_;
  const std::shared_ptr<OwnerState> state_;
  natsSubscription* subscription_;
  const size_t max_message_size_;
  ChannelEndCounters counters_;
};

class NatsWorkersScheduler final : public Scheduler {
 public:
  static absl::StatusOr<std::unique_ptr<Scheduler>> Create(const NatsWorkersOptions& options) {
    if (absl::Status valid = wire::CheckAckWait(options.ack_wait); !valid.ok()) return valid;
    std::string url = options.url;
    if (url.empty()) {
      absl::StatusOr<std::string> broker = nats_platform::BrokerUrl();
      if (!broker.ok()) return broker.status();
      url = *std::move(broker);
    }
    auto scheduler = std::unique_ptr<NatsWorkersScheduler>(new NatsWorkersScheduler(url));
    nats_platform::ConnectionOptions connection_options;
    connection_options.allow_reconnect = true;
    connection_options.on_interrupted = [live = scheduler->live_] {
      live->ForEach([](OwnerState& state) { state.Interrupt(); });
    };
    connection_options.on_lost = [live = scheduler->live_] {
      live->ForEach([](OwnerState& state) { state.Lose(ConnectionLostError()); });
    };
    absl::StatusOr<std::shared_ptr<Connection>> connection =
        Connection::Open(url, std::move(connection_options));
    if (!connection.ok()) return connection.status();
    scheduler->connection_ = *std::move(connection);
    jsOptions js_options;
    jsOptions_Init(&js_options);
    js_options.Wait = kPublishTimeoutMs;
    natsStatus status = natsConnection_JetStream(&scheduler->js_, scheduler->connection_->handle(),
                                                 &js_options);
    if (status != NATS_OK) return NatsError("JetStream context", status);
    if (absl::Status queue = wire::EnsureQueue(scheduler->js_, options.ack_wait); !queue.ok()) {
      return queue;
    }
    return scheduler;
  }

  ~NatsWorkersScheduler() override {
    if (js_ != nullptr) jsCtx_Destroy(js_);
  }

  SchedulerMetrics metrics() const override {
    SchedulerMetrics metrics;
    metrics.units_started = published_.load(std::memory_order_relaxed);
    metrics.spawned_outside = metrics.units_started;
    return metrics;
  }

  absl::Status Schedule(Work work) override {
    if (!work) return absl::InvalidArgumentError("nats_workers: empty work");
    return absl::FailedPreconditionError(
        "nats_workers runs registered entries in worker processes (Task::CreateNamed); a closure "
        "cannot leave this process");
  }

  absl::StatusOr<std::unique_ptr<RemoteOwnerEnd>> StartNamedEntry(
      absl::string_view entry_name, const ChannelOptions& options) override {
    // A Run racing with Shutdown() may still be queued: the contract
    // refuses only runs that begin after it.
    if (shut_down_.load(std::memory_order_acquire)) {
      return absl::FailedPreconditionError(absl::StrCat(
          "nats_workers: the scheduler is shut down; entry ", entry_name, " was not queued"));
    }
    if (absl::StatusOr<RegisteredEntry> entry = FindEntry(entry_name); !entry.ok()) {
      return entry.status();
    }
    const size_t window =
        options.buffer_bytes == 0 ? kDefaultWindow
                                  : std::max<size_t>(options.buffer_bytes, wire::kMinimumWindow);
    const size_t max_piece =
        std::min(connection_->max_payload() - wire::kPieceHeaderSize,
                 window / 2 - wire::kPieceOverhead);
    auto state = std::make_shared<OwnerState>(connection_->handle(), window,
                                              options.max_message_size, max_piece);
    if (absl::Status opened = state->Open(); !opened.ok()) return opened;
    const std::string subject = connection_->NextUniqueSubject();
    absl::StatusOr<natsSubscription*> subscription = nats_platform::SubscribeShared(
        connection_->handle(), subject, state, [&state] { state->Close(); });
    if (!subscription.ok()) return subscription.status();
    auto end = std::make_unique<OwnerEnd>(connection_, live_, state, *subscription,
                                          options.max_message_size);
    // Stored by JetStream before this returns: from here on the task is
    // not lost. The worker's hello needs the subscription above.
    const std::string job = wire::EncodeJob({.entry = std::string(entry_name),
                                             .owner_subject = subject,
                                             .window = window,
                                             .max_message_size = options.max_message_size});
    jsPubAck* ack = nullptr;
    jsErrCode error = static_cast<jsErrCode>(0);
    const natsStatus status = js_Publish(&ack, js_, wire::kJobSubject, job.data(),
                                         static_cast<int>(job.size()), nullptr, &error);
    if (status == NATS_OK) state->SetJobSequence(ack->Sequence);
    jsPubAck_Destroy(ack);
    if (status != NATS_OK) {
      return NatsError(absl::StrCat("queueing entry ", entry_name, " (JetStream error ", error, ")"),
                       status);
    }
    published_.fetch_add(1, std::memory_order_relaxed);
    return end;
  }

  // Jobs already queued stay with JetStream and its workers; only new ones
  // are refused.
  absl::Status Shutdown() override {
    shut_down_.store(true, std::memory_order_release);
    return absl::OkStatus();
  }
  bool IsCurrentThreadOwned() const override { return false; }
  size_t concurrency() const override { return 1; }
  std::string name() const override { return absl::StrCat("nats_workers(", url_, ")"); }
  SchedulerCapabilities capabilities() const override {
    SchedulerCapabilities capabilities;
    capabilities.runs_named_entries_elsewhere = true;
    return capabilities;
  }

 private:
  explicit NatsWorkersScheduler(std::string url) : url_(std::move(url)) {}

  const std::string url_;
  std::shared_ptr<Connection> connection_;
  jsCtx* js_ = nullptr;
  std::atomic<uint64_t> published_{0};
  std::atomic<bool> shut_down_{false};
  const std::shared_ptr<LiveEnds> live_ = std::make_shared<LiveEnds>();
};

}  // namespace

absl::StatusOr<std::unique_ptr<Scheduler>> NewNatsWorkersScheduler(const NatsWorkersOptions& options) {
  return NatsWorkersScheduler::Create(options);
}

}  // namespace taskrt
