#ifndef TASKRT_PLATFORM_NATS_CONNECTION_H_
#define TASKRT_PLATFORM_NATS_CONNECTION_H_

// A connection to a NATS broker as the NATS backends share it, and the small
// pieces every NATS end needs: errors, owned messages, readiness eventfds.
//
// Connection
//   Open() connects to `url`. Without reconnect, a lost connection is for
//   good, and on_lost is called once. With reconnect, the library retries
//   for a while; on_interrupted is called at each loss (core NATS keeps
//   nothing for a client that is away: whatever was in flight may be gone),
//   on_lost once retries are given up. Both run on a library thread and
//   must not block on the connection.
//
//   Retire() takes an unsubscribed subscription to destroy once the
//   library's read loop can no longer be holding it (below).
//
// Thread safety: every call may come from any thread.

#include <nats/nats.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "core/mutex.h"

namespace taskrt::nats_platform {

// kUnavailable for a lost connection (with `operation` in the message),
// kResourceExhausted for memory, kUnavailable with the library's text else.
absl::Status NatsError(absl::string_view operation, natsStatus status);
absl::Status ConnectionLostError();

struct MessageDeleter {
  void operator()(natsMsg* message) const { natsMsg_Destroy(message); }
};
using MessagePtr = std::unique_ptr<natsMsg, MessageDeleter>;

struct ConnectionOptions {
  bool allow_reconnect = false;
  std::function<void()> on_interrupted;  // with reconnect: a loss, retried
  std::function<void()> on_lost;         // the connection is gone for good
};

class Connection {
 public:
  // kUnavailable, naming the URL, when no broker answers.
  static absl::StatusOr<std::shared_ptr<Connection>> Open(const std::string& url,
                                                         ConnectionOptions options = {});
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  // libnats before 3.6 (nats.c #637) has its read loop look a subscription
  // up and lock it in two steps, so destroying one right after
  // unsubscribing can free it between the two. The loop reads in order:
  // once a flush's PONG has come back after the unsubscribes, it is done
  // with any message that came before. So a thread of the connection's own
  // destroys retired subscriptions in batches, each after one flush (a
  // round trip no caller waits for).
  void Retire(natsSubscription* subscription);

  natsConnection* handle() const { return handle_; }
  size_t max_payload() const { return max_payload_; }
  // A subject no other connection uses: _INBOX.<unique id>.<counter>.
  std::string NextUniqueSubject();

 private:
  struct Hooks;
  Connection(natsConnection* handle, const char* prefix, std::unique_ptr<Hooks> hooks);
  void Reap();

  static constexpr size_t kRetiredBatch = 256;

  Mutex retired_mutex_;
  CondVar retired_ready_;
  std::vector<natsSubscription*> retired_ ABSL_GUARDED_BY(retired_mutex_);
  bool stopping_ ABSL_GUARDED_BY(retired_mutex_) = false;
  natsConnection* const handle_;
  const std::string prefix_;
  const size_t max_payload_;
  // The library's callbacks hold it until the connection is destroyed.
  const std::unique_ptr<Hooks> hooks_;
  std::atomic<uint64_t> next_subject_{0};
  // Last: it starts once everything it uses is built.
  std::thread reaper_;
};

// A readiness eventfd and whether its watcher waits for news. The owner's
// lock guards it; the destructor closes the fd.
struct WaitPoint {
  WaitPoint() = default;
  WaitPoint(const WaitPoint&) = delete;
  WaitPoint& operator=(const WaitPoint&) = delete;
  ~WaitPoint();

  // Creates the eventfd; a system error when it cannot.
  absl::Status Open();
  // News for an armed watcher.
  void Wake();
  // News for the watcher whether it is armed or not.
  void Signal() {
    armed = true;
    Wake();
  }
  // Called with news absent: the watcher waits for the next.
  void Arm();
  // For a watcher that starts now (the readiness accessors): signalled at
  // once when news is already waiting (it may not try before it waits),
  // armed otherwise. Returns the fd to watch.
  int Watch(bool news_waiting) {
    news_waiting ? Signal() : Arm();
    return fd;
  }

  int fd = -1;
  bool armed = false;      // the end's last Try* call found nothing
  bool signalled = false;  // fd holds a count not yet read
};

// Subscribes to `subject` for an end whose state the library's delivery
// threads share: State::OnMessage gets a heap std::shared_ptr<State> as
// its closure, which State::OnComplete must delete once the library calls
// no more. The library's pending limits are lifted (the ends' windows bound
// what waits; the library would drop messages instead). On failure nothing
// stays subscribed, and `abandon` runs first (the end of the subscription
// that follows is not a lost connection).
template <typename State, typename Abandon>
absl::StatusOr<natsSubscription*> SubscribeShared(natsConnection* connection,
                                                  const std::string& subject,
                                                  const std::shared_ptr<State>& state,
                                                  Abandon abandon) {
  auto* closure = new std::shared_ptr<State>(state);
  natsSubscription* subscription = nullptr;
  natsStatus status = natsConnection_Subscribe(&subscription, connection, subject.c_str(),
                                               &State::OnMessage, closure);
  if (status != NATS_OK) {
    delete closure;
    return NatsError("subscribe", status);
  }
  status = natsSubscription_SetPendingLimits(subscription, -1, -1);
  if (status == NATS_OK) {
    status = natsSubscription_SetOnCompleteCB(subscription, &State::OnComplete, closure);
  }
  if (status != NATS_OK) {
    abandon();
    natsSubscription_Unsubscribe(subscription);
    natsSubscription_Destroy(subscription);
    // OnComplete was not set, so nothing else frees it; and nobody knows
    // the subject yet, so no delivery is under way.
    delete closure;
    return NatsError("subscribe", status);
  }
  return subscription;
}

}  // namespace taskrt::nats_platform

#endif  // TASKRT_PLATFORM_NATS_CONNECTION_H_
