#include "schedulers/thread_pool/thread_pool.h"

#include <algorithm>
#include <deque>
#include <iterator>
#include <string>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/execution_context.h"
#include "core/mutex.h"
#include "core/trace.h"

namespace taskrt {
namespace {

class ThreadPool final : public Scheduler {
 public:
  ThreadPool() = default;
  ~ThreadPool() override { Shutdown().IgnoreError(); }

  absl::Status Start(size_t num_threads) {
    threads_.reserve(num_threads);
    for (size_t i = 0; i < num_threads; ++i) {
      try {
        // Named here: name() reads threads_, which grows meanwhile.
        threads_.emplace_back(
            [this, i, lane = absl::StrCat("thread_pool(", num_threads, ") worker ", i)]() mutable {
              WorkerLoop(i, std::move(lane));
            });
      } catch (const std::system_error& e) {
        return absl::ResourceExhaustedError(
            absl::StrCat("thread_pool: could not start worker ", i, ": ", e.what()));
      }
    }
    return absl::OkStatus();
  }

  absl::Status Schedule(Work work) override {
    if (!work) return absl::InvalidArgumentError("thread_pool: Schedule got empty work");
    {
      MutexLock lock(&mu_);
      if (shutting_down_) {
        return absl::FailedPreconditionError("thread_pool: Schedule after Shutdown began");
      }
      // Past the refusal: a trace shows a spawn only for work that will run.
      if (trace::Enabled()) [[unlikely]] work = trace::TraceWork(std::move(work));
      const bool inside = current_pool == this;
      queue_.push_back({std::move(work), inside ? current_worker_id : kOutside});
      ++(inside ? counts_.spawned_inside : counts_.spawned_outside);
      counts_.queue_high_water = std::max<uint64_t>(counts_.queue_high_water, queue_.size());
      // A sleeper not yet signalled is woken by this unit.
      if (waiting_ > signalled_) {
        ++counts_.wakes;
        ++signalled_;
      }
    }
    work_available_.Signal();
    return absl::OkStatus();
  }

  absl::Status Shutdown() override {
    if (IsCurrentThreadOwned()) {
      return absl::FailedPreconditionError(
          "thread_pool: Shutdown called from one of the pool's own workers; it would wait for "
          "itself. Call it from outside the pool");
    }
    MutexLock shutdown_lock(&shutdown_mu_);
    {
      MutexLock lock(&mu_);
      shutting_down_ = true;
    }
    work_available_.SignalAll();
    for (std::thread& thread : threads_) {
      if (thread.joinable()) thread.join();
    }
    return absl::OkStatus();
  }

  bool RunPendingWork() override {
    if (!IsCurrentThreadOwned()) return false;
    Work work;
    {
      MutexLock lock(&mu_);
      // Only work this worker queued itself, newest first: its own
      // fork-join children. Helping with other workers' units would nest
      // unrelated subtrees on this stack without bound (fib(30) overflowed
      // 8 MiB that way); when none is queued the caller waits instead, for
      // children that other workers are running.
      auto it = queue_.rbegin();
      for (size_t scanned = 0; it != queue_.rend() && scanned < kHelpScanLimit; ++it, ++scanned) {
        if (it->owner == current_worker_id) break;
      }
      if (it == queue_.rend() || it->owner != current_worker_id) return false;
      work = std::move(it->work);
      queue_.erase(std::next(it).base());
      ++counts_.helps;
      ++counts_.units_started;
    }
    std::move(work)();
    return true;
  }

  bool IsCurrentThreadOwned() const override { return current_pool == this; }
  size_t concurrency() const override { return threads_.size(); }

  SchedulerMetrics metrics() const override {
    MutexLock lock(&mu_);
    return counts_;
  }
  SchedulerCapabilities capabilities() const override { return {.honours_worker_count = true}; }
  std::string name() const override { return absl::StrCat("thread_pool(", threads_.size(), ")"); }

 private:
  void WorkerLoop(size_t id, std::string lane) {
    UseTightTimerSlack();  // for units that sleep
    current_pool = this;
    trace::NameThread(std::move(lane));
    current_worker_id = id;
    while (true) {
      Work work;
      {
        MutexLock lock(&mu_);
        if (queue_.empty() && !shutting_down_) {
          ++counts_.parks;
          ++waiting_;
          work_available_.Wait(&mu_, [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
            return !queue_.empty() || shutting_down_;
          });
          --waiting_;
          if (signalled_ > 0) --signalled_;
        }
        // Drain before exiting: accepted work always runs.
        if (queue_.empty()) break;
        work = std::move(queue_.front().work);
        queue_.pop_front();
        ++counts_.units_started;
      }
      std::move(work)();
    }
    current_pool = nullptr;
  }

  struct QueuedWork {
    Work work;
    size_t owner;  // the worker that queued it, or kOutside
  };
  static constexpr size_t kOutside = ~size_t{0};
  static constexpr size_t kHelpScanLimit = 64;

  static thread_local const ThreadPool* current_pool;
  static thread_local size_t current_worker_id;

  mutable Mutex mu_;
  CondVar work_available_;
  std::deque<QueuedWork> queue_ ABSL_GUARDED_BY(mu_);
  bool shutting_down_ ABSL_GUARDED_BY(mu_) = false;
  int waiting_ ABSL_GUARDED_BY(mu_) = 0;    // workers asleep on work_available_
  int signalled_ ABSL_GUARDED_BY(mu_) = 0;  // of them, woken and not yet up
  // Every count changes under mu_, which each of them takes anyway.
  SchedulerMetrics counts_ ABSL_GUARDED_BY(mu_);

  // Serialises Shutdown() callers; threads_ is fixed after Start().
  Mutex shutdown_mu_;
  std::vector<std::thread> threads_;
};

thread_local const ThreadPool* ThreadPool::current_pool = nullptr;
thread_local size_t ThreadPool::current_worker_id = ThreadPool::kOutside;

}  // namespace

absl::StatusOr<std::unique_ptr<Scheduler>> NewThreadPool(size_t num_threads) {
  if (num_threads == 0) {
    return absl::InvalidArgumentError("thread_pool: needs at least one thread, got 0");
  }
  auto pool = std::make_unique<ThreadPool>();
  if (absl::Status started = pool->Start(num_threads); !started.ok()) return started;
  return pool;
}

}  // namespace taskrt
