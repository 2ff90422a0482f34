#include "platform/nats/connection.h"

#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <utility>

#include "absl/strings/str_cat.h"
#include "core/errors.h"

namespace taskrt::nats_platform {
namespace {

constexpr int64_t kConnectTimeoutMs = 5000;
constexpr int64_t kFlushTimeoutMs = 5000;
constexpr auto kFlushRetryPause = std::chrono::seconds(1);
// With reconnect: how long the library keeps trying before the connection
// is lost for good (kMaxReconnects x kReconnectWaitMs).
constexpr int kMaxReconnects = 60;
constexpr int64_t kReconnectWaitMs = 500;

}  // namespace

absl::Status NatsError(absl::string_view operation, natsStatus status) {
  if (status == NATS_CONNECTION_CLOSED || status == NATS_CONNECTION_DISCONNECTED ||
      status == NATS_STALE_CONNECTION) {
    return absl::UnavailableError(
        absl::StrCat("nats: ", operation, ": connection to the broker lost"));
  }
  if (status == NATS_NO_MEMORY) {
    return absl::ResourceExhaustedError(absl::StrCat("nats: ", operation, ": out of memory"));
  }
  return absl::UnavailableError(absl::StrCat("nats: ", operation, ": ", natsStatus_GetText(status)));
}

absl::Status ConnectionLostError() {
  return absl::UnavailableError("nats: connection to the broker lost");
}

struct Connection::Hooks {
  ConnectionOptions options;
  std::atomic<bool> closing{false};  // our own Close: not a loss
  // The library calls OnClosed last, on a thread of its own, after
  // natsConnection_Close has returned: the destructor waits for it.
  std::mutex mutex;
  std::condition_variable closed_changed;
  bool closed = false;

  static void OnDisconnected(natsConnection*, void* closure) {
    auto* hooks = static_cast<Hooks*>(closure);
    if (hooks->options.allow_reconnect && !hooks->closing.load() && hooks->options.on_interrupted) {
      hooks->options.on_interrupted();
    }
  }
  static void OnClosed(natsConnection*, void* closure) {
    auto* hooks = static_cast<Hooks*>(closure);
    if (!hooks->closing.load() && hooks->options.on_lost) hooks->options.on_lost();
    std::lock_guard<std::mutex> lock(hooks->mutex);
    hooks->closed = true;
    hooks->closed_changed.notify_all();
  }

  void AwaitClosed() {
    std::unique_lock<std::mutex> lock(mutex);
    closed_changed.wait(lock, [this] { return closed; });
  }
};

absl::StatusOr<std::shared_ptr<Connection>> Connection::Open(const std::string& url,
                                                            ConnectionOptions connection_options) {
  auto hooks = std::make_unique<Hooks>();
  hooks->options = std::move(connection_options);
  natsOptions* options = nullptr;
  natsStatus status = natsOptions_Create(&options);
  if (status != NATS_OK) return NatsError("options", status);
  status = natsOptions_SetURL(options, url.c_str());
  if (status == NATS_OK) status = natsOptions_SetAllowReconnect(options, hooks->options.allow_reconnect);
  if (status == NATS_OK && hooks->options.allow_reconnect) {
    status = natsOptions_SetMaxReconnect(options, kMaxReconnects);
    if (status == NATS_OK) status = natsOptions_SetReconnectWait(options, kReconnectWaitMs);
  }
  // One pool of delivery threads for every subscription, not one each.
  if (status == NATS_OK) status = natsOptions_UseGlobalMessageDelivery(options, true);
  // A message leaves at once instead of when the flusher thread wakes.
  if (status == NATS_OK) status = natsOptions_SetSendAsap(options, true);
  if (status == NATS_OK) status = natsOptions_SetTimeout(options, kConnectTimeoutMs);
  if (status == NATS_OK) {
    status = natsOptions_SetDisconnectedCB(options, &Hooks::OnDisconnected, hooks.get());
  }
  if (status == NATS_OK) status = natsOptions_SetClosedCB(options, &Hooks::OnClosed, hooks.get());
  natsConnection* handle = nullptr;
  if (status == NATS_OK) status = natsConnection_Connect(&handle, options);
  natsOptions_Destroy(options);
  if (status != NATS_OK) {
    return absl::UnavailableError(
        absl::StrCat("nats: cannot connect to ", url, ": ", natsStatus_GetText(status)));
  }
  natsInbox* inbox = nullptr;
  status = natsInbox_Create(&inbox);
  if (status != NATS_OK) {
    hooks->closing.store(true);
    natsConnection_Close(handle);
    hooks->AwaitClosed();
    natsConnection_Destroy(handle);
    return NatsError("unique subject", status);
  }
  auto connection = std::shared_ptr<Connection>(new Connection(handle, inbox, std::move(hooks)));
  natsInbox_Destroy(inbox);
  return connection;
}

Connection::Connection(natsConnection* handle, const char* prefix, std::unique_ptr<Hooks> hooks)
    : handle_(handle),
      prefix_(prefix),
      max_payload_(static_cast<size_t>(std::max<int64_t>(natsConnection_GetMaxPayload(handle), 1))),
      hooks_(std::move(hooks)),
      reaper_([this] { Reap(); }) {}

Connection::~Connection() {
  {
    MutexLock lock(&retired_mutex_);
    stopping_ = true;
  }
  retired_ready_.SignalAll();
  reaper_.join();
  hooks_->closing.store(true);
  // Closing stops the read loop; only then is no subscription in its hands.
  natsConnection_Close(handle_);
  hooks_->AwaitClosed();
  for (natsSubscription* subscription : retired_) natsSubscription_Destroy(subscription);
  natsConnection_Destroy(handle_);
}

void Connection::Retire(natsSubscription* subscription) {
  MutexLock lock(&retired_mutex_);
  retired_.push_back(subscription);
  if (retired_.size() >= kRetiredBatch) retired_ready_.Signal();
}

std::string Connection::NextUniqueSubject() {
  return absl::StrCat(prefix_, ".", next_subject_.fetch_add(1, std::memory_order_relaxed));
}

void Connection::Reap() {
  for (;;) {
    std::vector<natsSubscription*> batch;
    {
      MutexLock lock(&retired_mutex_);
      retired_ready_.Wait(&retired_mutex_, [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(retired_mutex_) {
        return stopping_ || retired_.size() >= kRetiredBatch;
      });
      if (stopping_) return;
      batch.swap(retired_);
    }
    if (natsConnection_FlushTimeout(handle_, kFlushTimeoutMs) != NATS_OK) {
      // The connection is away or stalled: they wait for a later flush (or
      // for the destructor, which destroys them after closing it).
      MutexLock lock(&retired_mutex_);
      retired_.insert(retired_.end(), batch.begin(), batch.end());
      retired_ready_.WaitUntil(&retired_mutex_, std::chrono::steady_clock::now() + kFlushRetryPause,
                               [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(retired_mutex_) {
                                 return stopping_;
                               });
      continue;
    }
    for (natsSubscription* retired : batch) natsSubscription_Destroy(retired);
  }
}

WaitPoint::~WaitPoint() {
  if (fd >= 0) close(fd);
}

absl::Status WaitPoint::Open() {
  fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (fd < 0) return ErrnoError("eventfd", errno);
  return absl::OkStatus();
}

void WaitPoint::Wake() {
  if (!armed) return;
  armed = false;
  signalled = true;
  const uint64_t one = 1;
  // Cannot fail short of the counter's 2^64 - 2 limit, unreachable here.
  [[maybe_unused]] const ssize_t ignored = write(fd, &one, sizeof one);
}

void WaitPoint::Arm() {
  if (signalled) {
    uint64_t count;
    [[maybe_unused]] const ssize_t ignored = read(fd, &count, sizeof count);
    signalled = false;
  }
  armed = true;
}

}  // namespace taskrt::nats_platform
