#include "core/task_group.h"

#include <thread>

namespace taskrt {

void TaskGroup::Wait() {
  // Helping rounds that found nothing to do before this worker sleeps until
  // the children running elsewhere finish.
  constexpr int kIdleRoundsBeforeSleep = 64;
  const bool on_worker = scheduler_.IsCurrentThreadOwned();
  int idle_rounds = 0;
  while (true) {
    const int64_t pending = pending_.load(std::memory_order_acquire);
    if (pending == 0) return;
    if (on_worker && scheduler_.RunPendingWork()) {
      idle_rounds = 0;
      continue;
    }
    if (on_worker && ++idle_rounds < kIdleRoundsBeforeSleep) {
      std::this_thread::yield();
      continue;
    }
    // Sleeps until pending_ changes from the value read above.
    pending_.wait(pending, std::memory_order_acquire);
    idle_rounds = 0;
  }
}

}  // namespace taskrt
