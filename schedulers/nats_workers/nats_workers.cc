#include "schedulers/nats_workers/nats_workers.h"

#include <nats/nats.h>

#include <algorithm>
#include <cstring>
#include <deque>
#include <optional>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
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
constexpr size_t kMinimumWindow = 4 * wire::kPieceOverhead;
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
  // current attempt had in flight may be gone, so only a new attempt counts.
  void Interrupt() {
    MutexLock lock(&mutex_);
    broken_ = true;
    assembling_.clear();
    assembling_active_ = false;
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
    if (closing_) return absl::FailedPreconditionError("nats_workers: this end is closed");
    if (result_.has_value()) {
      return absl::FailedPreconditionError("nats_workers: the task's entry has returned");
    }
    if (!failure_.ok()) return failure_;
    if (message.size() > max_message_size_) {
      return absl::ResourceExhaustedError(absl::StrCat("nats_workers: message of ", message.size(),
                                                       " bytes is over the maximum of ",
                                                       max_message_size_));
    }
    // Bounded by what the worker has yet to pull; one message always fits.
    if (unpulled_bytes_ > 0 && unpulled_bytes_ + message.size() > window_) {
      send_.Arm();
      counters.sends_blocked.Add();
      return WouldBlock();
    }
    log_.emplace_back(message.data(), message.size());
    unpulled_bytes_ += message.size();
    counters.Sent(message.size());
    if (pending_pull_ == log_.size() - 1) SendPulled(log_.size() - 1);
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

  bool ReceiveReady() {
    MutexLock lock(&mutex_);
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
    if (inbound_.empty() && !result_.has_value() && failure_.ok()) {
      receive_.Arm();
    } else {
      receive_.Signal();
    }
    return {receive_.fd, POLLIN};
  }

  Readiness WatchSend() {
    MutexLock lock(&mutex_);
    const bool room = unpulled_bytes_ == 0 || unpulled_bytes_ < window_;
    if (!room && !result_.has_value() && failure_.ok()) {
      send_.Arm();
    } else {
      send_.Signal();
    }
    return {send_.fd, POLLIN};
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
      // If this is lost, the worker learns from its keep-alive that nobody
      // listens.
      SendToWorker(wire::Header(wire::kClose, attempt_));
    }
  }

 private:
  void Take(natsMsg* message) {
    const std::optional<wire::Parsed> parsed = wire::Parse(wire::DataOf(message));
    MutexLock lock(&mutex_);
    if (!parsed.has_value()) {
      Reject(absl::StrCat("a message of ", natsMsg_GetDataLength(message),
                          " bytes too short for its header"));
      return;
    }
    absl::string_view rest = parsed->rest;
    switch (parsed->kind) {
      case wire::kHello:
        return Reply(message, Hello(parsed->attempt, rest));
      case wire::kKeepAlive: {
        const bool go_on = !closing_ && !result_.has_value() && parsed->attempt == attempt_ && !broken_;
        return Reply(message, go_on ? wire::kGoOn : wire::kStop);
      }
      case wire::kPull: {
        uint64_t index = 0;
        if (!wire::TakeU64(rest, index) || !rest.empty()) return Reject("a malformed pull");
        if (parsed->attempt != attempt_ || broken_) return;  // a stale attempt's
        return Pull(index);
      }
      case wire::kMore:
      case wire::kLast: {
        uint64_t sequence = 0;
        if (!wire::TakeU64(rest, sequence)) return Reject("a piece without its sequence");
        if (parsed->attempt != attempt_ || broken_) return;
        return Piece(sequence, rest, parsed->kind == wire::kLast);
      }
      case wire::kBlocked:
        if (parsed->attempt != attempt_ || broken_) return;
        if (unacknowledged_ > 0) {
          ReturnCredit();
        } else {
          peer_blocked_ = true;
        }
        return;
      case wire::kDone: {
        int32_t result = 0;
        uint64_t written = 0;
        if (!wire::TakeI32(rest, result) || !wire::TakeU64(rest, written) || !rest.empty()) {
          return Reject("a malformed done");
        }
        if (parsed->attempt != attempt_ || broken_ || closing_) return;
        if (written > accepted_ || assembling_active_) {
          inbound_.push_back(Inbound::Error(absl::DataLossError(absl::StrCat(
                                  "nats_workers: the entry wrote ", written, " messages and ",
                                  accepted_, " arrived whole"))));
        }
        result_ = result;
        receive_.Signal();
        send_.Signal();
        return;
      }
      case wire::kFailed:
        // Sent instead of a hello, by a worker that cannot run the entry.
        if (parsed->attempt < attempt_ || closing_ || result_.has_value()) return;
        inbound_.push_back(Inbound::Error(absl::NotFoundError(absl::StrCat("nats_workers: ", rest))));
        result_ = -1;
        receive_.Signal();
        send_.Signal();
        return;
      default:
        return Reject(absl::StrCat("a message of unknown kind '", absl::string_view(&parsed->kind, 1),
                                   "'"));
    }
  }

  const char* Hello(uint32_t attempt, absl::string_view worker_subject)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_) {
    if (result_.has_value()) return wire::kAlreadyDone;
    if (closing_ || attempt < attempt_ || worker_subject.empty()) return wire::kStop;
    if (attempt == attempt_ && !broken_) return wire::kStop;  // a second worker on one delivery
    // A new attempt: it pulls from the first message and starts with a
    // full window; the old one's credit and pulls are void.
    attempt_ = attempt;
    broken_ = false;
    worker_subject_ = std::string(worker_subject);
    assembling_.clear();
    assembling_active_ = false;
    discarding_ = false;
    unacknowledged_ = 0;
    peer_blocked_ = false;
    pending_pull_.reset();
    next_pull_ = 0;
    unpulled_bytes_ = 0;
    for (const std::string& logged : log_) unpulled_bytes_ += logged.size();
    if (cancel_requested_) SendToWorker(wire::Header(wire::kCancel, attempt_));
    return wire::kGoOn;
  }

  // A failed publish means the connection dropped: the attempt is
  // abandoned, and the next one is told again.
  void SendToWorker(const std::string& bytes) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_) {
    natsConnection_Publish(connection_, worker_subject_.c_str(), bytes.data(),
                           static_cast<int>(bytes.size()));
  }

  void Reply(natsMsg* request, const char* answer) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_) {
    const char* reply = natsMsg_GetReply(request);
    if (reply == nullptr || *reply == '\0') return Reject("a request without a reply subject");
    natsConnection_PublishString(connection_, reply, answer);
  }

  void Pull(uint64_t index) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_) {
    if (index < next_pull_) return;  // asked again: the answer is on its way
    for (; next_pull_ < index && next_pull_ < log_.size(); ++next_pull_) {
      unpulled_bytes_ -= log_[next_pull_].size();
    }
    send_.Wake();
    if (index < log_.size()) {
      SendPulled(index);
    } else {
      pending_pull_ = index;
    }
  }

  // Publishes the owner's message `index` to the current attempt, in pieces.
  void SendPulled(uint64_t index) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_) {
    pending_pull_.reset();
    const std::string& message = log_[index];
    size_t offset = 0;
    do {
      const size_t piece = std::min(max_piece_, message.size() - offset);
      const bool last = offset + piece == message.size();
      std::string out = wire::Header(last ? wire::kLast : wire::kMore, attempt_);
      wire::AppendU64(out, index);
      out.append(message, offset, piece);
      if (natsConnection_Publish(connection_, worker_subject_.c_str(), out.data(),
                                 static_cast<int>(out.size())) != NATS_OK) {
        // The connection dropped: the attempt is abandoned and a new one
        // pulls again.
        return;
      }
      offset += piece;
    } while (offset < message.size());
  }

  void Piece(uint64_t sequence, absl::string_view bytes, bool last)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_) {
    const size_t cost = bytes.size() + wire::kPieceOverhead;
    if (sequence < accepted_) {
      // A retry repeating what an earlier attempt delivered: dropped, and
      // the credit it cost goes back.
      Consumed(cost);
      return;
    }
    if (sequence > accepted_) {
      Consumed(cost);
      return Reject(absl::StrCat("a piece of message ", sequence, " while message ", accepted_,
                                 " is due"));
    }
    if (discarding_) {
      Consumed(cost);
      if (last) {
        discarding_ = false;
        ++accepted_;
      }
      return;
    }
    if (assembling_.size() + bytes.size() > max_message_size_) {
      const size_t announced = assembling_.size() + bytes.size();
      Consumed(cost);
      assembling_.clear();
        assembling_active_ = false;
      inbound_.push_back(Inbound::Error(absl::DataLossError(absl::StrCat(
                              "nats_workers: the worker sent a message of ", announced,
                              " bytes or more, over the maximum of ", max_message_size_))));
      receive_.Wake();
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

  // Something on the task's subject that no worker sends.
  void Reject(absl::string_view what) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_) {
    inbound_.push_back(Inbound::Error(
        absl::DataLossError(absl::StrCat("nats_workers: ", what, " on a task's subject"))));
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
    if (natsConnection_Publish(connection_, worker_subject_.c_str(), out.data(),
                               static_cast<int>(out.size())) != NATS_OK) {
      return;  // the connection dropped; the attempt is abandoned
    }
    unacknowledged_ = 0;
    peer_blocked_ = false;
  }

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
  // the connection dropped since (then only a newer attempt counts).
  uint32_t attempt_ ABSL_GUARDED_BY(mutex_) = 0;
  std::string worker_subject_ ABSL_GUARDED_BY(mutex_);
  bool broken_ ABSL_GUARDED_BY(mutex_) = false;

  // Worker to owner.
  std::deque<Inbound> inbound_ ABSL_GUARDED_BY(mutex_);
  uint64_t accepted_ ABSL_GUARDED_BY(mutex_) = 0;  // whole messages, all attempts
  std::string assembling_ ABSL_GUARDED_BY(mutex_);
  bool assembling_active_ ABSL_GUARDED_BY(mutex_) = false;
  bool discarding_ ABSL_GUARDED_BY(mutex_) = false;  // the rest of an oversized message
  uint64_t unacknowledged_ ABSL_GUARDED_BY(mutex_) = 0;
  bool peer_blocked_ ABSL_GUARDED_BY(mutex_) = false;

  // Owner to worker: everything written, for any attempt to pull.
  std::vector<std::string> log_ ABSL_GUARDED_BY(mutex_);
  uint64_t next_pull_ ABSL_GUARDED_BY(mutex_) = 0;
  size_t unpulled_bytes_ ABSL_GUARDED_BY(mutex_) = 0;
  std::optional<uint64_t> pending_pull_ ABSL_GUARDED_BY(mutex_);
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
    if (absl::StatusOr<RegisteredEntry> entry = FindEntry(entry_name); !entry.ok()) {
      return entry.status();
    }
    const size_t window =
        options.buffer_bytes == 0 ? kDefaultWindow : std::max(options.buffer_bytes, kMinimumWindow);
    const size_t max_piece =
        std::min(connection_->max_payload() - wire::kHeaderSize - 8, window / 2 - wire::kPieceOverhead);
    auto state = std::make_shared<OwnerState>(connection_->handle(), window,
                                              options.max_message_size, max_piece);
    if (absl::Status opened = state->Open(); !opened.ok()) return opened;
    const std::string subject = connection_->NextUniqueSubject();
    auto* closure = new std::shared_ptr<OwnerState>(state);
    natsSubscription* subscription = nullptr;
    natsStatus status = natsConnection_Subscribe(&subscription, connection_->handle(), subject.c_str(),
                                                 &OwnerState::OnMessage, closure);
    if (status != NATS_OK) {
      delete closure;
      return NatsError("subscribe", status);
    }
    status = natsSubscription_SetPendingLimits(subscription, -1, -1);
    if (status == NATS_OK) {
      status = natsSubscription_SetOnCompleteCB(subscription, &OwnerState::OnComplete, closure);
    }
    if (status != NATS_OK) {
      state->Close();
      natsSubscription_Unsubscribe(subscription);
      natsSubscription_Destroy(subscription);
      delete closure;  // nothing was published to the subject yet
      return NatsError("subscribe", status);
    }
    auto end = std::make_unique<OwnerEnd>(connection_, live_, state, subscription,
                                          options.max_message_size);
    // Stored by JetStream before this returns: from here on the task is
    // not lost. The worker's hello needs the subscription above.
    const std::string job = wire::EncodeJob({.entry = std::string(entry_name),
                                             .owner_subject = subject,
                                             .window = window,
                                             .max_message_size = options.max_message_size});
    jsPubAck* ack = nullptr;
    jsErrCode error = static_cast<jsErrCode>(0);
    status = js_Publish(&ack, js_, wire::kJobSubject, job.data(), static_cast<int>(job.size()),
                        nullptr, &error);
    if (status == NATS_OK) state->SetJobSequence(ack->Sequence);
    jsPubAck_Destroy(ack);
    if (status != NATS_OK) {
      return NatsError(absl::StrCat("queueing entry ", entry_name, " (JetStream error ", error, ")"),
                       status);
    }
    published_.fetch_add(1, std::memory_order_relaxed);
    return end;
  }

  absl::Status Shutdown() override { return absl::OkStatus(); }
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
  const std::shared_ptr<LiveEnds> live_ = std::make_shared<LiveEnds>();
};

}  // namespace

absl::StatusOr<std::unique_ptr<Scheduler>> NewNatsWorkersScheduler(const NatsWorkersOptions& options) {
  return NatsWorkersScheduler::Create(options);
}

}  // namespace taskrt
