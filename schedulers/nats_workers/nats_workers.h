#ifndef TASKRT_SCHEDULERS_NATS_WORKERS_NATS_WORKERS_H_
#define TASKRT_SCHEDULERS_NATS_WORKERS_NATS_WORKERS_H_

// nats_workers: a scheduler whose tasks run in worker processes, on this
// machine or others, through a NATS broker with JetStream.
//
// Owner side (NewNatsWorkersScheduler)
//   The scheduler runs named entries only (core/entry_registry.h,
//   Task::CreateNamed): a closure cannot leave the process, so Schedule()
//   is kFailedPrecondition. Task::Run publishes "run entry E for the task
//   that listens on subject S" to a JetStream work queue and returns once
//   JetStream has stored it: from then on the task is not lost, even if
//   the broker restarts. The owner's end of the task's channel listens on
//   S, over the scheduler's connection, and its readiness is an eventfd,
//   so callbacks and bound requests work on the owner's loop unchanged.
//
// Worker side (RunWorker, tools/nats_worker)
//   Workers pull jobs from the queue, each as free slots allow, run the
//   entry (registered under the same name in the worker) on a scheduler of
//   their own, and acknowledge the job once the entry has returned and its
//   last word has reached the broker. While an entry runs, its worker
//   tells JetStream it is still at work and asks the owner whether it
//   still wants the task.
//
// At least once
//   A job whose worker dies, hangs, or loses the broker is delivered again,
//   to any worker: after the ack wait (ack_wait) for a dead one, at once
//   for the others. TaskContext::attempt() is JetStream's delivery count
//   (1, 2, ...). Each attempt starts the entry afresh, and the owner makes
//   the retry invisible as far as it can:
//   - The entry reads everything the owner wrote, from the first message:
//     the owner's end keeps what it wrote for the task's whole life (its
//     memory grows with it) and the worker pulls it, message by message.
//   - The owner receives each message once, by position: attempt 2's first
//     messages, which attempt 1 had already delivered, are dropped. So a
//     deterministic entry is seen exactly once; an entry whose output
//     differs on a retry should check attempt().
//   - Only the attempt the owner heard from last counts. Every request a
//     worker makes about its attempt (hello, keep-alive, done) gets the
//     owner's verdict: go on; stop (the task is over: the job is dropped);
//     superseded (a newer delivery has it: the job is left to it); or
//     retry (pieces went missing, say across an interrupted connection:
//     the job is handed back). A worker acknowledges a job only on "go on"
//     to its done, which the owner gives once every message the attempt
//     wrote has arrived whole.
//
// The task's channel (core/channel.h's contract)
//   Worker to owner: pieces of at most the broker's payload, each with its
//   message's sequence and offset, under a credit window of
//   ChannelOptions::buffer_bytes (256 KiB by default). Owner to worker: the
//   owner's Write is accepted while the bytes the worker has not yet been
//   sent stay within the window; the worker pulls one message at a time,
//   so each owner message costs a round trip. Finished: the owner's
//   "go on" to the worker's done; RemoteOwnerEnd::EntryResult() has the
//   value from then on, and the owner's reads end with kOutOfRange once
//   all is read. Closing the owner's end (destroying the Task) cancels the
//   entry: its reads end at once, without what it had not yet pulled.
//
// Errors
//   An unreachable broker, or JetStream off: kUnavailable from the
//   factory; an ack wait under 300 ms: kInvalidArgument. A task run after
//   Shutdown(): kFailedPrecondition (jobs queued before it stay with the
//   workers). An entry the worker does not have: the owner's reads fail
//   with kNotFound saying so, and the task finishes with -1. The broker
//   lost for good (the library's reconnects give up after about 30 s):
//   kUnavailable on every end, the tasks finish with -1, and RunWorker
//   returns kUnavailable. Anything malformed on a task's subject:
//   kDataLoss at the receive that reaches it (one report at a time however
//   many come); the stream goes on.
//
// Limits
//   - The broker's clients are trusted with the tasks' subjects: a client
//     that listens to the queue learns them, and crafted messages can end
//     or stall the task they name (never crash the owner or a worker). Keep
//     untrusted clients off the broker with NATS's own permissions.
//   - A job whose owner does not answer for 10 deliveries in a row (half a
//     second apart) is dropped as given up; if that owner comes back, its
//     task waits for ever.
//   - Deliveries are not capped: an entry that kills its worker every time
//     is retried for as long as workers remain.
//
// Thread safety: as core/scheduler.h and core/channel.h say; the ends'
// state is shared with the library's delivery threads under their locks.

#include <atomic>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "core/backend.h"
#include "core/scheduler.h"

namespace taskrt {

struct NatsWorkersOptions {
  // nats://host:port; empty: platform/nats/broker.h's BrokerUrl().
  std::string url;
  // How long JetStream waits for a worker's word before it delivers the
  // job again. Owners and workers of one broker must agree.
  absl::Duration ack_wait = absl::Seconds(30);
};

absl::StatusOr<std::unique_ptr<Scheduler>> NewNatsWorkersScheduler(
    const NatsWorkersOptions& options = {});

// This backend's descriptor ("nats_workers"), listed in backends/registry.cc
// among the schedulers that run entries elsewhere. It takes the broker from
// $TASKRT_NATS_URL (workers must reach the same one).
const SchedulerDescriptor& NatsWorkersDescriptor();

struct NatsWorkerOptions {
  NatsWorkersOptions queue;
  // Entries run on this scheduler (not owned), at most `slots` at once.
  Scheduler* scheduler = nullptr;
  int slots = 1;
  // RunWorker returns once this is true (polled between jobs; checked at
  // least once a second).
  const std::atomic<bool>* stop = nullptr;
  // One line per job started and ended, and why a job is retried; null:
  // silent.
  FILE* log = nullptr;
};

// Runs jobs until *options.stop. kUnavailable when the broker cannot be
// reached at start; kInvalidArgument for a missing scheduler or slots < 1.
absl::Status RunWorker(const NatsWorkerOptions& options);

}  // namespace taskrt

#endif  // TASKRT_SCHEDULERS_NATS_WORKERS_NATS_WORKERS_H_
