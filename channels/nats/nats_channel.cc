#include "channels/nats/nats_channel.h"

#include <nats/nats.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "core/channel_counters.h"
#include "core/errors.h"
#include "core/mutex.h"
#include "platform/nats/broker.h"
#include "platform/nats/connection.h"

namespace taskrt {
namespace {

using nats_platform::Connection;
using nats_platform::ConnectionLostError;
using nats_platform::MessagePtr;
using nats_platform::NatsError;
using nats_platform::WaitPoint;

constexpr size_t kDefaultWindow = 256 * 1024;
// What a piece costs against the window beyond its payload, so that empty
// messages are bounded too.
constexpr size_t kPieceOverhead = 16;
constexpr size_t kMinimumWindow = 4 * kPieceOverhead;

// The kinds of piece, carried as the reply subject; see the header.
constexpr char kLastKind[] = "";
constexpr char kMoreKind[] = "m";
constexpr char kCreditKind[] = "c";
constexpr char kCloseKind[] = "x";
constexpr char kBlockedKind[] = "b";

absl::string_view KindOf(natsMsg* message) {
  const char* reply = natsMsg_GetReply(message);
  return reply == nullptr ? absl::string_view() : absl::string_view(reply);
}

// What an end's subscription fills, on the library's delivery thread. The
// subscription holds it (a shared_ptr) until the library says it will call
// no more (OnComplete), so it may outlive the end.
class Inbox {
 public:
  Inbox(natsConnection* connection, std::string peer_subject, uint64_t credit_threshold)
      : connection_(connection),
        peer_subject_(std::move(peer_subject)),
        credit_threshold_(credit_threshold) {}

  static absl::StatusOr<std::shared_ptr<Inbox>> Create(natsConnection* connection,
                                                       std::string peer_subject,
                                                       uint64_t credit_threshold) {
    auto inbox = std::make_shared<Inbox>(connection, std::move(peer_subject), credit_threshold);
    for (WaitPoint* point : {&inbox->receive_, &inbox->send_}) {
      if (absl::Status opened = point->Open(); !opened.ok()) return opened;
    }
    return inbox;
  }

  // Subscribes `subject`; the subscription delivers here.
  absl::StatusOr<natsSubscription*> Subscribe(natsConnection* connection,
                                              const std::string& subject,
                                              const std::shared_ptr<Inbox>& self) {
    return nats_platform::SubscribeShared(connection, subject, self, [this] { BeginClosing(); });
  }

  // Before the end unsubscribes: the end of the subscription that follows
  // is not a lost connection.
  void BeginClosing() {
    MutexLock lock(&mutex_);
    closing_ = true;
  }

  // The next piece, or null with the receive side armed. `failure` is set
  // when none will come because the connection is gone.
  MessagePtr Next(absl::Status& failure) {
    MutexLock lock(&mutex_);
    if (!pieces_.empty()) {
      MessagePtr piece = std::move(pieces_.front());
      pieces_.pop_front();
      return piece;
    }
    failure = failure_;
    if (failure.ok()) receive_.Arm();
    return nullptr;
  }

  // Kind of the next piece without taking it ("" if none), for
  // ReceiveReady; arms the receive side when there is none.
  bool PeekKind(absl::string_view& kind) {
    MutexLock lock(&mutex_);
    if (pieces_.empty()) {
      if (failure_.ok()) receive_.Arm();
      return false;
    }
    kind = KindOf(pieces_.front().get());
    return true;
  }

  // Counts `bytes` of pieces taken, and hands them back to the peer as
  // credit once they reach the threshold, or at once when the peer said it
  // is blocked.
  // A publish that fails keeps the count for the next try; a lost
  // connection is reported by the subscription's end (OnComplete), not
  // here, so that a receive never fails after taking a piece.
  void Consumed(uint64_t bytes) {
    MutexLock lock(&mutex_);
    unacknowledged_ += bytes;
    if (unacknowledged_ < credit_threshold_ && !peer_blocked_) return;
    ReturnCredit().IgnoreError();
  }

  // The peer's close cannot come through the broker (its publish failed):
  // the peer's end says so directly, both ends being of this process.
  void MarkPeerClosed() {
    MutexLock lock(&mutex_);
    peer_closed_ = true;
    if (failure_.ok()) failure_ = ConnectionLostError();
    receive_.Signal();
    send_.Signal();
  }

  bool Failed() {
    MutexLock lock(&mutex_);
    return !failure_.ok();
  }

  // True once nothing more can arrive: the peer's close is here (behind
  // everything it sent), or the connection is gone.
  bool NothingMoreToCome() {
    MutexLock lock(&mutex_);
    return peer_closed_ || !failure_.ok();
  }

  // Credit returned by the peer since the last call; arms the send side
  // when there is none. Fails when the peer closed or the connection is
  // gone.
  absl::StatusOr<uint64_t> TakeCredit(bool arm_if_none) {
    MutexLock lock(&mutex_);
    if (!failure_.ok()) return failure_;
    if (peer_closed_) return absl::FailedPreconditionError("nats channel: the peer closed");
    const uint64_t credit = std::exchange(credit_, 0);
    if (credit == 0 && arm_if_none) send_.Arm();
    return credit;
  }

  // For a watcher that starts now: armed, or signalled at once when news
  // is already here (the watcher may not try before it waits).
  Readiness WatchReceive() {
    MutexLock lock(&mutex_);
    return {receive_.Watch(!pieces_.empty() || !failure_.ok()), POLLIN};
  }
  Readiness WatchSend() {
    MutexLock lock(&mutex_);
    return {send_.Watch(credit_ != 0 || peer_closed_ || !failure_.ok()), POLLIN};
  }

  // The subscription's callbacks (SubscribeShared).
  static void OnMessage(natsConnection*, natsSubscription*, natsMsg* raw, void* closure) {
    MessagePtr message(raw);
    Inbox& inbox = **static_cast<std::shared_ptr<Inbox>*>(closure);
    const absl::string_view kind = KindOf(message.get());
    uint64_t credit = 0;
    const bool is_credit = kind == kCreditKind && natsMsg_GetDataLength(message.get()) == sizeof credit;
    if (is_credit) std::memcpy(&credit, natsMsg_GetData(message.get()), sizeof credit);
    MutexLock lock(&inbox.mutex_);
    if (is_credit) {
      // Saturating: a hostile peer's huge credit must not wrap; the sender
      // refuses credit beyond what it has outstanding (GatherCredit).
      inbox.credit_ = credit > UINT64_MAX - inbox.credit_ ? UINT64_MAX : inbox.credit_ + credit;
      inbox.send_.Wake();
      return;
    }
    if (kind == kBlockedKind && natsMsg_GetDataLength(message.get()) == 0) {
      // The peer waits for credit: what was taken and not yet handed back
      // goes now, or with the next piece taken.
      if (inbox.closing_) return;
      if (inbox.unacknowledged_ == 0) {
        inbox.peer_blocked_ = true;
      } else {
        inbox.ReturnCredit().IgnoreError();  // a failed publish: the connection is gone
      }
      return;
    }
    // Data, the close, and anything malformed, which the receive reports in
    // its place in the order.
    inbox.pieces_.push_back(std::move(message));
    if (kind != kCloseKind) {
      inbox.receive_.Wake();
      return;
    }
    inbox.peer_closed_ = true;
    // News for any watcher, armed or not: an owner that waits for the close
    // behind the messages (MessagesMayBeInFlight) may have read the last of
    // them without finding the end empty.
    inbox.receive_.Signal();
    inbox.send_.Signal();
  }

  static void OnComplete(void* closure) {
    auto* holder = static_cast<std::shared_ptr<Inbox>*>(closure);
    {
      Inbox& inbox = **holder;
      MutexLock lock(&inbox.mutex_);
      if (!inbox.closing_) {
        inbox.failure_ = ConnectionLostError();
        inbox.receive_.Signal();
        inbox.send_.Signal();
      }
    }
    delete holder;
  }

 private:
  absl::Status ReturnCredit() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_) {
    const uint64_t credit = unacknowledged_;
    const natsStatus status = natsConnection_PublishRequest(connection_, peer_subject_.c_str(),
                                                            kCreditKind, &credit, sizeof credit);
    if (status != NATS_OK) return NatsError("publish", status);
    unacknowledged_ = 0;
    peer_blocked_ = false;
    return absl::OkStatus();
  }

  // Used to hand credit back, by the end and by the delivery thread (which
  // stops once closing_ is set, before the end lets go of the connection).
  natsConnection* const connection_;
  const std::string peer_subject_;
  const uint64_t credit_threshold_;

  Mutex mutex_;
  uint64_t unacknowledged_ ABSL_GUARDED_BY(mutex_) = 0;  // bytes taken, not yet handed back
  bool peer_blocked_ ABSL_GUARDED_BY(mutex_) = false;
  std::deque<MessagePtr> pieces_ ABSL_GUARDED_BY(mutex_);
  uint64_t credit_ ABSL_GUARDED_BY(mutex_) = 0;
  bool peer_closed_ ABSL_GUARDED_BY(mutex_) = false;
  bool closing_ ABSL_GUARDED_BY(mutex_) = false;
  absl::Status failure_ ABSL_GUARDED_BY(mutex_);
  WaitPoint receive_ ABSL_GUARDED_BY(mutex_);
  WaitPoint send_ ABSL_GUARDED_BY(mutex_);
};

class NatsEnd final : public ChannelEnd {
 public:
  // An end receiving on `subject` and sending to `peer_subject`; credit
  // goes back per quarter window.
  static absl::StatusOr<std::unique_ptr<NatsEnd>> Create(std::shared_ptr<Connection> connection,
                                                        const std::string& subject,
                                                        const std::string& peer_subject,
                                                        const ChannelOptions& options,
                                                        size_t window) {
    absl::StatusOr<std::shared_ptr<Inbox>> inbox =
        Inbox::Create(connection->handle(), peer_subject, window / 4);
    if (!inbox.ok()) return inbox.status();
    absl::StatusOr<natsSubscription*> subscription =
        (*inbox)->Subscribe(connection->handle(), subject, *inbox);
    if (!subscription.ok()) return subscription.status();
    return std::make_unique<NatsEnd>(std::move(connection), *std::move(inbox), *subscription,
                                     peer_subject, options, window);
  }

  // Each end tells the other's inbox of a close the broker cannot carry.
  static void Link(NatsEnd& a, NatsEnd& b) {
    a.peer_inbox_ = b.inbox_;
    b.peer_inbox_ = a.inbox_;
    LinkForTrace(a.counters_, b.counters_);
  }

  NatsEnd(std::shared_ptr<Connection> connection, std::shared_ptr<Inbox> inbox,
          natsSubscription* subscription, std::string peer_subject, const ChannelOptions& options,
          size_t window)
      : connection_(std::move(connection)),
        inbox_(std::move(inbox)),
        subscription_(subscription),
        peer_subject_(std::move(peer_subject)),
        max_message_size_(options.max_message_size),
        window_(window),
        max_piece_(std::min(connection_->max_payload(), window / 2 - kPieceOverhead)),
        credit_(window) {}

  ~NatsEnd() override { Close(); }

  ChannelMetrics metrics() const override { return counters_.Snapshot(); }

  absl::Status TrySend(absl::Span<const char> message) override {
    if (closed_) return ClosedError();
    if (message.size() > max_message_size_) {
      return absl::ResourceExhaustedError(absl::StrCat("nats channel: message of ", message.size(),
                                                       " bytes is over the maximum of ",
                                                       max_message_size_));
    }
    if (!held_.has_value()) {
      if (absl::Status taken = GatherCredit(); !taken.ok()) return taken;
      if (message.size() <= max_piece_) {
        // One piece: it goes whole, or waits whole (as on every backend, a
        // receive that makes room for it is what frees the sender).
        for (;;) {
          if (message.size() + kPieceOverhead <= credit_) {
            if (absl::Status sent = Publish(message, kLastKind); !sent.ok()) return sent;
            credit_ -= message.size() + kPieceOverhead;
            counters_.Sent(message.size());
            return absl::OkStatus();
          }
          absl::Status waited = AwaitCredit();
          if (!waited.ok()) {
            if (IsWouldBlock(waited)) counters_.sends_blocked.Add();
            return waited;
          }
        }
      }
      // Larger than a piece: accepted now, published piece by piece.
      held_.emplace(message.data(), message.size());
      held_offset_ = 0;
      counters_.Sent(message.size());
      absl::Status pushed = PushHeld();
      if (!pushed.ok() && !IsWouldBlock(pushed)) {
        // Failed (peer closed, connection lost): nothing accepted after all.
        if (held_.has_value() && held_offset_ == 0) {
          counters_.Unsent(held_->size());
          held_.reset();
        }
        return pushed;
      }
      return absl::OkStatus();
    }
    absl::Status pushed = PushHeld();
    if (IsWouldBlock(pushed)) counters_.sends_blocked.Add();
    if (!pushed.ok()) return pushed;
    return TrySend(message);
  }

  absl::Status TryFlush() override {
    if (closed_) return ClosedError();
    if (!held_.has_value()) return absl::OkStatus();
    absl::Status pushed = PushHeld();
    if (IsWouldBlock(pushed)) counters_.sends_blocked.Add();
    return pushed;
  }

  absl::StatusOr<size_t> TryReceive(absl::Span<char> out) override {
    if (closed_) return ClosedError();
    if (peer_close_seen_) return PeerClosedError();
    for (;;) {
      absl::Status failure;
      MessagePtr piece = inbox_->Next(failure);
      if (piece == nullptr) {
        if (!failure.ok()) return failure;
        counters_.receives_blocked.Add();
        return WouldBlock();
      }
      const absl::string_view kind = KindOf(piece.get());
      const char* data = natsMsg_GetData(piece.get());
      const size_t size = static_cast<size_t>(natsMsg_GetDataLength(piece.get()));
      if (kind == kCloseKind) {
        peer_close_seen_ = true;
        if (assembling_) {
          assembly_.clear();
          assembling_ = false;
          return absl::DataLossError("nats channel: the peer closed in the middle of a message");
        }
        return PeerClosedError();
      }
      if (kind != kLastKind && kind != kMoreKind) {
        // Not the peer's (it sends no such thing): the message being
        // assembled goes on.
        return absl::DataLossError(absl::StrCat("nats channel: a message of unknown kind '", kind,
                                                "' (", size, " bytes) on this end's subject"));
      }
      inbox_->Consumed(size + kPieceOverhead);
      if (discarding_) {
        // The rest of a message that went over the maximum.
        discarding_ = kind == kMoreKind;
        continue;
      }
      if (!assembling_ && kind == kLastKind) {
        if (size > max_message_size_) return Oversized(size);
        return Deliver(absl::string_view(data, size), out);
      }
      if (assembly_.size() + size > max_message_size_) {
        const size_t announced = assembly_.size() + size;
        assembly_.clear();
        assembling_ = false;
        discarding_ = kind == kMoreKind;
        return Oversized(announced);
      }
      assembly_.append(data, size);
      assembling_ = kind == kMoreKind;
      if (assembling_) continue;
      std::string whole = std::move(assembly_);
      assembly_.clear();
      return Deliver(whole, out);
    }
  }

  Readiness send_readiness() const override { return inbox_->WatchSend(); }
  Readiness receive_readiness() const override { return inbox_->WatchReceive(); }

  bool ReceiveReady() override {
    if (closed_ || peer_close_seen_) return false;
    absl::string_view kind;
    if (!inbox_->PeekKind(kind)) return assembling_ && !inbox_->Failed();
    return kind != kCloseKind;
  }

  // Nothing more can come once the close has arrived, the connection is
  // gone, or this end is closed.
  bool MessagesMayBeInFlight() override {
    return !closed_ && !peer_close_seen_ && !inbox_->NothingMoreToCome();
  }

  bool TryTakeBackUnsent() override {
    if (!held_.has_value() || held_offset_ != 0) return false;
    counters_.Unsent(held_->size());
    held_.reset();
    return true;
  }

  void Close() override {
    if (closed_) return;
    closed_ = true;
    held_.reset();
    // Behind everything this end published, on the same connection: the
    // peer sees it after the last message. If the publish fails, the
    // connection is gone, and the peer (of this process) is told directly.
    if (!Publish({}, kCloseKind).ok()) {
      if (std::shared_ptr<Inbox> peer = peer_inbox_.lock()) peer->MarkPeerClosed();
    }
    inbox_->BeginClosing();
    natsSubscription_Unsubscribe(subscription_);
    connection_->Retire(subscription_);
    subscription_ = nullptr;
  }

  size_t max_message_size() const override { return max_message_size_; }

 private:
  static absl::Status ClosedError() {
    return absl::FailedPreconditionError("nats channel: this end is closed");
  }
  static absl::Status PeerClosedError() {
    return absl::OutOfRangeError("nats channel: closed by the peer and drained");
  }
  absl::Status Oversized(size_t size) const {
    return absl::DataLossError(absl::StrCat("nats channel: the peer sent a message of ", size,
                                            " bytes, over the maximum of ", max_message_size_));
  }

  absl::StatusOr<size_t> Deliver(absl::string_view message, absl::Span<char> out) {
    if (const size_t kept = std::min(out.size(), message.size()); kept > 0) {
      std::memcpy(out.data(), message.data(), kept);
    }
    counters_.Received(message.size());
    return message.size();
  }

  absl::Status Publish(absl::Span<const char> bytes, const char* kind) {
    const natsStatus status =
        *kind == '\0'
            ? natsConnection_Publish(connection_->handle(), peer_subject_.c_str(), bytes.data(),
                                     static_cast<int>(bytes.size()))
            : natsConnection_PublishRequest(connection_->handle(), peer_subject_.c_str(), kind,
                                            bytes.data(), static_cast<int>(bytes.size()));
    if (status != NATS_OK) return NatsError("publish", status);
    return absl::OkStatus();
  }

  absl::Status GatherCredit() {
    absl::StatusOr<uint64_t> credit = inbox_->TakeCredit(/*arm_if_none=*/false);
    if (!credit.ok()) return credit.status();
    return AddCredit(*credit);
  }

  // Credit can only give back what is outstanding: more is not the peer's.
  absl::Status AddCredit(uint64_t credit) {
    if (credit == 0) return absl::OkStatus();
    if (credit > window_ - credit_) {
      return absl::DataLossError(absl::StrCat("nats channel: ", credit,
                                              " bytes of credit returned, with only ",
                                              window_ - credit_, " outstanding"));
    }
    blocked_told_ = false;
    credit_ += credit;
    return absl::OkStatus();
  }

  // Out of credit: takes what came in meanwhile (OK), or arms the send
  // side and returns WouldBlock(), telling the receiver once.
  absl::Status AwaitCredit() {
    absl::StatusOr<uint64_t> credit = inbox_->TakeCredit(/*arm_if_none=*/true);
    if (!credit.ok()) return credit.status();
    if (*credit > 0) return AddCredit(*credit);
    // The receiver may be holding credit back, below its threshold, while
    // it has nothing more to take.
    if (!blocked_told_) {
      if (absl::Status told = Publish({}, kBlockedKind); !told.ok()) return told;
      blocked_told_ = true;
    }
    return WouldBlock();
  }

  // Publishes as much of the held message as the credit allows; OK once
  // all of it has left, WouldBlock() (send side armed) before.
  absl::Status PushHeld() {
    for (;;) {
      if (absl::Status taken = GatherCredit(); !taken.ok()) return taken;
      while (held_.has_value()) {
        const size_t remaining = held_->size() - held_offset_;
        const size_t piece = std::min(remaining, max_piece_);
        if (piece + kPieceOverhead > credit_) break;
        const bool last = piece == remaining;
        absl::Status sent =
            Publish(absl::MakeConstSpan(held_->data() + held_offset_, piece), last ? kLastKind : kMoreKind);
        if (!sent.ok()) return sent;
        credit_ -= piece + kPieceOverhead;
        held_offset_ += piece;
        if (last) held_.reset();
      }
      if (!held_.has_value()) return absl::OkStatus();
      if (absl::Status waited = AwaitCredit(); !waited.ok()) return waited;
    }
  }


  const std::shared_ptr<Connection> connection_;
  const std::shared_ptr<Inbox> inbox_;
  natsSubscription* subscription_;
  const std::string peer_subject_;
  const size_t max_message_size_;
  const size_t window_;
  const size_t max_piece_;
  std::weak_ptr<Inbox> peer_inbox_;
  ChannelEndCounters counters_;
  bool closed_ = false;

  // Sending.
  size_t credit_;
  std::optional<std::string> held_;  // a message accepted, not all published
  size_t held_offset_ = 0;
  bool blocked_told_ = false;  // the peer knows this end waits for credit

  // Receiving.
  std::string assembly_;
  bool assembling_ = false;
  bool discarding_ = false;
  bool peer_close_seen_ = false;
};

class NatsChannelFactory final : public ChannelFactory {
 public:
  explicit NatsChannelFactory(std::shared_ptr<Connection> connection)
      : connection_(std::move(connection)) {}

  absl::StatusOr<ChannelPair> CreatePair(const ChannelOptions& options) override {
    const size_t window =
        options.buffer_bytes == 0 ? kDefaultWindow : std::max(options.buffer_bytes, kMinimumWindow);
    const std::string pair = connection_->NextUniqueSubject();
    absl::StatusOr<std::unique_ptr<NatsEnd>> end_a =
        NatsEnd::Create(connection_, pair + ".a", pair + ".b", options, window);
    if (!end_a.ok()) return end_a.status();
    absl::StatusOr<std::unique_ptr<NatsEnd>> end_b =
        NatsEnd::Create(connection_, pair + ".b", pair + ".a", options, window);
    if (!end_b.ok()) return end_b.status();
    NatsEnd::Link(**end_a, **end_b);
    return ChannelPair{.task_end = *std::move(end_a), .owner_end = *std::move(end_b)};
  }

  std::string name() const override { return "nats"; }

 private:
  const std::shared_ptr<Connection> connection_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<ChannelFactory>> NewNatsChannelFactory(
    const NatsChannelOptions& options) {
  std::string url = options.url;
  if (url.empty()) {
    absl::StatusOr<std::string> broker = nats_platform::BrokerUrl();
    if (!broker.ok()) return broker.status();
    url = *std::move(broker);
  }
  absl::StatusOr<std::shared_ptr<Connection>> connection = Connection::Open(url);
  if (!connection.ok()) return connection.status();
  return std::make_unique<NatsChannelFactory>(*std::move(connection));
}

}  // namespace taskrt
