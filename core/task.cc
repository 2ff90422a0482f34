#include "core/task.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "core/errors.h"

namespace taskrt {

// State shared by the owner's Task and the scheduled entry. The entry's
// closure holds a reference, so a destroyed (detached) Task frees nothing
// the entry still uses.
struct Task::Shared {
  TaskEntry entry;
  ChannelPair channel;  // task_end: the entry's; owner_end: the owner's
  std::atomic<bool> cancel{false};
  std::atomic<bool> entry_done{false};
  int result = 0;  // written before entry_done is released
};

const char* TaskStateName(TaskState state) {
  switch (state) {
    case TaskState::kCreated:
      return "created";
    case TaskState::kRunning:
      return "running";
    case TaskState::kFinished:
      return "finished";
  }
  return "unknown";
}

absl::Status TaskContext::Write(absl::Span<const char> message) { return Send(*end_, message); }

absl::StatusOr<size_t> TaskContext::Read(absl::Span<char> out) { return Receive(*end_, out); }

absl::Status TaskContext::WriteUntil(absl::Span<const char> message, absl::Time deadline) {
  return SendUntil(*end_, message, deadline);
}

absl::StatusOr<size_t> TaskContext::ReadUntil(absl::Span<char> out, absl::Time deadline) {
  return ReceiveUntil(*end_, out, deadline);
}

bool TaskContext::cancel_requested() const {
  return cancel_ != nullptr && cancel_->load(std::memory_order_acquire);
}

int RunEntryOn(const RegisteredEntry& entry, ChannelEnd& task_end, int attempt,
               const std::atomic<bool>* cancel) {
  TaskContext context(&task_end, cancel, attempt);
  return entry(context);
}

absl::StatusOr<std::unique_ptr<Task>> Task::Create(TaskEntry entry) {
  if (!entry) return absl::InvalidArgumentError("Task::Create: the entry is empty");
  return std::unique_ptr<Task>(new Task(std::move(entry), std::string()));
}

absl::StatusOr<std::unique_ptr<Task>> Task::CreateNamed(absl::string_view name) {
  absl::StatusOr<RegisteredEntry> entry = FindEntry(name);
  if (!entry.ok()) return entry.status();
  return std::unique_ptr<Task>(new Task(*std::move(entry), std::string(name)));
}

absl::StatusOr<std::unique_ptr<Task>> Task::CreateNamed(absl::string_view name,
                                                        TaskEntry local_entry) {
  if (!local_entry) {
    return absl::InvalidArgumentError("Task::CreateNamed: the local entry is empty");
  }
  absl::StatusOr<RegisteredEntry> entry = FindEntry(name);
  if (!entry.ok()) return entry.status();
  return std::unique_ptr<Task>(new Task(std::move(local_entry), std::string(name)));
}

Task::Task(TaskEntry entry, std::string entry_name)
    : shared_(std::make_shared<Shared>()), entry_name_(std::move(entry_name)) {
  shared_->entry = std::move(entry);
}

Task::~Task() {
  shared_->cancel.store(true, std::memory_order_release);
  if (watch_ != 0) {
    // Cannot fail for a watch we hold; nothing to report from a destructor.
    loop_->Unwatch(watch_).IgnoreError();
  }
  // The entry keeps the shared state alive; closing our end makes its writes
  // fail and its reads end instead of waiting for an owner that is gone.
  if (shared_->channel.owner_end != nullptr) shared_->channel.owner_end->Close();
}

absl::Status Task::Run(const TaskEnvironment& env) {
  const bool elsewhere =
      env.scheduler != nullptr && env.scheduler->capabilities().runs_named_entries_elsewhere;
  if (env.scheduler == nullptr || (env.channels == nullptr && !elsewhere) || env.loop == nullptr) {
    return absl::InvalidArgumentError(
        "Task::Run: the environment needs a scheduler, a channel factory and an event loop");
  }
  if (elsewhere && entry_name_.empty()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "Task::Run: ", env.scheduler->name(),
        ": this scheduler runs entries in other processes; create the task by name "
        "(Task::CreateNamed)"));
  }
  TaskState expected = TaskState::kCreated;
  if (!state_.compare_exchange_strong(expected, TaskState::kRunning)) {
    return absl::FailedPreconditionError(
        absl::StrCat("Task::Run: the task was already run (state: ", TaskStateName(expected), ")"));
  }
  absl::Status started = elsewhere ? StartElsewhere(env) : StartHere(env);
  if (!started.ok()) state_.store(TaskState::kCreated);
  return started;
}

absl::Status Task::StartElsewhere(const TaskEnvironment& env) {
  absl::StatusOr<std::unique_ptr<RemoteOwnerEnd>> end =
      env.scheduler->StartNamedEntry(entry_name_, env.channel_options);
  if (!end.ok()) return end.status();
  if (*end == nullptr) {
    return absl::InternalError(absl::StrCat("Task::Run: ", env.scheduler->name(),
                                            " started entry \"", entry_name_,
                                            "\" but returned no channel end"));
  }
  RemoteOwnerEnd* remote = end->get();
  loop_ = env.loop;
  absl::StatusOr<WatchId> watch =
      loop_->Watch(remote->receive_readiness(), [this] { OnChannelEvent(); });
  if (!watch.ok()) {
    remote->Close();  // the entry started: tell it nobody listens
    return watch.status();
  }
  watch_ = *watch;
  remote_end_ = remote;
  shared_->channel.owner_end = *std::move(end);
  // The entry the Task holds never runs here.
  shared_->entry = nullptr;
  return absl::OkStatus();
}

absl::Status Task::StartHere(const TaskEnvironment& env) {
  absl::StatusOr<ChannelPair> pair = env.channels->CreatePair(env.channel_options);
  if (!pair.ok()) return pair.status();
  shared_->channel = *std::move(pair);
  loop_ = env.loop;
  absl::StatusOr<WatchId> watch =
      loop_->Watch(shared_->channel.owner_end->receive_readiness(), [this] { OnChannelEvent(); });
  if (!watch.ok()) {
    shared_->channel = ChannelPair{};
    return watch.status();
  }
  watch_ = *watch;

  absl::Status scheduled = env.scheduler->Schedule([shared = shared_] {
    TaskContext context(shared->channel.task_end.get(), &shared->cancel, /*attempt=*/1);
    const int result = shared->entry(context);
    shared->entry = nullptr;  // free what the entry captured, here and now
    shared->result = result;
    shared->entry_done.store(true, std::memory_order_release);
    // The owner's loop sees this close and marks the task finished.
    shared->channel.task_end->Close();
  });
  if (!scheduled.ok()) {
    loop_->Unwatch(watch_).IgnoreError();
    watch_ = 0;
    shared_->channel = ChannelPair{};
    return scheduled;
  }
  return absl::OkStatus();
}

void Task::OnChannelEvent() {
  if (finished()) return;
  if (const std::optional<int> result = DoneAndDeliveredResult()) {
    result_ = *result;
    state_.store(TaskState::kFinished, std::memory_order_release);
    loop_->Unwatch(watch_).IgnoreError();
    watch_ = 0;
  }
  std::shared_ptr<Callback> callback;
  std::shared_ptr<Resumable> request;
  {
    MutexLock lock(&binding_mu_);
    callback = callback_;
    request = request_.lock();
  }
  if (callback == nullptr && request == nullptr) return;
  owner_drained_ = false;
  const std::weak_ptr<bool> alive = alive_;
  // Either may destroy this Task: `alive` says whether it did.
  if (callback != nullptr) {
    (*callback)(*this);
  } else {
    request->Resume();
  }
  RecallIfUnread(alive);
}

std::optional<int> Task::DoneAndDeliveredResult() {
  if (remote_end_ != nullptr) return remote_end_->EntryResult();
  // The entry's messages may still be on their way when it has returned
  // (a channel across a broker); its close comes behind them.
  if (shared_->entry_done.load(std::memory_order_acquire) &&
      !owner_end()->MessagesMayBeInFlight()) {
    return shared_->result;
  }
  return std::nullopt;
}

void Task::RecallIfUnread(const std::weak_ptr<bool>& alive) {
  if (alive.expired() || finished() || recall_posted_) return;
  // The readiness fires only for news: a message left unread would wait
  // for the next one (and a writer blocked on a full channel, for ever).
  // An entry that has returned is news of its own, whatever the channel
  // said: the next call is the final one.
  if (!EntryDoneAndDelivered() && (owner_drained_ || !owner_end()->ReceiveReady())) {
    return;
  }
  PostRecall(alive);
}

void Task::PostRecall(const std::weak_ptr<bool>& alive) {
  if (recall_posted_) return;
  recall_posted_ = true;
  absl::Status posted = loop_->Post([this, alive] {
    if (alive.expired()) return;  // destroyed meanwhile; nothing to call
    recall_posted_ = false;
    // Looked again now: never a call with nothing to read (a Kore callback
    // reads with a blocking call).
    if (EntryDoneAndDelivered() || owner_end()->ReceiveReady()) {
      OnChannelEvent();
    }
  });
  if (!posted.ok()) recall_posted_ = false;  // only for empty work, which this is not
}

absl::StatusOr<size_t> Task::NoteReceive(absl::StatusOr<size_t> result) {
  // WouldBlock arms the readiness; any other error is final.
  owner_drained_ = !result.ok();
  return result;
}

absl::Status Task::BindCallback(Callback callback) {
  if (!callback) return absl::InvalidArgumentError("Task::BindCallback: the callback is empty");
  if (finished()) return absl::FailedPreconditionError("Task::BindCallback: the task has finished");
  MutexLock lock(&binding_mu_);
  if (request_bound_) {
    return absl::FailedPreconditionError(
        "Task::BindCallback: a request is already bound to this task; a task has one binding");
  }
  callback_ = std::make_shared<Callback>(std::move(callback));
  RecallIfBoundLate();
  return absl::OkStatus();
}

void Task::RecallIfBoundLate() {
  // Bound after Run(): what arrived while nothing was bound raised no call
  // that will come again. One call on the loop looks.
  if (state() == TaskState::kRunning && loop_ != nullptr) PostRecall(alive_);
}

absl::Status Task::BindRequest(std::weak_ptr<Resumable> request) {
  if (request.expired()) return absl::InvalidArgumentError("Task::BindRequest: the request is gone");
  if (finished()) return absl::FailedPreconditionError("Task::BindRequest: the task has finished");
  MutexLock lock(&binding_mu_);
  if (callback_ != nullptr) {
    return absl::FailedPreconditionError(
        "Task::BindRequest: a callback is already bound to this task; a task has one binding");
  }
  request_ = std::move(request);
  request_bound_ = true;
  RecallIfBoundLate();
  return absl::OkStatus();
}

absl::StatusOr<int> Task::result() const {
  if (!finished()) {
    return absl::FailedPreconditionError(
        absl::StrCat("Task::result: the task has not finished (state: ", TaskStateName(state()), ")"));
  }
  return result_;
}

ChannelEnd* Task::owner_end() const { return shared_->channel.owner_end.get(); }

absl::Status Task::Write(absl::Span<const char> message) {
  if (owner_end() == nullptr) return absl::FailedPreconditionError("Task::Write: the task has not been run");
  return Send(*owner_end(), message);
}

absl::StatusOr<size_t> Task::Read(absl::Span<char> out) {
  if (owner_end() == nullptr) return absl::FailedPreconditionError("Task::Read: the task has not been run");
  return NoteReceive(Receive(*owner_end(), out));
}

absl::Status Task::WriteUntil(absl::Span<const char> message, absl::Time deadline) {
  if (owner_end() == nullptr) {
    return absl::FailedPreconditionError("Task::WriteUntil: the task has not been run");
  }
  return SendUntil(*owner_end(), message, deadline);
}

absl::StatusOr<size_t> Task::ReadUntil(absl::Span<char> out, absl::Time deadline) {
  if (owner_end() == nullptr) {
    return absl::FailedPreconditionError("Task::ReadUntil: the task has not been run");
  }
  return NoteReceive(ReceiveUntil(*owner_end(), out, deadline));
}

absl::StatusOr<size_t> Task::TryRead(absl::Span<char> out) {
  if (owner_end() == nullptr) {
    return absl::FailedPreconditionError("Task::TryRead: the task has not been run");
  }
  return NoteReceive(owner_end()->TryReceive(out));
}

void Task::RequestCancel() {
  shared_->cancel.store(true, std::memory_order_release);
  // The entry's flag is in another process: the scheduler carries the news.
  if (remote_end_ != nullptr) remote_end_->RequestCancel();
}

bool Task::cancel_requested() const { return shared_->cancel.load(std::memory_order_acquire); }

}  // namespace taskrt
