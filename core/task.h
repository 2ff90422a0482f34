#ifndef TASKRT_CORE_TASK_H_
#define TASKRT_CORE_TASK_H_

// Task: Kore's background task, in C++.
//
// A task runs an entry function on a Scheduler and talks to its owner over a
// Channel. The owner is whoever runs the EventLoop the task was started on;
// the loop calls the owner's bound callback (or resumes a bound request) on
// the loop thread when the task writes, and once more when it finishes.
//
// Life
//   kCreated   after Create().
//   kRunning   after Run() succeeded.
//   kFinished  after the entry returned *and* the owner's loop has seen the
//              task's end of the channel close (as in Kore). result() is
//              available from then on.
//
// Notifications (on the loop thread)
//   A bound callback is called when the task writes; several writes may be
//   coalesced into one call, and no message is lost: what a call leaves
//   unread stays queued, in order, for later reads. While messages are
//   unread after a call returns, the callback is called again (on the loop's
//   next round, after the other ready work), as with Kore's level-triggered
//   task sockets: a callback may read one message per call. When the task
//   has finished, the callback is called exactly once more, as the last
//   call, with finished() true; every message the task wrote and no call
//   read is still readable then, and unread ones cause no further call. A
//   bound request (a Resumable) is resumed on the same events, by the same
//   rules. A binding that leaves messages unread on purpose is called on
//   every round of the loop until they are read or the task finishes.
//   Binding both a callback and a request is refused (Kore aborts here).
//   Rebinding the same kind replaces the binding.
//
// The channel
//   Owner side: Write() / Read() / TryRead() on this object. Task side: the
//   TaskContext handed to the entry. Rules in core/channel.h: boundaries,
//   order, truncation that keeps the stream in step, zero-length messages,
//   the maximum size, and kOutOfRange on a closed, drained channel.
//
// Entries known by name, and entries that run in another process
//   CreateNamed() makes a task of an entry registered by name
//   (core/entry_registry.h). On a scheduler whose units run in other
//   processes (SchedulerCapabilities::runs_named_entries_elsewhere), only
//   such a task can run: Run() asks the scheduler to start the entry by its
//   name (Scheduler::StartNamedEntry) and takes the owner's end of the
//   channel it returns. Everything above holds there as well: the task is
//   finished once that end reports the entry's result
//   (RemoteOwnerEnd::EntryResult: the entry returned and all it wrote has
//   arrived); destroying the task closes the owner's end, and
//   RequestCancel() reaches the entry as far as the scheduler carries it
//   (RemoteOwnerEnd::RequestCancel).
//   A scheduler that retries an entry elsewhere (at least once) runs it
//   again with TaskContext::attempt() > 1. A process that runs entries for
//   owners elsewhere runs each one with RunEntryOn().
//
// Destruction and cancellation
//   Destroying a Task is safe at any point, including from its own callback.
//   A running task is asked to cancel (TaskContext::cancel_requested()) and
//   detached: its channel to the owner is closed, so its writes fail with
//   kFailedPrecondition and its reads with kOutOfRange, and its state is
//   freed only when its entry returns. RequestCancel() asks without
//   destroying.
//
// Thread safety
//   The owner-side methods are for the owner: the loop thread, or any one
//   thread while the loop is not running. state(), finished() and
//   cancel_requested() may be read from any thread. TaskContext belongs to
//   the entry that received it.

#include <atomic>
#include <cstddef>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "core/channel.h"
#include "core/entry_registry.h"
#include "core/event_loop.h"
#include "core/mutex.h"
#include "core/scheduler.h"

namespace taskrt {

enum class TaskState { kCreated = 1, kRunning = 2, kFinished = 3 };

const char* TaskStateName(TaskState state);

// Anything the loop can resume when a task writes or finishes, such as a
// request's state machine. Bound through a weak_ptr: a request that is gone
// is simply not resumed.
class Resumable {
 public:
  virtual ~Resumable() = default;
  virtual void Resume() = 0;
};

// Where a task runs: all three must outlive the task's run (the scheduler
// until the entry returned, the loop until the task is destroyed). A
// scheduler that runs entries in other processes makes its own channel
// (Scheduler::StartNamedEntry), so `channels` may be null with it.
struct TaskEnvironment {
  Scheduler* scheduler = nullptr;
  ChannelFactory* channels = nullptr;
  EventLoop* loop = nullptr;
  ChannelOptions channel_options;
};

// The task's own view, handed to its entry.
class TaskContext {
 public:
  // Sends one message to the owner; blocks (through the execution context)
  // until it has left the task's end.
  absl::Status Write(absl::Span<const char> message);
  // Receives one message from the owner; blocks until one arrives.
  absl::StatusOr<size_t> Read(absl::Span<char> out);
  // As Write and Read, giving up at `deadline` with kDeadlineExceeded and
  // leaving the channel as it was (core/channel.h: SendUntil, ReceiveUntil).
  absl::Status WriteUntil(absl::Span<const char> message, absl::Time deadline);
  absl::StatusOr<size_t> ReadUntil(absl::Span<char> out, absl::Time deadline);
  // True once the owner asked the task to stop (RequestCancel or destroy).
  bool cancel_requested() const;
  // Which run of the entry this is for its task: 1 for every local run; a
  // scheduler that retries an entry elsewhere (at least once) passes 2, 3,
  // ... so that an entry can know it is a retry (and, say, skip work an
  // earlier run finished).
  int attempt() const { return attempt_; }

 private:
  friend class Task;
  friend int RunEntryOn(const RegisteredEntry& entry, ChannelEnd& task_end, int attempt,
                        const std::atomic<bool>* cancel);
  TaskContext(ChannelEnd* end, const std::atomic<bool>* cancel, int attempt)
      : end_(end), cancel_(cancel), attempt_(attempt) {}

  ChannelEnd* const end_;                  // the task's end
  const std::atomic<bool>* const cancel_;  // null: never cancelled
  const int attempt_;
};

// Runs `entry` on the calling thread with a TaskContext whose Write/Read go
// to `task_end` and whose cancel_requested() reads `cancel` (may be null:
// never cancelled); returns the entry's value. For processes that run
// entries for owners elsewhere. `attempt` is what TaskContext::attempt()
// says (>= 1). `task_end` stays open: the caller closes it once the owner
// may learn that the entry returned, behind every message it wrote.
int RunEntryOn(const RegisteredEntry& entry, ChannelEnd& task_end, int attempt,
               const std::atomic<bool>* cancel);

using TaskEntry = absl::AnyInvocable<int(TaskContext&)>;

class Task {
 public:
  using Callback = absl::AnyInvocable<void(Task&)>;

  // kInvalidArgument for an empty entry.
  static absl::StatusOr<std::unique_ptr<Task>> Create(TaskEntry entry);

  // A task of the entry registered as `name` (core/entry_registry.h), with
  // a copy of it of its own. kNotFound (from FindEntry) when the name is not
  // registered: before anything runs or is sent.
  static absl::StatusOr<std::unique_ptr<Task>> CreateNamed(absl::string_view name);
  // As CreateNamed(name), but a run in this process calls `local_entry`
  // instead of the registered copy; a scheduler that runs entries elsewhere
  // still runs the entry registered as `name`. For a facade whose
  // registered entry is a wrapper that needs the owner's own state when the
  // entry runs beside it (kore/kore_tasks.cc: the caller's struct
  // kore_task). kInvalidArgument for an empty `local_entry`.
  static absl::StatusOr<std::unique_ptr<Task>> CreateNamed(absl::string_view name,
                                                           TaskEntry local_entry);

  // The name the task was created by; empty for a task created from a
  // closure (Create).
  const std::string& entry_name() const { return entry_name_; }

  ~Task();
  Task(const Task&) = delete;
  Task& operator=(const Task&) = delete;

  // Creates the channel, watches the owner's end on env.loop and schedules
  // the entry. kFailedPrecondition if already run; kInvalidArgument for a
  // missing scheduler, factory or loop; the backend's error if the channel
  // cannot be created or the scheduler refuses (the task stays kCreated).
  // On a scheduler that runs entries in other processes: starts the entry
  // by name instead (Scheduler::StartNamedEntry; no factory needed), and a
  // task created from a closure gets kFailedPrecondition (it stays
  // kCreated).
  absl::Status Run(const TaskEnvironment& env);

  absl::Status BindCallback(Callback callback);
  absl::Status BindRequest(std::weak_ptr<Resumable> request);

  TaskState state() const { return state_.load(std::memory_order_acquire); }
  bool finished() const { return state() == TaskState::kFinished; }

  // The entry's return value; kFailedPrecondition until finished.
  absl::StatusOr<int> result() const;

  // Owner -> task, blocking. kFailedPrecondition before Run().
  absl::Status Write(absl::Span<const char> message);
  // Task -> owner, blocking: waits for a message. kFailedPrecondition
  // before Run(); kOutOfRange once the task ended and all was read.
  absl::StatusOr<size_t> Read(absl::Span<char> out);
  // As Read, but returns WouldBlock() instead of waiting: for callbacks that
  // drain what has arrived without stalling the loop.
  absl::StatusOr<size_t> TryRead(absl::Span<char> out);
  // As Write and Read, giving up at `deadline` with kDeadlineExceeded and
  // leaving the channel as it was (core/channel.h: SendUntil, ReceiveUntil).
  absl::Status WriteUntil(absl::Span<const char> message, absl::Time deadline);
  absl::StatusOr<size_t> ReadUntil(absl::Span<char> out, absl::Time deadline);

  void RequestCancel();
  bool cancel_requested() const;

 private:
  struct Shared;
  Task(TaskEntry entry, std::string entry_name);
  absl::Status StartElsewhere(const TaskEnvironment& env);
  absl::Status StartHere(const TaskEnvironment& env);
  void OnChannelEvent();
  // The entry's value once it has returned and everything it wrote has
  // reached the owner's end (ChannelEnd::MessagesMayBeInFlight, or the
  // remote end's EntryResult); nullopt before.
  std::optional<int> DoneAndDeliveredResult();
  bool EntryDoneAndDelivered() { return DoneAndDeliveredResult().has_value(); }
  // After a notification: calls the binding again on the loop's next round
  // if it left a message unread.
  void RecallIfUnread(const std::weak_ptr<bool>& alive);
  void PostRecall(const std::weak_ptr<bool>& alive);
  void RecallIfBoundLate();
  // Records what an owner-side receive says about unread messages.
  absl::StatusOr<size_t> NoteReceive(absl::StatusOr<size_t> result);
  ChannelEnd* owner_end() const;

  std::shared_ptr<Shared> shared_;
  const std::string entry_name_;
  // The owner's end when the entry runs in another process (it is also
  // shared_->channel.owner_end, which owns it); null otherwise.
  RemoteOwnerEnd* remote_end_ = nullptr;
  std::atomic<TaskState> state_{TaskState::kCreated};
  EventLoop* loop_ = nullptr;
  WatchId watch_ = 0;
  int result_ = 0;
  // Expires with this Task: what a posted recall checks before it runs.
  const std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
  // Owner side: the last receive found the channel empty (or ended), so the
  // readiness fires for the next message and no recall is needed.
  bool owner_drained_ = false;
  bool recall_posted_ = false;  // the owner's

  // Bindings are set by the owner and read on the loop thread.
  mutable Mutex binding_mu_;
  std::shared_ptr<Callback> callback_ ABSL_GUARDED_BY(binding_mu_);
  std::weak_ptr<Resumable> request_ ABSL_GUARDED_BY(binding_mu_);
  bool request_bound_ ABSL_GUARDED_BY(binding_mu_) = false;
};

}  // namespace taskrt

#endif  // TASKRT_CORE_TASK_H_
