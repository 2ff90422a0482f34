#include "schedulers/cooperative/cooperative.h"

#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <optional>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "core/errors.h"
#include "core/execution_context.h"
#include "core/counters.h"
#include "core/mutex.h"
#include "core/timer_wheel.h"
#include "core/trace.h"

namespace taskrt {
namespace {

// Every this many switches a task that gives up the processor returns to
// the scheduler's loop, which picks up outside work and descriptor
// readiness (Go's and Tokio's schedulers use the same interval).
constexpr uint32_t kLoopInterval = 61;
// At most this many tasks woken by their deadline wait ahead of the ready
// queue (see ExpireTimers); one less than the loop interval, so the queue
// behind them advances at every interval.
constexpr size_t kTimerWakesFirst = kLoopInterval - 1;
constexpr int kMaxEventsPerPoll = 64;
// How long an idle loop polls before it sleeps; as the OS-thread context's
// spin (core/execution_context.cc), measured with the round_trip job.
constexpr absl::Duration kIdleSpin = absl::Microseconds(50);
// After the kernel refused a stack, new units take the stacks of finishing
// tasks; a fresh one is asked for again after this long.
constexpr absl::Duration kStackRetry = absl::Milliseconds(100);

class CooperativeScheduler;

// A stack and the context that runs on it; reused from task to task.
struct FiberSlot {
  FiberSlot(const Stack& s, FiberContext::StartFunction start, void* arg, ContextSwitchKind kind)
      : stack(s), context(s, start, arg, kind) {}
  Stack stack;
  FiberContext context;
};

// One unit of work. It gets a FiberSlot when it first runs. Its Node is
// its place in the timers while it waits with a deadline.
struct CoTask : TimerWheel::Node {
  Work work;
  Job* job = nullptr;
  FiberSlot* slot = nullptr;
  CoTask* next_ready = nullptr;
  TaskLocals locals;  // ExecutionContext::task_local()
  // While suspended with a deadline: in timers_, and either waiting on a
  // descriptor, parked (ParkUntil) or sleeping (neither).
  int waiting_fd = -1;
  Parker* timed_parker = nullptr;
  bool timed_out = false;
  trace::TaskTrace trace;  // unit 0 unless spawned while a trace ran
};

// Work from other threads, waiting for the loop to make it a task.
struct InboxUnit {
  Work work;
  Job* job;
  uint64_t trace_unit;
};

// First-in, first-out tasks, linked through next_ready (a task is in one
// queue at a time).
struct TaskQueue {
  CoTask* head = nullptr;
  CoTask* tail = nullptr;

  bool empty() const { return head == nullptr; }
  void Push(CoTask* task) {
    task->next_ready = nullptr;
    (tail == nullptr ? head : tail->next_ready) = task;
    tail = task;
  }
  CoTask* Pop() {
    CoTask* task = head;
    if (task == nullptr) return nullptr;
    head = task->next_ready;
    if (head == nullptr) tail = nullptr;
    return task;
  }
};

// A deadline as the timers' time: nanoseconds since the Unix epoch.
uint64_t TimerTime(absl::Time deadline) {
  return static_cast<uint64_t>(std::max<int64_t>(absl::ToUnixNanos(deadline), 0));
}

// Whether epoll_pwait2 (nanosecond timeouts) is there; cleared for good
// when the kernel refuses it, and waits round up to milliseconds then.
std::atomic<bool> epoll_pwait2_works{true};

thread_local CooperativeScheduler* current_scheduler = nullptr;

class CooperativeScheduler final : public Scheduler {
 public:
  CooperativeScheduler(const CooperativeOptions& options, StackPool stacks, int epoll_fd,
                       int wake_fd)
      : options_(options),
        stacks_(std::move(stacks)),
        epoll_fd_(epoll_fd),
        wake_fd_(wake_fd),
        context_(this) {}

  ~CooperativeScheduler() override {
    Shutdown().IgnoreError();
    close(epoll_fd_);
    close(wake_fd_);
  }

  // Registers the wake-up descriptor and starts the thread; on an error the
  // destructor closes the descriptors.
  absl::Status Start() {
    epoll_event wake_event{};
    wake_event.events = EPOLLIN;
    wake_event.data.fd = wake_fd_;
    if (epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, wake_fd_, &wake_event) != 0) {
      return ErrnoError("cooperative: epoll_ctl(ADD wake-up eventfd)", errno);
    }
    try {
      thread_ = std::thread([this] { LoopMain(); });
    } catch (const std::system_error& e) {
      return absl::ResourceExhaustedError(
          absl::StrCat("cooperative: could not start its thread: ", e.what()));
    }
    return absl::OkStatus();
  }

  absl::Status Schedule(Work work) override {
    if (!work) return absl::InvalidArgumentError("cooperative: Schedule got empty work");
    return Enqueue(std::move(work), nullptr);
  }

  absl::Status ScheduleJob(Job* job) override {
    if (job == nullptr) return absl::InvalidArgumentError("cooperative: ScheduleJob got null");
    return Enqueue(Work(), job);
  }

  // Helping, the cooperative way: let the other ready tasks run first.
  bool RunPendingWork() override {
    if (current_scheduler != this || current_ == nullptr || ready_.empty()) return false;
    helps_.Add();
    YieldCurrent();
    return true;
  }

  absl::Status Shutdown() override {
    if (IsCurrentThreadOwned()) {
      return absl::FailedPreconditionError(
          "cooperative: Shutdown called from one of its own tasks; it would wait for itself. "
          "Call it from another thread");
    }
    MutexLock shutdown_lock(&shutdown_mu_);
    {
      MutexLock lock(&inbox_mu_);
      stopping_.store(true, std::memory_order_seq_cst);
      inbox_pending_.store(true, std::memory_order_seq_cst);
    }
    SignalWakeFd();
    if (thread_.joinable()) thread_.join();
    return absl::OkStatus();
  }

  bool IsCurrentThreadOwned() const override { return current_scheduler == this; }
  size_t concurrency() const override { return 1; }

  SchedulerMetrics metrics() const override {
    SchedulerMetrics m;
    m.units_started = started_.Read();
    m.spawned_inside = spawned_inside_.Read();
    m.spawned_outside = spawned_outside_.Read();
    m.parks = parks_.Read();
    m.wakes = wakes_.Read();
    m.helps = helps_.Read();
    m.queue_high_water = queue_high_water_.Read();
    return m;
  }
  SchedulerCapabilities capabilities() const override { return {.single_thread_stackful_tasks = true}; }
  std::string name() const override { return "cooperative"; }

 private:
  // The execution context of every task of this scheduler.
  class TaskContext final : public ExecutionContext {
   public:
    explicit TaskContext(CooperativeScheduler* scheduler) : scheduler_(scheduler) {}
    absl::Status WaitFdUntil(int fd, short poll_events, absl::Time deadline) override {
      return scheduler_->WaitFdUntil(fd, poll_events, deadline);
    }
    void Yield() override { scheduler_->YieldCurrent(); }
    bool YieldToReady() override { return scheduler_->YieldToReadyTask(); }
    void Park(Parker& parker) override {
      CoTask* task = scheduler_->current_;
      if (task == nullptr) {  // the scheduler's own loop; not user code
        ExecutionContext::Park(parker);
        return;
      }
      if (!RegisterWaker(parker, task)) return;  // already unparked
      scheduler_->SuspendCurrent();
    }
    bool ParkUntil(Parker& parker, absl::Time deadline) override {
      CoTask* task = scheduler_->current_;
      if (task == nullptr) return ExecutionContext::ParkUntil(parker, deadline);
      if (deadline == absl::InfiniteFuture()) {
        Park(parker);
        return true;
      }
      if (IsUnparked(parker)) return true;
      if (deadline <= absl::Now()) return false;
      if (!RegisterTimedWaker(parker, task)) return true;  // already unparked
      scheduler_->SuspendCurrentUntil(deadline, &parker);
      // Unparked (Unpark won, or came after the timeout and before this
      // task ran: either way it is consumed), or timed out and idle.
      return IsUnparked(parker);
    }
    absl::Status SleepUntil(absl::Time deadline) override {
      if (scheduler_->current_ == nullptr) return ExecutionContext::SleepUntil(deadline);
      // A deadline that has passed is a yield; with other sleepers it goes
      // through the timers all the same, so sleepers wake in deadline order.
      if (scheduler_->timers_.empty() && deadline <= absl::Now()) {
        scheduler_->YieldCurrent();
        return absl::OkStatus();
      }
      scheduler_->SuspendCurrentUntil(deadline, nullptr);
      return absl::OkStatus();
    }
    // For the loop, at a ParkUntil's deadline: see TimeOutParked.
    static bool TimeOut(Parker& parker) { return TimeOutParked(parker); }
    bool SwitchToParked(Parker& wake, Parker& park) override {
      CoTask* self = scheduler_->current_;
      if (self == nullptr || current_scheduler != scheduler_) return false;
      auto* target = static_cast<CoTask*>(SuspendedToken(wake));
      if (target == nullptr || !scheduler_->NextIfReady(target)) return false;
      if (!RegisterWaker(park, self)) return false;  // unparked already: do not suspend
      MarkUnparked(wake);
      scheduler_->SwitchDirectly(self, target);
      return true;
    }
    bool suspends_task() const override { return true; }
    TaskLocals& task_locals() const override {
      CoTask* task = scheduler_->current_;
      return task != nullptr ? task->locals : ExecutionContext::task_locals();
    }
    const char* name() const override { return "cooperative_task"; }

   protected:
    void Wake(void* token) override { scheduler_->MakeReady(static_cast<CoTask*>(token)); }

   private:
    CooperativeScheduler* const scheduler_;
  };

  struct FdWaiter {
    CoTask* task;
    uint32_t events;
  };

  static absl::Status ShuttingDownError() {
    return absl::FailedPreconditionError("cooperative: Schedule after Shutdown began");
  }

  absl::Status Enqueue(Work work, Job* job) {
    if (current_scheduler == this) {
      // On the scheduler's thread: no lock, no wake-up.
      if (stopping_.load(std::memory_order_acquire)) return ShuttingDownError();
      CoTask* task = NewTask();
      task->work = std::move(work);
      task->job = job;
      if (trace::Enabled()) [[unlikely]] SetTraceUnit(task, trace::RecordSpawn());
      ++live_tasks_;
      PushReady(task);
      spawned_inside_.Add();
      CountAccepted(1);
      return absl::OkStatus();
    }
    {
      MutexLock lock(&inbox_mu_);
      if (stopping_.load(std::memory_order_relaxed)) return ShuttingDownError();
      inbox_work_.push_back({std::move(work), job, trace::RecordSpawn()});
      spawned_outside_.Add();  // before the loop can take it
      inbox_pending_.store(true, std::memory_order_seq_cst);
    }
    WakeLoopIfSleeping();
    return absl::OkStatus();
  }

  // From any thread: `task` parked and may run again.
  void MakeReady(CoTask* task) {
    TraceWake(task);
    if (current_scheduler == this) {
      PushReady(task);
      return;
    }
    {
      MutexLock lock(&inbox_mu_);
      inbox_wakes_.push_back(task);
      inbox_pending_.store(true, std::memory_order_seq_cst);
    }
    WakeLoopIfSleeping();
  }

  // Pairs with the loop's sleeping_ store and inbox re-check (both
  // seq_cst): either the loop sees the inbox, or this sees it asleep.
  void WakeLoopIfSleeping() {
    if (sleeping_.load(std::memory_order_seq_cst)) SignalWakeFd();
  }

  // On the loop thread: `n` more units accepted and not yet started; their
  // number is the queue depth the metrics' high-water mark follows.
  void CountAccepted(uint64_t n) {
    accepted_ += n;
    queue_high_water_.RaiseTo(accepted_ - started_.Read());
  }

  void SignalWakeFd() {
    wakes_.Add();
    const uint64_t one = 1;
    while (write(wake_fd_, &one, sizeof one) < 0 && errno == EINTR) {
    }
  }

  CoTask* NewTask() {
    if (free_tasks_.empty()) return new CoTask;
    CoTask* task = free_tasks_.back();
    free_tasks_.pop_back();
    task->locals.Clear();
    task->trace = {};
    return task;
  }

  void PushReady(CoTask* task) { ready_.Push(task); }
  // A suspended task made ready by the loop (its descriptor).
  void PushWoken(CoTask* task) {
    TraceWake(task);
    PushReady(task);
  }
  // Every wake-up of a suspended task passes here, for a trace.
  static void TraceWake(CoTask* task) {
    if (task->trace.unit != 0) [[unlikely]] trace::RecordWake(task->trace);
  }

  CoTask* PopReady() {
    CoTask* task = ready_.Pop();
    // A count above zero means `task` was a deadline-woken one (not null).
    if (woken_in_front_ > 0) [[unlikely]] {
      if (--woken_in_front_ > 0) {
        // The next task waited for a deadline, likely long enough for its
        // stack to leave the cache: start loading it while this one runs.
        ready_.head->slot->context.PrefetchResume();
      }
    }
    return task;
  }

  // Gives `task` a stack if it has none yet. False when none can be had now
  // (the kernel refused memory or maps, and no stack has been asked for
  // since the retry interval); the task then waits for one.
  bool EnsureSlot(CoTask* task) {
    if (task->slot != nullptr) return true;
    if (!free_slots_.empty()) {
      task->slot = free_slots_.back();
      free_slots_.pop_back();
      task->slot->context.Reset(&CooperativeScheduler::TaskMain, task);
      return true;
    }
    if (stacks_refused_) return false;
    absl::StatusOr<Stack> stack = stacks_.Acquire();
    if (!stack.ok()) {
      stacks_refused_ = true;
      stack_retry_at_ = absl::Now() + kStackRetry;
      if (!warned_about_stacks_) {
        warned_about_stacks_ = true;
        std::fprintf(stderr,
                     "taskrt: cooperative: %s; %zu tasks wait for a stack until others finish\n",
                     stack.status().ToString().c_str(), static_cast<size_t>(live_tasks_));
      }
      return false;
    }
    task->slot = new FiberSlot(*stack, &CooperativeScheduler::TaskMain, task,
                               options_.context_switch);
    return true;
  }

  // The next context for a task that gives up the processor: the next ready
  // task, or the scheduler's loop when none is ready or it is the loop's
  // turn.
  FiberContext& NextContext() {
    if (++switches_ % kLoopInterval != 0 && !inbox_pending_.load(std::memory_order_relaxed)) {
      CoTask* next = ready_.head;
      if (next != nullptr && (next->slot != nullptr || EnsureSlot(next))) {
        PopReady();
        SetCurrent(next);
        return next->slot->context;
      }
    }
    SetCurrent(nullptr);
    return *loop_context_;
  }

  void YieldCurrent() {
    CoTask* self = current_;
    if (self == nullptr) return;
    if (ready_.empty()) {
      if (!inbox_pending_.load(std::memory_order_relaxed) && fd_waiter_count_ == 0 &&
          timers_.empty() && woken_.empty() && stackless_.empty()) {
        return;  // nobody else could run
      }
      // Only the loop can have more: let it look (this task runs again
      // after what it finds).
      PushReady(self);
      SetCurrent(nullptr);
      FiberContext::Switch(self->slot->context, *loop_context_);
      RecycleFinished();
      return;
    }
    PushReady(self);  // behind a non-empty queue: never picked next by itself
    SuspendCurrent();
  }

  // ExecutionContext::YieldToReady: lets the ready tasks run once, if there
  // are any; unlike YieldCurrent it never visits the loop just to look for
  // outside work (a caller about to wait would only wait behind it).
  bool YieldToReadyTask() {
    CoTask* self = current_;
    if (self == nullptr || ready_.empty()) return false;
    PushReady(self);  // behind a non-empty queue: never picked next by itself
    SuspendCurrent();
    return true;
  }

  // Whether `task`, once woken, would be the next to run: nothing else is
  // ready and it is not the loop's turn (see NextContext).
  bool NextIfReady(CoTask* task) const {
    return ready_.empty() && task->slot != nullptr &&
           (switches_ + 1) % kLoopInterval != 0 &&
           !inbox_pending_.load(std::memory_order_relaxed);
  }

  // What waking `target` and suspending `self` does when NextIfReady, by
  // switching straight to it: the hand-off of TaskContext::SwitchToParked.
  void SwitchDirectly(CoTask* self, CoTask* target) {
    ++switches_;
    SetCurrent(target);
    FiberContext::Switch(self->slot->context, target->slot->context);
    RecycleFinished();
  }

  // Every change of the running task goes through here, so that a trace
  // sees each task's run slices.
  void SetCurrent(CoTask* next) {
    if (traced_tasks_ != 0) [[unlikely]] TraceSwitch(current_, next);
    current_ = next;
  }
  void TraceSwitch(CoTask* from, CoTask* to) {
    if (from == to) return;
    if (from != nullptr && from->trace.unit != 0) {
      trace::EndSlice(from->trace);
      if (from->trace.finished) --traced_tasks_;
    }
    if (to != nullptr && to->trace.unit != 0) trace::BeginSlice(to->trace);
  }
  // A new task, traced when a trace runs.
  void SetTraceUnit(CoTask* task, uint64_t unit) {
    task->trace.unit = unit;
    if (unit != 0) ++traced_tasks_;
  }

  // Switches away from the current task; returns when it runs again.
  void SuspendCurrent() {
    CoTask* self = current_;
    FiberContext::Switch(self->slot->context, NextContext());
    RecycleFinished();
  }

  static void TaskMain(void* arg) {
    auto* task = static_cast<CoTask*>(arg);
    CooperativeScheduler* scheduler = current_scheduler;
    scheduler->RecycleFinished();
    while (true) {
      scheduler->started_.Add();
      if (task->job != nullptr) {
        Job* job = std::exchange(task->job, nullptr);
        job->RunAndDelete();
      } else {
        Work work = std::move(task->work);
        std::move(work)();
      }
      --scheduler->live_tasks_;
      task->trace.finished = true;
      // Run the next new unit on this very stack, without a switch, when it
      // is its turn anyway: spawn-heavy loads then reuse one warm stack.
      CoTask* next = scheduler->ready_.head;
      if (next != nullptr && next->slot == nullptr && scheduler->stackless_.empty() &&
          !scheduler->inbox_pending_.load(std::memory_order_relaxed)) {
        if (++scheduler->switches_ % kLoopInterval == 0) {
          // The loop's turn, counted already: straight to it.
          scheduler->finished_ = task;
          scheduler->SetCurrent(nullptr);
          FiberContext::SwitchForLast(task->slot->context, *scheduler->loop_context_);
        }
        scheduler->PopReady();
        next->slot = std::exchange(task->slot, nullptr);
        scheduler->free_tasks_.push_back(task);
        scheduler->SetCurrent(next);
        task = next;
        // The context object stays the same; its start argument is stale,
        // which only matters after a Reset, which sets it again.
        continue;
      }
      scheduler->finished_ = task;
      FiberContext::SwitchForLast(task->slot->context, scheduler->NextContext());
    }
  }

  // Returns the slot of the task that finished just before this context
  // resumed, and the task itself, to the free lists.
  void RecycleFinished() {
    if (finished_ != nullptr) RecycleFinishedTask();
  }
  void RecycleFinishedTask() {
    CoTask* task = std::exchange(finished_, nullptr);
    FiberSlot* slot = std::exchange(task->slot, nullptr);
    if (!stackless_.empty()) {
      // The longest-waiting unit without a stack takes this one.
      CoTask* waiting = stackless_.Pop();
      waiting->slot = slot;
      slot->context.Reset(&CooperativeScheduler::TaskMain, waiting);
      PushReady(waiting);
    } else {
      free_slots_.push_back(slot);
    }
    free_tasks_.push_back(task);
  }

  // Frees what the free lists hold over `keep` entries, the longest unused
  // first. Called with StackOptions::max_cached when the loop goes idle, so
  // that a burst of finishing tasks costs no system call while others wait
  // to run, and with 0 when the loop ends.
  void TrimFreeLists(size_t keep) {
    if (free_slots_.size() > keep) {
      const size_t excess = free_slots_.size() - keep;
      std::vector<Stack> stacks;
      stacks.reserve(excess);
      for (size_t i = 0; i < excess; ++i) {
        stacks.push_back(free_slots_[i]->stack);
        delete free_slots_[i];
      }
      free_slots_.erase(free_slots_.begin(), free_slots_.begin() + static_cast<std::ptrdiff_t>(excess));
      stacks_.ReleaseAll(std::move(stacks));
      stacks_refused_ = false;  // the kernel may give the next one
    }
    if (free_tasks_.size() > keep) {
      const size_t excess = free_tasks_.size() - keep;
      for (size_t i = 0; i < excess; ++i) delete free_tasks_[i];
      free_tasks_.erase(free_tasks_.begin(), free_tasks_.begin() + static_cast<std::ptrdiff_t>(excess));
    }
  }

  absl::Status WaitFdUntil(int fd, short poll_events, absl::Time deadline) {
    CoTask* self = current_;
    if (self == nullptr || current_scheduler != this) {
      return absl::FailedPreconditionError("cooperative: WaitFd outside one of its tasks");
    }
    if (deadline <= absl::Now()) return absl::DeadlineExceededError("WaitFd: deadline");
    std::vector<FdWaiter>& waiters = fd_waiters_[fd];
    waiters.push_back({self, static_cast<uint32_t>(poll_events)});
    if (absl::Status armed = ArmFd(fd, waiters); !armed.ok()) {
      waiters.pop_back();
      if (waiters.empty()) fd_waiters_.erase(fd);
      return armed;
    }
    ++fd_waiter_count_;
    self->waiting_fd = fd;
    self->timed_out = false;
    if (deadline != absl::InfiniteFuture()) {
      timers_.Insert(self, TimerTime(deadline));
    }
    SuspendCurrent();
    self->waiting_fd = -1;
    if (self->timed_out) return absl::DeadlineExceededError("WaitFd: deadline");
    return absl::OkStatus();
  }

  // Suspends the current task until `deadline` (a sleep), or until then or
  // `parker`'s Unpark, whichever wins (ParkUntil; the caller registered a
  // timed waker).
  void SuspendCurrentUntil(absl::Time deadline, Parker* parker) {
    CoTask* self = current_;
    self->timed_parker = parker;
    timers_.Insert(self, TimerTime(deadline));
    SuspendCurrent();
    CancelTimer(self);  // still set when Unpark woke it first
    self->timed_parker = nullptr;
  }

  // Wakes the tasks whose deadline passed, in deadline order: sleepers,
  // parked tasks whose Unpark has not come, and descriptor waiters, which
  // stop waiting on their fd. They queue apart from the ready queue, and
  // each loop visit tops up the ready queue's front to kTimerWakesFirst of
  // them, as Go's timers wake into runnext: a task that slept runs on time
  // and, when it finishes, hands its warm stack to the new units behind it,
  // so a crowd of spawns does not hold a stack each until the last has
  // started. The rest of the ready queue still advances at every loop
  // interval.
  void ExpireTimers() {
    if (!timers_.empty()) {
      timers_.Advance(TimerTime(absl::Now()), [&](TimerWheel::Node* node) {
        auto* task = static_cast<CoTask*>(node);
        if (!WakeAtDeadline(task)) return;
        TraceWake(task);
        woken_.Push(task);
      });
    }
    // Those moved at earlier visits that have not run yet are the first
    // woken_in_front_ of the ready queue: these go behind them, so that
    // all run in deadline order, and the prefix never outgrows the quota.
    const size_t earlier = woken_in_front_;
    if (woken_.empty() || earlier >= kTimerWakesFirst) return;
    CoTask* const batch_head = woken_.head;
    CoTask* batch_tail = batch_head;
    size_t moved = 1;
    while (moved < kTimerWakesFirst - earlier && batch_tail->next_ready != nullptr) {
      batch_tail = batch_tail->next_ready;
      ++moved;
    }
    woken_.head = batch_tail->next_ready;
    if (woken_.head == nullptr) woken_.tail = nullptr;
    CoTask*& link = earlier > 0 ? woken_front_tail_->next_ready : ready_.head;
    batch_tail->next_ready = link;
    link = batch_head;
    if (batch_tail->next_ready == nullptr) ready_.tail = batch_tail;
    woken_front_tail_ = batch_tail;
    woken_in_front_ = earlier + moved;
  }

  // What a task's deadline does to it; true when it is to run (false: an
  // Unpark won the race and its Wake() resumes the task).
  bool WakeAtDeadline(CoTask* task) {
    if (task->timed_parker != nullptr) return TaskContext::TimeOut(*task->timed_parker);
    task->timed_out = true;
    auto it = task->waiting_fd < 0 ? fd_waiters_.end() : fd_waiters_.find(task->waiting_fd);
    if (it != fd_waiters_.end()) {
      std::vector<FdWaiter>& waiters = it->second;
      for (size_t i = 0; i < waiters.size(); ++i) {
        if (waiters[i].task == task) {
          waiters.erase(waiters.begin() + static_cast<std::ptrdiff_t>(i));
          --fd_waiter_count_;
          break;
        }
      }
      // The interest was armed for the union of the waiters' events:
      // narrow it to those still waiting.
      RearmOrWakeAll(it);
    }
    return true;
  }

  // Before sleeping, polls the waiters' descriptors for a short while: a
  // reply that is microseconds away (a round trip) then costs no wake-up
  // of this thread, which costs far more (a futex wake and a context
  // switch, tens of microseconds on virtual machines). Returns whether
  // something became ready.
  bool SpinForReadiness() {
    const absl::Time deadline = absl::Now() + kIdleSpin;
    do {
      PollFds(absl::ZeroDuration());
      if (!ready_.empty() || inbox_pending_.load(std::memory_order_relaxed)) return true;
    } while (absl::Now() < deadline);
    return false;
  }

  // How long the loop may sleep: until the next deadline (a task's, or the
  // next stack retry while units wait for stacks), or for ever.
  absl::Duration SleepTimeout() {
    if (timers_.empty() && stackless_.empty()) return absl::InfiniteDuration();
    const std::optional<uint64_t> next_timer = timers_.NextDeadline();
    absl::Time until = next_timer.has_value()
                           ? absl::FromUnixNanos(static_cast<int64_t>(*next_timer))
                           : absl::InfiniteFuture();
    if (!stackless_.empty()) until = std::min(until, stack_retry_at_);
    return std::max(until - absl::Now(), absl::ZeroDuration());
  }

  // One-shot interest in the union of what the fd's waiters want.
  absl::Status ArmFd(int fd, const std::vector<FdWaiter>& waiters) {
    epoll_event event{};
    event.events = EPOLLONESHOT;
    for (const FdWaiter& waiter : waiters) event.events |= waiter.events;
    event.data.fd = fd;
    // A known fd is usually still registered (disarmed); a closed and
    // reused number is not, and a new fd needs adding.
    const bool known = registered_fds_.contains(fd);
    int result = epoll_ctl(epoll_fd_, known ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, fd, &event);
    if (result != 0 && errno == (known ? ENOENT : EEXIST)) {
      result = epoll_ctl(epoll_fd_, known ? EPOLL_CTL_ADD : EPOLL_CTL_MOD, fd, &event);
    }
    if (result != 0) {
      const int error = errno;
      if (error == EBADF) {
        registered_fds_.erase(fd);
        return absl::InvalidArgumentError("WaitFd: file descriptor is not open");
      }
      return ErrnoError(absl::StrCat("cooperative: epoll_ctl on fd ", fd), error);
    }
    registered_fds_.insert({fd, true});
    return absl::OkStatus();
  }

  // epoll_wait for up to `timeout` (infinite: until an event), to the
  // nanosecond where the kernel has epoll_pwait2, so a deadline is not
  // rounded up to the next millisecond.
  int WaitForEvents(epoll_event* events, absl::Duration timeout) {
    if (timeout == absl::InfiniteDuration()) {
      return epoll_wait(epoll_fd_, events, kMaxEventsPerPoll, -1);
    }
    if (timeout <= absl::ZeroDuration()) return epoll_wait(epoll_fd_, events, kMaxEventsPerPoll, 0);
    if (epoll_pwait2_works.load(std::memory_order_relaxed)) {
      const timespec wait = absl::ToTimespec(timeout);
      const int count = epoll_pwait2(epoll_fd_, events, kMaxEventsPerPoll, &wait, nullptr);
      // ENOSYS: an older kernel; EPERM: a seccomp filter that predates it.
      if (count >= 0 || (errno != ENOSYS && errno != EPERM)) return count;
      epoll_pwait2_works.store(false, std::memory_order_relaxed);
    }
    const int64_t ms = std::min<int64_t>(
        absl::ToInt64Milliseconds(absl::Ceil(timeout, absl::Milliseconds(1))), 1 << 30);
    return epoll_wait(epoll_fd_, events, kMaxEventsPerPoll, static_cast<int>(ms));
  }

  // Readiness and the wake-up fd, waiting up to `timeout` for either.
  void PollFds(absl::Duration timeout) {
    epoll_event events[kMaxEventsPerPoll];
    int count;
    do {
      count = WaitForEvents(events, timeout);
    } while (count < 0 && errno == EINTR);
    for (int i = 0; i < count; ++i) {
      const int fd = events[i].data.fd;
      if (fd == wake_fd_) {
        uint64_t value;
        while (read(wake_fd_, &value, sizeof value) < 0 && errno == EINTR) {
        }
        continue;
      }
      auto it = fd_waiters_.find(fd);
      if (it == fd_waiters_.end()) continue;
      const uint32_t happened = events[i].events;
      std::vector<FdWaiter>& waiters = it->second;
      // Errors and hang-ups wake everyone: each retries and finds out.
      const bool wake_all = (happened & (EPOLLERR | EPOLLHUP)) != 0;
      size_t kept = 0;
      for (FdWaiter& waiter : waiters) {
        if (wake_all || (waiter.events & happened) != 0) {
          --fd_waiter_count_;
          CancelTimer(waiter.task);
          PushWoken(waiter.task);
        } else {
          waiters[kept++] = waiter;
        }
      }
      waiters.resize(kept);
      RearmOrWakeAll(it);
    }
  }

  // After some waiters of a descriptor left: forgets it when none is left,
  // else re-arms its one-shot interest for the others. When the kernel
  // refuses that, they are all woken: each retries its operation and, if it
  // waits again, gets the error from WaitFd.
  void RearmOrWakeAll(absl::flat_hash_map<int, std::vector<FdWaiter>>::iterator it) {
    std::vector<FdWaiter>& waiters = it->second;
    if (!waiters.empty() && ArmFd(it->first, waiters).ok()) return;
    for (FdWaiter& waiter : waiters) {
      CancelTimer(waiter.task);
      PushWoken(waiter.task);
    }
    fd_waiter_count_ -= waiters.size();
    fd_waiters_.erase(it);
  }

  void CancelTimer(CoTask* task) {
    timers_.Remove(task);
  }

  // Moves work and wake-ups from other threads into the ready queue.
  void DrainInbox() {
    if (!inbox_pending_.load(std::memory_order_seq_cst)) return;
    std::vector<InboxUnit> work;
    std::vector<CoTask*> wakes;
    {
      MutexLock lock(&inbox_mu_);
      work.swap(inbox_work_);
      wakes.swap(inbox_wakes_);
      inbox_pending_.store(false, std::memory_order_seq_cst);
    }
    for (CoTask* task : wakes) PushReady(task);
    for (InboxUnit& unit : work) {
      CoTask* task = NewTask();
      task->work = std::move(unit.work);
      task->job = unit.job;
      SetTraceUnit(task, unit.trace_unit);
      ++live_tasks_;
      PushReady(task);
    }
    if (!work.empty()) CountAccepted(work.size());
  }

  bool InboxEmpty() {
    MutexLock lock(&inbox_mu_);
    return inbox_work_.empty() && inbox_wakes_.empty();
  }

  void LoopMain() {
    UseTightTimerSlack();  // its waits end at task deadlines
    current_scheduler = this;
    trace::NameThread(name());
    ScopedExecutionContext scope(&context_);
    FiberContext loop_context(options_.context_switch);
    loop_context_ = &loop_context;
    while (true) {
      DrainInbox();
      ExpireTimers();
      if (!stackless_.empty() && absl::Now() >= stack_retry_at_) RetryStacks();
      if (!ready_.empty()) {
        if (fd_waiter_count_ > 0) PollFds(absl::ZeroDuration());
        CoTask* next = TakeRunnable();
        // Null: every ready unit needed a stack the kernel refused, and
        // waits for a finishing task's or the retry (in SleepTimeout).
        if (next == nullptr) continue;
        SetCurrent(next);
        FiberContext::Switch(loop_context, next->slot->context);
        SetCurrent(nullptr);
        RecycleFinished();
        continue;
      }
      if (stopping_.load(std::memory_order_seq_cst) && live_tasks_ == 0 && InboxEmpty()) break;
      if (fd_waiter_count_ > 0 && SpinForReadiness()) continue;
      TrimFreeLists(options_.stack.max_cached);
      sleeping_.store(true, std::memory_order_seq_cst);
      if (!inbox_pending_.load(std::memory_order_seq_cst)) {
        const absl::Duration timeout = SleepTimeout();
        if (timeout > absl::ZeroDuration()) parks_.Add();
        PollFds(timeout);
      }
      sleeping_.store(false, std::memory_order_seq_cst);
    }
    TrimFreeLists(0);
    loop_context_ = nullptr;
    current_scheduler = nullptr;
  }

  // Pops and returns the first ready task that has a stack or can get one
  // now; null when none can run. New units that can get none move to the
  // stackless queue on the way, so that each is looked at once, not once
  // per task that runs while stacks are short.
  CoTask* TakeRunnable() {
    while (CoTask* task = PopReady()) {
      if (task->slot != nullptr || EnsureSlot(task)) return task;
      stackless_.Push(task);
    }
    return nullptr;
  }

  // Asks the kernel for stacks again, for as many waiting units as it gives.
  void RetryStacks() {
    stacks_refused_ = false;
    while (!stackless_.empty() && EnsureSlot(stackless_.head)) PushReady(stackless_.Pop());
  }

  const CooperativeOptions options_;
  StackPool stacks_;
  const int epoll_fd_;
  const int wake_fd_;
  TaskContext context_;
  std::thread thread_;
  Mutex shutdown_mu_;

  // Work and wake-ups from other threads.
  Mutex inbox_mu_;
  std::vector<InboxUnit> inbox_work_ ABSL_GUARDED_BY(inbox_mu_);
  std::vector<CoTask*> inbox_wakes_ ABSL_GUARDED_BY(inbox_mu_);
  std::atomic<bool> inbox_pending_{false};
  std::atomic<bool> sleeping_{false};
  std::atomic<bool> stopping_{false};

  // Owned by the scheduler's thread.
  FiberContext* loop_context_ = nullptr;
  CoTask* current_ = nullptr;   // null while the loop itself runs
  uint64_t traced_tasks_ = 0;   // live tasks spawned while a trace ran
  CoTask* finished_ = nullptr;  // finished, its slot not yet recycled
  TaskQueue ready_;
  size_t live_tasks_ = 0;
  uint32_t switches_ = 0;
  bool warned_about_stacks_ = false;
  // New units waiting for a stack: each finishing task hands its stack to
  // the first.
  TaskQueue stackless_;
  // Tasks woken by their deadline, waiting for their turn ahead of the
  // ready queue (see ExpireTimers).
  TaskQueue woken_;
  // How many of the ready queue's first tasks ExpireTimers put there, and
  // the last of them (valid while the count is not zero). The count never
  // exceeds the queue's length, and each of those tasks has a slot (it
  // suspended to wait): PopReady reads the next one's context.
  size_t woken_in_front_ = 0;
  CoTask* woken_front_tail_ = nullptr;
  // Metrics. The loop thread writes the owned ones; other threads spawn and
  // wake through the shared ones.
  OwnedCounter started_, spawned_inside_, parks_, helps_, queue_high_water_;
  uint64_t accepted_ = 0;  // units accepted on the loop thread (CountAccepted)
  SharedCounter spawned_outside_, wakes_;
  bool stacks_refused_ = false;  // until stack_retry_at_, only stacks handed on
  absl::Time stack_retry_at_;
  std::vector<FiberSlot*> free_slots_;
  std::vector<CoTask*> free_tasks_;
  absl::flat_hash_map<int, std::vector<FdWaiter>> fd_waiters_;
  absl::flat_hash_map<int, bool> registered_fds_;
  TimerWheel timers_{TimerTime(absl::Now())};
  size_t fd_waiter_count_ = 0;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Scheduler>> NewCooperativeScheduler(
    const CooperativeOptions& options) {
  if (!ContextSwitchAvailable(options.context_switch)) {
    return absl::InvalidArgumentError(absl::StrCat("cooperative: the ",
                                                   ContextSwitchName(options.context_switch),
                                                   " context switch is not built for this CPU"));
  }
  StackOptions stack_options = options.stack;
  stack_options.max_cached = 0;  // the scheduler caches whole fiber slots itself
  absl::StatusOr<StackPool> stacks = StackPool::Create(stack_options);
  if (!stacks.ok()) return stacks.status();
  const int epoll_fd = epoll_create1(EPOLL_CLOEXEC);
  if (epoll_fd < 0) return ErrnoError("cooperative: epoll_create1", errno);
  const int wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (wake_fd < 0) {
    const int error = errno;
    close(epoll_fd);
    return ErrnoError("cooperative: eventfd", error);
  }
  auto scheduler =
      std::make_unique<CooperativeScheduler>(options, *std::move(stacks), epoll_fd, wake_fd);
  if (absl::Status started = scheduler->Start(); !started.ok()) return started;
  return scheduler;
}

}  // namespace taskrt
