// The Kore C facade over taskrt's Task (core/task.h). See kore_tasks.h.

#include "kore/kore_tasks.h"

#include <atomic>
#include <memory>
#include <mutex>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "channels/socketpair/socketpair_channel.h"
#include "core/task.h"
#include "event_loops/epoll/epoll_loop.h"
#include "schedulers/thread_pool/thread_pool.h"

namespace {

using taskrt::Task;

thread_local std::string last_error;
thread_local bool last_call_failed = false;

void Succeeded() { last_call_failed = false; }
void Failed(const absl::Status& status) {
  last_error = status.ToString();
  last_call_failed = true;
}

struct Runtime {
  std::unique_ptr<taskrt::Scheduler> scheduler;
  std::unique_ptr<taskrt::ChannelFactory> channels;
  std::unique_ptr<taskrt::EventLoop> loop;
};

// Tasks that exist: the runtime may not go away under them.
std::atomic<int> live_tasks{0};

std::mutex runtime_mutex;
Runtime* runtime = nullptr;  // guarded by runtime_mutex
void (*request_resume)(struct http_request*) = nullptr;  // guarded by runtime_mutex

absl::Status CreateRuntime(const char* scheduler, const char* channel, const char* loop,
                           unsigned int workers) {
  auto made = std::make_unique<Runtime>();
  if (std::string(scheduler) != "thread_pool") {
    return absl::InvalidArgumentError(absl::StrCat(
        "kore_task_runtime_init: unknown scheduler \"", scheduler, "\" (known: thread_pool)"));
  }
  if (std::string(channel) != "socketpair") {
    return absl::InvalidArgumentError(absl::StrCat(
        "kore_task_runtime_init: unknown channel \"", channel, "\" (known: socketpair)"));
  }
  if (std::string(loop) != "epoll") {
    return absl::InvalidArgumentError(
        absl::StrCat("kore_task_runtime_init: unknown loop \"", loop, "\" (known: epoll)"));
  }
  absl::StatusOr<std::unique_ptr<taskrt::Scheduler>> pool = taskrt::NewThreadPool(workers);
  if (!pool.ok()) return pool.status();
  absl::StatusOr<std::unique_ptr<taskrt::EventLoop>> epoll = taskrt::NewEpollLoop();
  if (!epoll.ok()) return epoll.status();
  made->scheduler = *std::move(pool);
  made->channels = taskrt::NewSocketpairChannelFactory();
  made->loop = *std::move(epoll);
  runtime = made.release();
  return absl::OkStatus();
}

// The runtime, created with Kore's defaults on first use.
Runtime* GetRuntime() {
  std::lock_guard<std::mutex> lock(runtime_mutex);
  if (runtime == nullptr) {
    absl::Status status = CreateRuntime("thread_pool", "socketpair", "epoll", 2);
    if (!status.ok()) {
      Failed(status);
      return nullptr;
    }
  }
  return runtime;
}

// Resumes a bound request through the hook the application registered.
class RequestResumer final : public taskrt::Resumable {
 public:
  explicit RequestResumer(struct http_request* request) : request_(request) {}
  void Resume() override {
    void (*resume)(struct http_request*);
    {
      std::lock_guard<std::mutex> lock(runtime_mutex);
      resume = request_resume;
    }
    if (resume != nullptr) resume(request_);
  }

 private:
  struct http_request* const request_;
};

// The Kore task whose entry runs on this thread (the thread pool runs one
// entry per thread at a time). An entry's own calls go through its
// TaskContext, never through t->impl: the owner may destroy the task, and
// free its KoreTask, while the entry still runs.
thread_local struct kore_task* running_entry = nullptr;

taskrt::TaskContext* EntryContext(struct kore_task* t) {
  return t != nullptr && t == running_entry ? taskrt::TaskContext::Current() : nullptr;
}

struct KoreTask {
  std::unique_ptr<Task> task;
  std::shared_ptr<RequestResumer> request;  // the Task holds a weak_ptr
};

KoreTask* Get(struct kore_task* t, const char* function) {
  if (t == nullptr || t->impl == nullptr) {
    Failed(absl::FailedPreconditionError(
        absl::StrCat(function, ": the task was not created or has been destroyed")));
    return nullptr;
  }
  return static_cast<KoreTask*>(t->impl);
}

}  // namespace

extern "C" {

void kore_task_create(struct kore_task* t, int (*entry)(struct kore_task*)) {
  if (t == nullptr || entry == nullptr) {
    Failed(absl::InvalidArgumentError("kore_task_create: the task and the entry must not be NULL"));
    return;
  }
  if (t->impl != nullptr) {
    Failed(absl::FailedPreconditionError(
        "kore_task_create: the task exists (impl is set); destroy it first, or zero a new one"));
    return;
  }
  absl::StatusOr<std::unique_ptr<Task>> task =
      Task::Create([t, entry](taskrt::TaskContext&) {
        running_entry = t;
        const int result = entry(t);
        running_entry = nullptr;
        return result;
      });
  if (!task.ok()) {
    Failed(task.status());
    return;
  }
  t->impl = new KoreTask{*std::move(task), nullptr};
  live_tasks.fetch_add(1);
  Succeeded();
}

void kore_task_run(struct kore_task* t) {
  KoreTask* kore = Get(t, "kore_task_run");
  if (kore == nullptr) return;
  Runtime* rt = GetRuntime();
  if (rt == nullptr) return;
  taskrt::TaskEnvironment env;
  env.scheduler = rt->scheduler.get();
  env.channels = rt->channels.get();
  env.loop = rt->loop.get();
  absl::Status status = kore->task->Run(env);
  status.ok() ? Succeeded() : Failed(status);
}

void kore_task_bind_request(struct kore_task* t, struct http_request* req) {
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
  KoreTask* kore = Get(t, "kore_task_destroy");
  if (kore == nullptr) return;
  t->impl = nullptr;
  delete kore;
  live_tasks.fetch_sub(1);
  Succeeded();
}

int kore_task_finished(struct kore_task* t) {
  KoreTask* kore = Get(t, "kore_task_finished");
  if (kore == nullptr) return 0;
  Succeeded();
  return kore->task->finished() ? 1 : 0;
}

void kore_task_channel_write(struct kore_task* t, void* data, u_int32_t length) {
  if (data == nullptr && length > 0) {
    Failed(absl::InvalidArgumentError("kore_task_channel_write: data is NULL"));
    return;
  }
  absl::Span<const char> message(static_cast<const char*>(data), length);
  if (taskrt::TaskContext* context = EntryContext(t)) {
    absl::Status status = context->Write(message);
    status.ok() ? Succeeded() : Failed(status);
    return;
  }
  KoreTask* kore = Get(t, "kore_task_channel_write");
  if (kore == nullptr) return;
  absl::Status status = kore->task->Write(message);
  status.ok() ? Succeeded() : Failed(status);
}

u_int32_t kore_task_channel_read(struct kore_task* t, void* out, u_int32_t length) {
  if (out == nullptr && length > 0) {
    Failed(absl::InvalidArgumentError("kore_task_channel_read: out is NULL"));
    return 0;
  }
  absl::Span<char> buffer(static_cast<char*>(out), length);
  absl::StatusOr<size_t> got;
  if (taskrt::TaskContext* context = EntryContext(t)) {
    got = context->Read(buffer);
  } else {
    KoreTask* kore = Get(t, "kore_task_channel_read");
    if (kore == nullptr) return 0;
    got = kore->task->Read(buffer);
  }
  if (!got.ok()) {
    Failed(got.status());
    return 0;
  }
  Succeeded();
  return static_cast<u_int32_t>(*got);
}

int kore_task_state(struct kore_task* t) {
  if (t == nullptr || t->impl == nullptr) return 0;
  Succeeded();
  return static_cast<int>(static_cast<KoreTask*>(t->impl)->task->state());
}

int kore_task_result(struct kore_task* t) {
  KoreTask* kore = Get(t, "kore_task_result");
  if (kore == nullptr) return 0;
  absl::StatusOr<int> result = kore->task->result();
  if (!result.ok()) {
    Failed(result.status());
    return 0;
  }
  Succeeded();
  return *result;
}

int kore_task_cancel_requested(struct kore_task* t) {
  if (taskrt::TaskContext* context = EntryContext(t)) {
    Succeeded();
    return context->cancel_requested() ? 1 : 0;
  }
  KoreTask* kore = Get(t, "kore_task_cancel_requested");
  if (kore == nullptr) return 1;  // destroyed: stop
  Succeeded();
  return kore->task->cancel_requested() ? 1 : 0;
}

int kore_task_runtime_init(const char* scheduler, const char* channel, const char* loop,
                           unsigned int workers) {
  if (scheduler == nullptr || channel == nullptr || loop == nullptr) {
    Failed(absl::InvalidArgumentError("kore_task_runtime_init: backend names must not be NULL"));
    return -1;
  }
  std::lock_guard<std::mutex> lock(runtime_mutex);
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
  Runtime* rt;
  {
    std::lock_guard<std::mutex> lock(runtime_mutex);
    if (const int live = live_tasks.load(); live > 0) {
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
  absl::Status status = rt->scheduler->Shutdown();
  delete rt;
  status.ok() ? Succeeded() : Failed(status);
}

int kore_task_loop_run_once(int timeout_ms) {
  Runtime* rt = GetRuntime();
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
  std::lock_guard<std::mutex> lock(runtime_mutex);
  request_resume = resume;
  Succeeded();
}

const char* kore_task_last_error(void) {
  return last_call_failed ? last_error.c_str() : nullptr;
}

}  // extern "C"
