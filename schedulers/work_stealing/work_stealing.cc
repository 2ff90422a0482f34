#include "schedulers/work_stealing/work_stealing.h"

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <memory>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/counters.h"
#include "core/execution_context.h"
#include "core/mutex.h"
#include "core/trace.h"
#include "schedulers/work_stealing/chase_lev_deque.h"
#include "schedulers/work_stealing/injection_queue.h"

namespace taskrt {
namespace {

using work_stealing_internal::ChaseLevDeque;
using work_stealing_internal::InjectionQueue;

// Wraps a Work closure as a Job, for Schedule().
class WorkJob final : public Job {
 public:
  explicit WorkJob(Work work) : work_(std::move(work)) {}
  void RunAndDelete() override {
    Work work = std::move(work_);
    delete this;
    std::move(work)();
  }

 private:
  Work work_;
};

constexpr uint32_t kFairnessInterval = 61;  // as Go's and Tokio's schedulers
constexpr int kSpinRounds = 64;             // full scans before parking
constexpr size_t kMaxInjectionBatch = 256;

class WorkStealingPool final : public Scheduler {
 public:
  explicit WorkStealingPool(size_t num_workers) {
    workers_.reserve(num_workers);
    for (size_t i = 0; i < num_workers; ++i) {
      workers_.push_back(std::make_unique<Worker>(i));
    }
  }

  ~WorkStealingPool() override { Shutdown().IgnoreError(); }

  absl::Status Start() {
    for (auto& worker : workers_) {
      try {
        worker->thread = std::thread([this, w = worker.get()] { WorkerLoop(w); });
      } catch (const std::system_error& e) {
        return absl::ResourceExhaustedError(
            absl::StrCat("work_stealing: could not start worker ", worker->index, ": ", e.what()));
      }
    }
    return absl::OkStatus();
  }

  absl::Status Schedule(Work work) override {
    if (!work) return absl::InvalidArgumentError("work_stealing: Schedule got empty work");
    auto* job = new WorkJob(std::move(work));
    absl::Status status = ScheduleJob(job);
    if (!status.ok()) delete job;
    return status;
  }

  absl::Status ScheduleJob(Job* job) override {
    if (job == nullptr) return absl::InvalidArgumentError("work_stealing: ScheduleJob got null");
    if (trace::Enabled()) [[unlikely]] return EnqueueTraced(job);
    return Enqueue(job);
  }

  absl::Status EnqueueTraced(Job* job) {
    // Refused before the spawn is recorded, so that a trace holds no spawn
    // of work that never runs (the queue closes before stopping_ is set).
    if (stopping_.load(std::memory_order_acquire)) return ShuttingDownError();
    std::unique_ptr<Job> traced = trace::TraceJob(job);
    if (traced == nullptr) return Enqueue(job);
    absl::Status status = Enqueue(traced.get());
    if (status.ok()) traced.release();
    return status;
  }

  // Inlined: the spawn path of fork-join, where a call costs a tenth.
  [[gnu::always_inline]] absl::Status Enqueue(Job* job) {
    Worker* self = current_worker;
    if (self != nullptr && self->pool == this) {
      if (stopping_.load(std::memory_order_acquire)) return ShuttingDownError();
      // Counted before it is published: a unit that runs at once and reads
      // the metrics finds itself counted.
      self->counters.spawned.Add();
      int64_t depth = 0;
      if (self->deque.Push(job, &depth)) {
        self->counters.high_water.RaiseTo(static_cast<uint64_t>(depth));
        WakeOneIfSleeping();
        return absl::OkStatus();
      }
      // Full deque: overflow to the injection queue below.
      if (!injected_.Push(job)) {
        self->counters.spawned.Subtract(1);
        return ShuttingDownError();
      }
      WakeOneIfSleeping();
      return absl::OkStatus();
    }
    spawned_outside_.Add();
    // Refused once Shutdown closed the queue.
    if (!injected_.Push(job)) {
      spawned_outside_.Subtract(1);
      return ShuttingDownError();
    }
    WakeOneIfSleeping();
    return absl::OkStatus();
  }

  bool RunPendingWork() override {
    Worker* self = current_worker;
    if (self == nullptr || self->pool != this) return false;
    // Depth-first and without the fairness picks: helping with old work
    // would stack one unrelated subtree on top of another.
    Job* job = self->deque.Pop();
    if (job == nullptr) job = StealFromOthers(self);
    if (job == nullptr) job = TakeInjected(self);
    if (job == nullptr) return false;
    self->counters.helps.Add();  // metrics() counts helps as started too
    job->RunAndDelete();
    return true;
  }

  absl::Status Shutdown() override {
    if (IsCurrentThreadOwned()) {
      return absl::FailedPreconditionError(
          "work_stealing: Shutdown called from one of the pool's own workers; it would wait for "
          "itself. Call it from outside the pool");
    }
    MutexLock shutdown_lock(&shutdown_mu_);
    // Closed first: a worker that sees stopping_ then sees every job the
    // queue accepted, so none is left behind when the workers exit.
    injected_.Close();
    stopping_.store(true, std::memory_order_seq_cst);
    WakeAll();
    for (auto& worker : workers_) {
      if (worker->thread.joinable()) worker->thread.join();
    }
    return absl::OkStatus();
  }

  bool IsCurrentThreadOwned() const override {
    return current_worker != nullptr && current_worker->pool == this;
  }
  size_t concurrency() const override { return workers_.size(); }

  SchedulerMetrics metrics() const override {
    SchedulerMetrics m;
    for (const auto& worker : workers_) {
      const WorkerCounters& c = worker->counters;
      m.units_started += c.started.Read() + c.helps.Read();
      m.spawned_inside += c.spawned.Read();
      m.steals += c.steals.Read();
      m.steal_attempts += c.steal_attempts.Read();
      m.parks += c.parks.Read();
      m.helps += c.helps.Read();
      m.queue_high_water = std::max(m.queue_high_water, c.high_water.Read());
    }
    m.spawned_outside = spawned_outside_.Read();
    m.wakes = wakes_.Read();
    m.queue_high_water = std::max<uint64_t>(m.queue_high_water, injected_.HighWater());
    return m;
  }
  SchedulerCapabilities capabilities() const override { return {.honours_worker_count = true}; }
  std::string name() const override {
    return absl::StrCat("work_stealing(", workers_.size(), ")");
  }

 private:
  // Written by the worker's own thread only. `started` counts the units its
  // loop ran, `helps` those run inside a wait.
  struct WorkerCounters {
    OwnedCounter started, spawned, steals, steal_attempts, parks, helps, high_water;
  };

  struct Worker {
    explicit Worker(size_t i) : index(i), rng_state(0x9E3779B97F4A7C15ull * (i + 1)) {}
    const size_t index;
    const WorkStealingPool* pool = nullptr;
    ChaseLevDeque<Job> deque;
    // Its own cache lines: read by metrics() from any thread.
    alignas(64) WorkerCounters counters;
    std::thread thread;
    uint64_t rng_state;
    uint32_t tick = 0;
  };

  static absl::Status ShuttingDownError() {
    return absl::FailedPreconditionError("work_stealing: Schedule after Shutdown began");
  }

  uint64_t NextRandom(Worker* w) {  // xorshift64
    uint64_t x = w->rng_state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return w->rng_state = x;
  }

  // Takes a share of the injection queue: returns the first job to run and
  // queues the rest locally (where other workers can steal them). Gives up
  // when another worker is taking, unless `wait_for_lock` (the final drain
  // at shutdown, which must not miss a job).
  Job* TakeInjected(Worker* w, bool wait_for_lock = false) {
    if (!injected_.LooksNonEmpty()) return nullptr;
    size_t spilled = 0;
    int64_t depth = 0;
    auto spill = [w, &spilled, &depth](Job* job) {
      if (!w->deque.Push(job, &depth)) return false;
      ++spilled;
      return true;
    };
    Job* const job = wait_for_lock
                         ? injected_.Take(workers_.size(), kMaxInjectionBatch, spill)
                         : injected_.TryTake(workers_.size(), kMaxInjectionBatch, spill);
    if (spilled > 0) w->counters.high_water.RaiseTo(static_cast<uint64_t>(depth));
    if (job != nullptr && (spilled > 0 || injected_.LooksNonEmpty())) WakeOneIfSleeping();
    return job;
  }

  Job* StealFromOthers(Worker* w) {
    const size_t n = workers_.size();
    if (n == 1) return nullptr;
    const size_t start = NextRandom(w) % n;
    for (size_t i = 0; i < n; ++i) {
      Worker* victim = workers_[(start + i) % n].get();
      if (victim == w) continue;
      w->counters.steal_attempts.Add();
      if (Job* job = victim->deque.Steal()) {
        w->counters.steals.Add();
        return job;
      }
    }
    return nullptr;
  }

  Job* FindWork(Worker* w) {
    if (++w->tick % kFairnessInterval == 0) {
      // Fairness: the oldest outside work, then the oldest local work.
      if (Job* job = TakeInjected(w)) return job;
      if (Job* job = w->deque.Steal()) return job;
    }
    if (Job* job = w->deque.Pop()) return job;
    if (Job* job = TakeInjected(w)) return job;
    return StealFromOthers(w);
  }

  // As FindWork, but never passes over injected work because another worker
  // holds the consumer lock.
  Job* FinalFindWork(Worker* w) {
    if (Job* job = w->deque.Pop()) return job;
    if (Job* job = TakeInjected(w, /*wait_for_lock=*/true)) return job;
    return StealFromOthers(w);
  }

  bool AnyVisibleWork() const {
    if (injected_.LooksNonEmpty()) return true;
    for (const auto& worker : workers_) {
      if (worker->deque.LooksNonEmpty()) return true;
    }
    return false;
  }

  // Called after publishing work. A worker that is still searching will
  // find it, so the (costly) wake-up is only for a pool where every idle
  // worker already sleeps.
  void WakeOneIfSleeping() {
    if (sleepers_.load(std::memory_order_seq_cst) == 0) return;
    if (searching_.load(std::memory_order_seq_cst) > 0) return;
    {
      MutexLock lock(&park_mu_);
      ++wake_epoch_;
    }
    wakes_.Add();
    park_cv_.Signal();
  }

  void WakeAll() {
    {
      MutexLock lock(&park_mu_);
      ++wake_epoch_;
    }
    park_cv_.SignalAll();
  }

  // Sleeps until woken, unless work or shutdown shows up after this worker
  // announced itself as a sleeper (the announcement is what schedulers read,
  // so nothing published after it goes unnoticed).
  void Park(Worker* w) {
    uint64_t epoch;
    {
      MutexLock lock(&park_mu_);
      epoch = wake_epoch_;
      sleepers_.fetch_add(1, std::memory_order_seq_cst);
    }
    if (!AnyVisibleWork() && !stopping_.load(std::memory_order_seq_cst)) {
      w->counters.parks.Add();
      MutexLock lock(&park_mu_);
      park_cv_.Wait(&park_mu_, [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(park_mu_) {
        return wake_epoch_ != epoch;
      });
    }
    sleepers_.fetch_sub(1, std::memory_order_seq_cst);
  }

  void WorkerLoop(Worker* w) {
    UseTightTimerSlack();  // for units that sleep
    w->pool = this;
    current_worker = w;
    trace::NameThread(absl::StrCat(name(), " worker ", w->index));
    while (true) {
      Job* job = FindWork(w);
      if (job == nullptr) {
        searching_.fetch_add(1, std::memory_order_seq_cst);
        for (int round = 0; job == nullptr && round < kSpinRounds; ++round) {
          std::this_thread::yield();
          job = FindWork(w);
        }
        // Before Park() re-checks the queues: work published while this
        // worker still counted as searching is seen by that re-check.
        searching_.fetch_sub(1, std::memory_order_seq_cst);
        if (job != nullptr) WakeOneIfSleeping();  // maybe more where it came from
      }
      if (job != nullptr) {
        w->counters.started.Add();
        job->RunAndDelete();
        continue;
      }
      if (stopping_.load(std::memory_order_seq_cst)) {
        // New work is refused now; a last scan found nothing, so whatever
        // was accepted has been taken by a worker that will run it.
        if ((job = FinalFindWork(w)) != nullptr) {
          w->counters.started.Add();
          job->RunAndDelete();
          continue;
        }
        break;
      }
      Park(w);
    }
    current_worker = nullptr;
  }

  static thread_local Worker* current_worker;

  std::vector<std::unique_ptr<Worker>> workers_;
  std::atomic<bool> stopping_{false};
  Mutex shutdown_mu_;

  InjectionQueue injected_;

  Mutex park_mu_;
  CondVar park_cv_;
  uint64_t wake_epoch_ ABSL_GUARDED_BY(park_mu_) = 0;
  std::atomic<int> sleepers_{0};
  std::atomic<int> searching_{0};  // workers spinning through FindWork

  // Lines of their own, away from sleepers_ and searching_, which every
  // push reads.
  alignas(64) SharedCounter spawned_outside_;
  alignas(64) SharedCounter wakes_;
};

thread_local WorkStealingPool::Worker* WorkStealingPool::current_worker = nullptr;

}  // namespace

absl::StatusOr<std::unique_ptr<Scheduler>> NewWorkStealingPool(size_t num_workers) {
  if (num_workers == 0) {
    return absl::InvalidArgumentError("work_stealing: needs at least one worker, got 0");
  }
  auto pool = std::make_unique<WorkStealingPool>(num_workers);
  if (absl::Status started = pool->Start(); !started.ok()) return started;
  return pool;
}

}  // namespace taskrt
