#include "schedulers/cooperative/cooperative.h"

#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <map>
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
#include "core/mutex.h"

namespace taskrt {
namespace {

// Every this many switches a task that gives up the processor returns to
// the scheduler's loop, which picks up outside work and descriptor
// readiness (Go's and Tokio's schedulers use the same interval).
constexpr uint32_t kLoopInterval = 61;
constexpr int kMaxEventsPerPoll = 64;
// How long an idle loop polls before it sleeps; as the OS-thread context's
// spin (core/execution_context.cc), measured with the round_trip job.
constexpr absl::Duration kIdleSpin = absl::Microseconds(50);

class CooperativeScheduler;

// A stack and the context that runs on it; reused from task to task.
struct FiberSlot {
  FiberSlot(const Stack& s, FiberContext::StartFunction start, void* arg, ContextSwitchKind kind)
      : stack(s), context(s, start, arg, kind) {}
  Stack stack;
  FiberContext context;
};

// One unit of work. It gets a FiberSlot when it first runs.
struct CoTask {
  Work work;
  Job* job = nullptr;
  FiberSlot* slot = nullptr;
  CoTask* next_ready = nullptr;
  TaskLocals locals;  // ExecutionContext::task_local()
  // While waiting on a descriptor with a deadline.
  int waiting_fd = -1;
  bool has_timer = false;
  bool timed_out = false;
  std::multimap<absl::Time, CoTask*>::iterator timer;
};

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
    if (current_scheduler != this || current_ == nullptr || ready_head_ == nullptr) return false;
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
      ++live_tasks_;
      PushReady(task);
      return absl::OkStatus();
    }
    {
      MutexLock lock(&inbox_mu_);
      if (stopping_.load(std::memory_order_relaxed)) return ShuttingDownError();
      inbox_work_.push_back({std::move(work), job});
      inbox_pending_.store(true, std::memory_order_seq_cst);
    }
    WakeLoopIfSleeping();
    return absl::OkStatus();
  }

  // From any thread: `task` parked and may run again.
  void MakeReady(CoTask* task) {
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

  void SignalWakeFd() {
    const uint64_t one = 1;
    while (write(wake_fd_, &one, sizeof one) < 0 && errno == EINTR) {
    }
  }

  CoTask* NewTask() {
    if (free_tasks_.empty()) return new CoTask;
    CoTask* task = free_tasks_.back();
    free_tasks_.pop_back();
    task->locals.Clear();
    return task;
  }

  void PushReady(CoTask* task) {
    task->next_ready = nullptr;
    if (ready_tail_ == nullptr) {
      ready_head_ = task;
    } else {
      ready_tail_->next_ready = task;
    }
    ready_tail_ = task;
  }

  CoTask* PopReady() {
    CoTask* task = ready_head_;
    if (task == nullptr) return nullptr;
    ready_head_ = task->next_ready;
    if (ready_head_ == nullptr) ready_tail_ = nullptr;
    return task;
  }

  // Gives `task` a stack if it has none yet. False when none can be had now
  // (the kernel refused memory or maps); the task then waits for one.
  bool EnsureSlot(CoTask* task) {
    if (task->slot != nullptr) return true;
    if (!free_slots_.empty()) {
      task->slot = free_slots_.back();
      free_slots_.pop_back();
      task->slot->context.Reset(&CooperativeScheduler::TaskMain, task);
      return true;
    }
    absl::StatusOr<Stack> stack = stacks_.Acquire();
    if (!stack.ok()) {
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
      CoTask* next = ready_head_;
      if (next != nullptr && (next->slot != nullptr || EnsureSlot(next))) {
        PopReady();
        current_ = next;
        return next->slot->context;
      }
    }
    current_ = nullptr;
    return *loop_context_;
  }

  void YieldCurrent() {
    CoTask* self = current_;
    if (self == nullptr) return;
    if (ready_head_ == nullptr) {
      if (!inbox_pending_.load(std::memory_order_relaxed) && fd_waiter_count_ == 0) {
        return;  // nobody else could run
      }
      // Only the loop can have more: let it look (it runs this task next).
      PushReady(self);
      current_ = nullptr;
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
    if (self == nullptr || ready_head_ == nullptr) return false;
    PushReady(self);  // behind a non-empty queue: never picked next by itself
    SuspendCurrent();
    return true;
  }

  // Whether `task`, once woken, would be the next to run: nothing else is
  // ready and it is not the loop's turn (see NextContext).
  bool NextIfReady(CoTask* task) const {
    return ready_head_ == nullptr && task->slot != nullptr &&
           (switches_ + 1) % kLoopInterval != 0 &&
           !inbox_pending_.load(std::memory_order_relaxed);
  }

  // What waking `target` and suspending `self` does when NextIfReady, by
  // switching straight to it: the hand-off of TaskContext::SwitchToParked.
  void SwitchDirectly(CoTask* self, CoTask* target) {
    ++switches_;
    current_ = target;
    FiberContext::Switch(self->slot->context, target->slot->context);
    RecycleFinished();
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
      if (task->job != nullptr) {
        Job* job = std::exchange(task->job, nullptr);
        job->RunAndDelete();
      } else {
        Work work = std::move(task->work);
        std::move(work)();
      }
      --scheduler->live_tasks_;
      // Run the next new unit on this very stack, without a switch, when it
      // is its turn anyway: spawn-heavy loads then reuse one warm stack.
      CoTask* next = scheduler->ready_head_;
      if (next != nullptr && next->slot == nullptr &&
          ++scheduler->switches_ % kLoopInterval != 0 &&
          !scheduler->inbox_pending_.load(std::memory_order_relaxed)) {
        scheduler->PopReady();
        next->slot = std::exchange(task->slot, nullptr);
        scheduler->free_tasks_.push_back(task);
        scheduler->current_ = next;
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
    if (free_slots_.size() < options_.stack.max_cached) {
      free_slots_.push_back(slot);
    } else {
      Stack stack = slot->stack;
      delete slot;
      stacks_.Release(stack);
    }
    if (free_tasks_.size() < options_.stack.max_cached) {
      free_tasks_.push_back(task);
    } else {
      delete task;
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
      self->timer = timers_.emplace(deadline, self);
      self->has_timer = true;
    }
    SuspendCurrent();
    self->waiting_fd = -1;
    if (self->timed_out) return absl::DeadlineExceededError("WaitFd: deadline");
    return absl::OkStatus();
  }

  // Wakes the waiters whose deadline passed; they stop waiting on their fd.
  void ExpireTimers() {
    if (timers_.empty()) return;
    const absl::Time now = absl::Now();
    while (!timers_.empty() && timers_.begin()->first <= now) {
      CoTask* task = timers_.begin()->second;
      timers_.erase(timers_.begin());
      task->has_timer = false;
      task->timed_out = true;
      auto it = fd_waiters_.find(task->waiting_fd);
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
      PushReady(task);
    }
  }

  // Before sleeping, polls the waiters' descriptors for a short while: a
  // reply that is microseconds away (a round trip) then costs no wake-up
  // of this thread, which costs far more (a futex wake and a context
  // switch, tens of microseconds on virtual machines). Returns whether
  // something became ready.
  bool SpinForReadiness() {
    const absl::Time deadline = absl::Now() + kIdleSpin;
    do {
      PollFds(0);
      if (ready_head_ != nullptr || inbox_pending_.load(std::memory_order_relaxed)) return true;
    } while (absl::Now() < deadline);
    return false;
  }

  // How long the loop may sleep: until the next deadline, or for ever.
  int SleepTimeoutMs() const {
    if (timers_.empty()) return -1;
    const absl::Duration left = timers_.begin()->first - absl::Now();
    if (left <= absl::ZeroDuration()) return 0;
    return static_cast<int>(std::min<int64_t>(
        absl::ToInt64Milliseconds(absl::Ceil(left, absl::Milliseconds(1))), 1 << 30));
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

  // Readiness and the wake-up fd; `timeout_ms` -1 sleeps until either.
  void PollFds(int timeout_ms) {
    epoll_event events[kMaxEventsPerPoll];
    int count;
    do {
      count = epoll_wait(epoll_fd_, events, kMaxEventsPerPoll, timeout_ms);
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
          PushReady(waiter.task);
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
      PushReady(waiter.task);
    }
    fd_waiter_count_ -= waiters.size();
    fd_waiters_.erase(it);
  }

  void CancelTimer(CoTask* task) {
    if (!task->has_timer) return;
    timers_.erase(task->timer);
    task->has_timer = false;
  }

  // Moves work and wake-ups from other threads into the ready queue.
  void DrainInbox() {
    if (!inbox_pending_.load(std::memory_order_seq_cst)) return;
    std::vector<std::pair<Work, Job*>> work;
    std::vector<CoTask*> wakes;
    {
      MutexLock lock(&inbox_mu_);
      work.swap(inbox_work_);
      wakes.swap(inbox_wakes_);
      inbox_pending_.store(false, std::memory_order_seq_cst);
    }
    for (CoTask* task : wakes) PushReady(task);
    for (auto& [unit, job] : work) {
      CoTask* task = NewTask();
      task->work = std::move(unit);
      task->job = job;
      ++live_tasks_;
      PushReady(task);
    }
  }

  bool InboxEmpty() {
    MutexLock lock(&inbox_mu_);
    return inbox_work_.empty() && inbox_wakes_.empty();
  }

  void LoopMain() {
    current_scheduler = this;
    ScopedExecutionContext scope(&context_);
    FiberContext loop_context(options_.context_switch);
    loop_context_ = &loop_context;
    while (true) {
      DrainInbox();
      ExpireTimers();
      if (ready_head_ != nullptr) {
        if (fd_waiter_count_ > 0) PollFds(0);
        CoTask* next = TakeRunnable();
        if (next == nullptr) {
          // Every ready unit still needs a stack and the kernel refuses
          // one (EnsureSlot reported why): wait for a suspended task to
          // wake and finish, or retry the allocation a little later.
          PollFds(live_tasks_ > CountQueuedNew() ? SleepTimeoutMs() : 100);
          continue;
        }
        current_ = next;
        FiberContext::Switch(loop_context, next->slot->context);
        current_ = nullptr;
        RecycleFinished();
        continue;
      }
      if (stopping_.load(std::memory_order_seq_cst) && live_tasks_ == 0 && InboxEmpty()) break;
      if (fd_waiter_count_ > 0 && SpinForReadiness()) continue;
      sleeping_.store(true, std::memory_order_seq_cst);
      if (!inbox_pending_.load(std::memory_order_seq_cst)) PollFds(SleepTimeoutMs());
      sleeping_.store(false, std::memory_order_seq_cst);
    }
    for (FiberSlot* slot : free_slots_) {
      Stack stack = slot->stack;
      delete slot;
      stacks_.Release(stack);
    }
    free_slots_.clear();
    for (CoTask* task : free_tasks_) delete task;
    free_tasks_.clear();
    loop_context_ = nullptr;
    current_scheduler = nullptr;
  }

  // Unlinks and returns the first ready task that has a stack or can get
  // one now; null when none can run.
  CoTask* TakeRunnable() {
    CoTask* previous = nullptr;
    bool stacks_refused = false;
    for (CoTask* task = ready_head_; task != nullptr; previous = task, task = task->next_ready) {
      if (task->slot == nullptr) {
        if (stacks_refused) continue;
        if (!EnsureSlot(task)) {
          stacks_refused = true;
          continue;
        }
      }
      (previous == nullptr ? ready_head_ : previous->next_ready) = task->next_ready;
      if (ready_tail_ == task) ready_tail_ = previous;
      return task;
    }
    return nullptr;
  }

  size_t CountQueuedNew() const {
    size_t count = 0;
    for (CoTask* task = ready_head_; task != nullptr; task = task->next_ready) {
      if (task->slot == nullptr) ++count;
    }
    return count;
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
  std::vector<std::pair<Work, Job*>> inbox_work_ ABSL_GUARDED_BY(inbox_mu_);
  std::vector<CoTask*> inbox_wakes_ ABSL_GUARDED_BY(inbox_mu_);
  std::atomic<bool> inbox_pending_{false};
  std::atomic<bool> sleeping_{false};
  std::atomic<bool> stopping_{false};

  // Owned by the scheduler's thread.
  FiberContext* loop_context_ = nullptr;
  CoTask* current_ = nullptr;   // null while the loop itself runs
  CoTask* finished_ = nullptr;  // finished, its slot not yet recycled
  CoTask* ready_head_ = nullptr;
  CoTask* ready_tail_ = nullptr;
  size_t live_tasks_ = 0;
  uint32_t switches_ = 0;
  bool warned_about_stacks_ = false;
  std::vector<FiberSlot*> free_slots_;
  std::vector<CoTask*> free_tasks_;
  absl::flat_hash_map<int, std::vector<FdWaiter>> fd_waiters_;
  absl::flat_hash_map<int, bool> registered_fds_;
  std::multimap<absl::Time, CoTask*> timers_;
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
