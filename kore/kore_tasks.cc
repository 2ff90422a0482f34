// The Kore C facade over taskrt's Task (core/task.h). See kore_tasks.h.

#include "kore/kore_tasks.h"

#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "backends/registry.h"
#include "core/entry_registry.h"
#include "core/execution_context.h"
#include "core/mutex.h"
#include "core/task.h"

namespace {

using taskrt::Task;

// More worker threads than this is a mistake, not a configuration.
constexpr unsigned int kMaxWorkers = 1024;

struct ErrorSlot {
  std::string message;
  bool failed = false;
};

// The running entry, as the facade knows it: kept under the facade's own
// key in the execution context's task-local storage, so it is per stackful
// task on a scheduler whose entries share one thread, and per thread
// elsewhere. An entry's calls on its own task go through its
// TaskContext, never through the task's record: the owner may destroy the
// task while the entry still runs.
struct EntryRecord {
  struct kore_task* task;
  taskrt::TaskContext* context;
  ErrorSlot error;  // kore_task_last_error() inside the entry
};
constexpr char kEntryKey = 0;

EntryRecord* CurrentEntry() {
  return static_cast<EntryRecord*>(taskrt::CurrentExecutionContext().task_local(&kEntryKey));
}

thread_local ErrorSlot thread_error;  // kore_task_last_error() outside entries

ErrorSlot& CurrentErrorSlot() {
  EntryRecord* entry = CurrentEntry();
  return entry != nullptr ? entry->error : thread_error;
}

void Succeeded() { CurrentErrorSlot().failed = false; }
void Failed(const absl::Status& status) {
  ErrorSlot& slot = CurrentErrorSlot();
  slot.message = status.ToString();
  slot.failed = true;
}

// The entry's context when `t` is the task whose entry is calling, else null.
taskrt::TaskContext* OwnEntryContext(struct kore_task* t) {
  EntryRecord* entry = CurrentEntry();
  return entry != nullptr && t != nullptr && entry->task == t ? entry->context : nullptr;
}

// The owner's calls change what the owner's loop thread uses; from an
// entry they would race with it.
bool RefuseInsideEntry(const char* function) {
  if (CurrentEntry() == nullptr) return false;
  Failed(absl::PermissionDeniedError(absl::StrCat(
      function, ": called from inside a task's entry; only the owner (the thread that runs the "
                "loop) may call it")));
  return true;
}

using KoreEntry = int (*)(struct kore_task*);

// Runs the C entry `entry` for the task known to it as `t`, with `context`
// for its calls on `t`.
int RunKoreEntry(KoreEntry entry, struct kore_task* t, taskrt::TaskContext& context) {
  EntryRecord record{t, &context, {}};
  void* const outer = taskrt::CurrentExecutionContext().task_local(&kEntryKey);
  taskrt::CurrentExecutionContext().set_task_local(&kEntryKey, &record);
  const int result = entry(t);
  taskrt::CurrentExecutionContext().set_task_local(&kEntryKey, outer);
  return result;
}

// The C entries registered by name (kore_task_register), both ways: by
// name for kore_task_create_named, by function for kore_task_create. One
// function has one name, so a create by function is never ambiguous.
class KoreEntries {
 public:
  absl::Status Register(absl::string_view name, KoreEntry entry) ABSL_LOCKS_EXCLUDED(mu_) {
    taskrt::MutexLock lock(&mu_);
    if (auto it = names_.find(entry); it != names_.end()) {
      return absl::AlreadyExistsError(absl::StrCat(
          "kore_task_register: this entry function is already registered as \"", it->second,
          "\"; one function has one name"));
    }
    // Held across the core registration: two registrations of one function
    // under two names cannot both pass the check above.
    absl::Status registered =
        taskrt::RegisterEntry(name, [entry](taskrt::TaskContext& context) {
          // Wherever it runs, the entry gets a struct of its own.
          struct kore_task own = {nullptr, nullptr};
          return RunKoreEntry(entry, &own, context);
        });
    if (!registered.ok()) {
      return absl::Status(registered.code(),
                          absl::StrCat("kore_task_register: ", registered.message()));
    }
    names_.emplace(entry, std::string(name));
    entries_.emplace(std::string(name), entry);
    return absl::OkStatus();
  }

  std::optional<std::string> NameOf(KoreEntry entry) ABSL_LOCKS_EXCLUDED(mu_) {
    taskrt::MutexLock lock(&mu_);
    auto it = names_.find(entry);
    if (it == names_.end()) return std::nullopt;
    return it->second;
  }

  KoreEntry EntryNamed(absl::string_view name) ABSL_LOCKS_EXCLUDED(mu_) {
    taskrt::MutexLock lock(&mu_);
    auto it = entries_.find(name);
    return it == entries_.end() ? nullptr : it->second;
  }

 private:
  taskrt::Mutex mu_;
  absl::flat_hash_map<KoreEntry, std::string> names_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, KoreEntry> entries_ ABSL_GUARDED_BY(mu_);
};

KoreEntries& RegisteredKoreEntries() {
  static KoreEntries* const entries = new KoreEntries();  // entries outlive exit
  return *entries;
}

// Resumes a bound request through the hook the application registered.
class RequestResumer final : public taskrt::Resumable {
 public:
  explicit RequestResumer(struct http_request* request) : request_(request) {}
  void Resume() override;

 private:
  struct http_request* const request_;
};

struct KoreTask {
  std::unique_ptr<Task> task;
  std::shared_ptr<RequestResumer> request;  // the Task holds a weak_ptr
};

// Everything below is guarded by `mu`. Tasks are known by the address of
// the caller's struct: the facade never reads a pointer out of it, so a
// struct in un-zeroed memory, a destroyed one and one never created are
// all told apart from live ones.
std::mutex mu;
taskrt::Backends* runtime = nullptr;
void (*request_resume)(struct http_request*) = nullptr;
absl::flat_hash_map<const struct kore_task*, std::unique_ptr<KoreTask>>* live_tasks = nullptr;

absl::flat_hash_map<const struct kore_task*, std::unique_ptr<KoreTask>>& LiveTasks() {
  if (live_tasks == nullptr) {
    live_tasks = new absl::flat_hash_map<const struct kore_task*, std::unique_ptr<KoreTask>>();
  }
  return *live_tasks;
}

void RequestResumer::Resume() {
  void (*resume)(struct http_request*);
  {
    std::lock_guard<std::mutex> lock(mu);
    resume = request_resume;
  }
  if (resume != nullptr) resume(request_);
}

absl::Status CreateRuntime(absl::string_view scheduler, absl::string_view channel,
                           absl::string_view loop, unsigned int workers) {
  if (workers > kMaxWorkers) {
    return absl::InvalidArgumentError(absl::StrCat(
        "kore_task_runtime_init: ", workers, " workers is more than the ", kMaxWorkers, " allowed"));
  }
  absl::StatusOr<taskrt::Backends> made =
      taskrt::NewBackends(scheduler, channel, loop, static_cast<int>(workers));
  if (!made.ok()) {
    return absl::Status(made.status().code(),
                        absl::StrCat("kore_task_runtime_init: ", made.status().message()));
  }
  runtime = new taskrt::Backends(*std::move(made));
  return absl::OkStatus();
}

// The runtime, created with Kore's defaults on first use.
taskrt::Backends* GetRuntime() {
  std::lock_guard<std::mutex> lock(mu);
  if (runtime == nullptr) {
    const taskrt::DefaultBackends& defaults = taskrt::Defaults();
    absl::Status status = CreateRuntime(defaults.scheduler, defaults.channel, defaults.loop,
                                        static_cast<unsigned int>(defaults.workers));
    if (!status.ok()) {
      Failed(status);
      return nullptr;
    }
  }
  return runtime;
}

// The error of a call on `t`, which is not a live task.
void FailNotLive(struct kore_task* t, const char* function) {
  Failed(absl::FailedPreconditionError(
      absl::StrCat(function, t == nullptr ? ": the task is NULL"
                                          : ": the task was not created or has been destroyed")));
}

// The live task `t`, or null with the error set. The owner's calls come from
// one thread, and only the owner destroys: the record stays valid for the
// caller's call.
KoreTask* Get(struct kore_task* t, const char* function) {
  if (t != nullptr) {
    std::lock_guard<std::mutex> lock(mu);
    auto it = LiveTasks().find(t);
    if (it != LiveTasks().end()) return it->second.get();
  }
  FailNotLive(t, function);
  return nullptr;
}

// Runs `read` on the live task `t` under the lock, for the queries that may
// come from any thread; nullopt if there is none.
template <typename Read>
auto Query(struct kore_task* t, Read read) -> std::optional<decltype(read(std::declval<KoreTask&>()))> {
  if (t == nullptr) return std::nullopt;
  std::lock_guard<std::mutex> lock(mu);
  auto it = LiveTasks().find(t);
  if (it == LiveTasks().end()) return std::nullopt;
  return read(*it->second);
}

// The deadline of a *_timeout call: -1 is none, 0 is now.
absl::StatusOr<absl::Time> DeadlineAfter(int timeout_ms, const char* call) {
  if (timeout_ms < -1) {
    return absl::InvalidArgumentError(
        absl::StrCat(call, ": timeout_ms must be -1 (no limit) or >= 0, not ", timeout_ms));
  }
  if (timeout_ms == -1) return absl::InfiniteFuture();
  return absl::Now() + absl::Milliseconds(timeout_ms);
}

// Sets the last error itself on every path; returns 0, or -1 on an error.
int ChannelWrite(struct kore_task* t, void* data, u_int32_t length, absl::Time deadline,
                 const char* call) {
  if (data == nullptr && length > 0) {
    Failed(absl::InvalidArgumentError(absl::StrCat(call, ": data is NULL")));
    return -1;
  }
  absl::Span<const char> message(static_cast<const char*>(data), length);
  absl::Status status;
  if (taskrt::TaskContext* context = OwnEntryContext(t)) {
    status = context->WriteUntil(message, deadline);
  } else {
    // Another task's owner side: the owner's alone.
    if (RefuseInsideEntry(call)) return -1;
    KoreTask* kore = Get(t, call);
    if (kore == nullptr) return -1;
    status = kore->task->WriteUntil(message, deadline);
  }
  if (!status.ok()) {
    Failed(status);
    return -1;
  }
  Succeeded();
  return 0;
}

// Sets the last error itself on every path; returns the length read.
u_int32_t ChannelRead(struct kore_task* t, void* out, u_int32_t length, absl::Time deadline,
                      const char* call) {
  if (out == nullptr && length > 0) {
    Failed(absl::InvalidArgumentError(absl::StrCat(call, ": out is NULL")));
    return 0;
  }
  absl::Span<char> buffer(static_cast<char*>(out), length);
  absl::StatusOr<size_t> got;
  if (taskrt::TaskContext* context = OwnEntryContext(t)) {
    got = context->ReadUntil(buffer, deadline);
  } else {
    if (RefuseInsideEntry(call)) return 0;
    KoreTask* kore = Get(t, call);
    if (kore == nullptr) return 0;
    got = kore->task->ReadUntil(buffer, deadline);
  }
  if (!got.ok()) {
    Failed(got.status());
    return 0;
  }
  Succeeded();
  return static_cast<u_int32_t>(*got);
}

// Makes `task` the live task `t`. Sets the last error on every path.
void AdoptLive(struct kore_task* t, std::unique_ptr<Task> task, const char* function) {
  auto kore = std::make_unique<KoreTask>();
  kore->task = std::move(task);
  KoreTask* record = kore.get();
  {
    std::lock_guard<std::mutex> lock(mu);
    if (!LiveTasks().try_emplace(t, std::move(kore)).second) {
      Failed(absl::FailedPreconditionError(absl::StrCat(
          function, ": this task already exists; destroy it before creating it again")));
      return;
    }
  }
  // Written for the caller's eyes only; never read back.
  t->impl = record;
  Succeeded();
}

// Makes `t` the live task of `entry`: a named task when `name` is set (a
// run in this process still calls `entry` with `t`), else one of a closure.
// Sets the last error on every path.
void CreateLive(struct kore_task* t, KoreEntry entry, const std::optional<std::string>& name,
                const char* function) {
  auto local = [t, entry](taskrt::TaskContext& context) { return RunKoreEntry(entry, t, context); };
  absl::StatusOr<std::unique_ptr<Task>> task =
      name.has_value() ? Task::CreateNamed(*name, local) : Task::Create(local);
  if (!task.ok()) {
    Failed(task.status());
    return;
  }
  AdoptLive(t, *std::move(task), function);
}

}  // namespace

extern "C" {

void kore_task_create(struct kore_task* t, int (*entry)(struct kore_task*)) {
  if (RefuseInsideEntry("kore_task_create")) return;
  if (t == nullptr || entry == nullptr) {
    Failed(absl::InvalidArgumentError("kore_task_create: the task and the entry must not be NULL"));
    return;
  }
  CreateLive(t, entry, RegisteredKoreEntries().NameOf(entry), "kore_task_create");
}

void kore_task_create_named(struct kore_task* t, const char* name) {
  if (RefuseInsideEntry("kore_task_create_named")) return;
  if (t == nullptr || name == nullptr) {
    Failed(absl::InvalidArgumentError(
        "kore_task_create_named: the task and the name must not be NULL"));
    return;
  }
  if (KoreEntry entry = RegisteredKoreEntries().EntryNamed(name)) {
    CreateLive(t, entry, std::string(name), "kore_task_create_named");
    return;
  }
  // Unknown here (kNotFound), or an entry registered from C++: the task
  // runs it with a context and no struct.
  absl::StatusOr<std::unique_ptr<Task>> task = Task::CreateNamed(name);
  if (!task.ok()) {
    Failed(absl::Status(task.status().code(),
                        absl::StrCat("kore_task_create_named: ", task.status().message())));
    return;
  }
  AdoptLive(t, *std::move(task), "kore_task_create_named");
}

int kore_task_register(const char* name, int (*entry)(struct kore_task*)) {
  if (name == nullptr || entry == nullptr) {
    Failed(absl::InvalidArgumentError(
        "kore_task_register: the name and the entry must not be NULL"));
    return KORE_RESULT_ERROR;
  }
  absl::Status status = RegisteredKoreEntries().Register(name, entry);
  if (!status.ok()) {
    Failed(status);
    return KORE_RESULT_ERROR;
  }
  Succeeded();
  return KORE_RESULT_OK;
}

int kore_task_attempt(struct kore_task* t) {
  if (taskrt::TaskContext* context = OwnEntryContext(t)) {
    Succeeded();
    return context->attempt();
  }
  Failed(absl::FailedPreconditionError(
      "kore_task_attempt: only the entry of this task, while it runs, has an attempt"));
  return 0;
}

void kore_task_run(struct kore_task* t) {
  if (RefuseInsideEntry("kore_task_run")) return;
  KoreTask* kore = Get(t, "kore_task_run");
  if (kore == nullptr) return;
  taskrt::Backends* rt = GetRuntime();
  if (rt == nullptr) return;
  taskrt::TaskEnvironment env;
  env.scheduler = rt->scheduler.get();
  env.channels = rt->channels.get();
  env.loop = rt->loop.get();
  absl::Status status = kore->task->Run(env);
  status.ok() ? Succeeded() : Failed(status);
}

void kore_task_bind_request(struct kore_task* t, struct http_request* req) {
  if (RefuseInsideEntry("kore_task_bind_request")) return;
  KoreTask* kore = Get(t, "kore_task_bind_request");
  if (kore == nullptr) return;
  auto resumer = std::make_shared<RequestResumer>(req);
  absl::Status status = kore->task->BindRequest(resumer);
  if (!status.ok()) {
    Failed(status);
    return;
  }
  kore->request = std::move(resumer);
  Succeeded();
}

void kore_task_bind_callback(struct kore_task* t, void (*cb)(struct kore_task*)) {
  if (RefuseInsideEntry("kore_task_bind_callback")) return;
  KoreTask* kore = Get(t, "kore_task_bind_callback");
  if (kore == nullptr) return;
  if (cb == nullptr) {
    Failed(absl::InvalidArgumentError("kore_task_bind_callback: the callback is NULL"));
    return;
  }
  absl::Status status = kore->task->BindCallback([t, cb](Task&) { cb(t); });
  status.ok() ? Succeeded() : Failed(status);
}

void kore_task_destroy(struct kore_task* t) {
  if (RefuseInsideEntry("kore_task_destroy")) return;
  std::unique_ptr<KoreTask> kore;
  if (t != nullptr) {
    std::lock_guard<std::mutex> lock(mu);
    auto it = LiveTasks().find(t);
    if (it != LiveTasks().end()) {
      kore = std::move(it->second);
      LiveTasks().erase(it);
    }
  }
  if (kore == nullptr) {
    FailNotLive(t, "kore_task_destroy");
    return;
  }
  t->impl = nullptr;
  kore.reset();  // outside the lock: the Task unwatches and closes its channel
  Succeeded();
}

int kore_task_finished(struct kore_task* t) {
  const std::optional<bool> finished =
      Query(t, [](KoreTask& kore) { return kore.task->finished(); });
  if (!finished.has_value()) {
    FailNotLive(t, "kore_task_finished");
    return 0;
  }
  Succeeded();
  return *finished ? 1 : 0;
}

void kore_task_channel_write(struct kore_task* t, void* data, u_int32_t length) {
  (void)ChannelWrite(t, data, length, absl::InfiniteFuture(), "kore_task_channel_write");
}

u_int32_t kore_task_channel_read(struct kore_task* t, void* out, u_int32_t length) {
  return ChannelRead(t, out, length, absl::InfiniteFuture(), "kore_task_channel_read");
}

int kore_task_channel_write_timeout(struct kore_task* t, void* data, u_int32_t length,
                                    int timeout_ms) {
  absl::StatusOr<absl::Time> deadline = DeadlineAfter(timeout_ms, "kore_task_channel_write_timeout");
  if (!deadline.ok()) {
    Failed(deadline.status());
    return -1;
  }
  return ChannelWrite(t, data, length, *deadline, "kore_task_channel_write_timeout");
}

u_int32_t kore_task_channel_read_timeout(struct kore_task* t, void* out, u_int32_t length,
                                         int timeout_ms) {
  absl::StatusOr<absl::Time> deadline = DeadlineAfter(timeout_ms, "kore_task_channel_read_timeout");
  if (!deadline.ok()) {
    Failed(deadline.status());
    return 0;
  }
  return ChannelRead(t, out, length, *deadline, "kore_task_channel_read_timeout");
}

int kore_task_state(struct kore_task* t) {
  const std::optional<taskrt::TaskState> state =
      Query(t, [](KoreTask& kore) { return kore.task->state(); });
  Succeeded();  // 0 for no task is the answer, not an error
  return state.has_value() ? static_cast<int>(*state) : 0;
}

int kore_task_result(struct kore_task* t) {
  const std::optional<absl::StatusOr<int>> result =
      Query(t, [](KoreTask& kore) { return kore.task->result(); });
  if (!result.has_value()) {
    FailNotLive(t, "kore_task_result");
    return 0;
  }
  if (!result->ok()) {
    Failed(result->status());
    return 0;
  }
  Succeeded();
  return **result;
}

int kore_task_cancel_requested(struct kore_task* t) {
  if (taskrt::TaskContext* context = OwnEntryContext(t)) {
    Succeeded();
    return context->cancel_requested() ? 1 : 0;
  }
  const std::optional<bool> requested =
      Query(t, [](KoreTask& kore) { return kore.task->cancel_requested(); });
  if (!requested.has_value()) {
    FailNotLive(t, "kore_task_cancel_requested");
    return 1;  // destroyed: stop
  }
  Succeeded();
  return *requested ? 1 : 0;
}

int kore_task_runtime_init(const char* scheduler, const char* channel, const char* loop,
                           unsigned int workers) {
  if (RefuseInsideEntry("kore_task_runtime_init")) return -1;
  if (scheduler == nullptr || channel == nullptr || loop == nullptr) {
    Failed(absl::InvalidArgumentError("kore_task_runtime_init: backend names must not be NULL"));
    return -1;
  }
  std::lock_guard<std::mutex> lock(mu);
  if (runtime != nullptr) {
    Failed(absl::FailedPreconditionError(
        "kore_task_runtime_init: the runtime is already running; call "
        "kore_task_runtime_shutdown() first"));
    return -1;
  }
  absl::Status status = CreateRuntime(scheduler, channel, loop, workers);
  if (!status.ok()) {
    Failed(status);
    return -1;
  }
  Succeeded();
  return 0;
}

void kore_task_runtime_shutdown(void) {
  if (RefuseInsideEntry("kore_task_runtime_shutdown")) return;
  taskrt::Backends* rt;
  {
    std::lock_guard<std::mutex> lock(mu);
    if (const size_t live = LiveTasks().size(); live > 0) {
      Failed(absl::FailedPreconditionError(absl::StrCat(
          "kore_task_runtime_shutdown: ", live, " task(s) still exist; destroy them first")));
      return;
    }
    rt = runtime;
    runtime = nullptr;
  }
  if (rt == nullptr) {
    Succeeded();
    return;
  }
  // Entries still running were detached by destroy; they end once they see
  // their channel closed.
  absl::Status status = rt->scheduler->Shutdown();
  delete rt;
  status.ok() ? Succeeded() : Failed(status);
}

int kore_task_loop_run_once(int timeout_ms) {
  if (RefuseInsideEntry("kore_task_loop_run_once")) return -1;
  taskrt::Backends* rt = GetRuntime();
  if (rt == nullptr) return -1;
  const absl::Duration timeout =
      timeout_ms < 0 ? absl::InfiniteDuration() : absl::Milliseconds(timeout_ms);
  absl::StatusOr<int> ran = rt->loop->RunOnce(timeout);
  if (!ran.ok()) {
    Failed(ran.status());
    return -1;
  }
  Succeeded();
  return *ran;
}

void kore_task_set_request_resume(void (*resume)(struct http_request*)) {
  std::lock_guard<std::mutex> lock(mu);
  request_resume = resume;
  Succeeded();
}

const char* kore_task_last_error(void) {
  const ErrorSlot& slot = CurrentErrorSlot();
  return slot.failed ? slot.message.c_str() : nullptr;
}

}  // extern "C"
