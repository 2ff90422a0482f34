#ifndef TASKRT_SCHEDULERS_NATS_WORKERS_WIRE_H_
#define TASKRT_SCHEDULERS_NATS_WORKERS_WIRE_H_

// What owners and workers of nats_workers say to each other: the job in the
// work queue, and the messages on a task's two subjects. Shared by the two
// sides (nats_workers.cc, worker.cc); see nats_workers.h for the protocol.

#include <nats/nats.h>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace taskrt::nats_workers_wire {

// The JetStream work queue: one stream, one durable pull consumer that
// every worker shares.
inline constexpr char kStream[] = "TASKRT_JOBS";
inline constexpr char kJobSubject[] = "taskrt.jobs";
inline constexpr char kConsumer[] = "taskrt_workers";

// Creates the stream and the consumer, or finds them as they are (both
// sides call it; the first creates). kFailedPrecondition when they exist
// with another configuration (another ack wait, say).
absl::Status EnsureQueue(jsCtx* js, absl::Duration ack_wait);

// kInvalidArgument for an ack wait under kMinimumAckWait: a worker tells
// JetStream it is at work every third of it.
inline constexpr absl::Duration kMinimumAckWait = absl::Milliseconds(300);
absl::Status CheckAckWait(absl::Duration ack_wait);

// "Run entry E for the task whose owner listens on S."
struct Job {
  std::string entry;
  std::string owner_subject;
  uint64_t window = 0;
  uint64_t max_message_size = 0;
};
std::string EncodeJob(const Job& job);
// kDataLoss for anything else.
absl::Status DecodeJob(absl::string_view bytes, Job& job);

// Every message on a task's subjects starts with a kind byte and the
// attempt (JetStream's delivery count of the job) it belongs to.
enum Kind : char {
  // Worker to owner. Requests are answered with a verdict (below).
  kHello = 'H',      // request; rest: the worker's subject
  kKeepAlive = 'K',  // request
  kDone = 'D',       // request; rest: i32 result, u64 messages written
  kFailed = 'F',     // request; rest: why the worker cannot run the entry
  kPull = 'P',       // rest: u64 index of the owner's message wanted next
  kBlocked = 'B',    // the worker waits for credit
  // A piece of a message, both ways; rest: u64 sequence (the owner's
  // message index when pulled), u64 offset in the message, then bytes.
  kMore = 'M',  // more pieces follow
  kLast = 'L',  // the last (or only) piece
  // Owner to worker.
  kCredit = 'C',  // rest: u64 bytes the owner has taken
  kCancel = 'Q',  // the owner asks the entry to stop (cancel_requested)
  kClose = 'X',   // the owner closed its end: the attempt is over
};

// The owner's verdict on a worker's request about its attempt.
inline constexpr char kGoOn[] = "ok";              // the attempt counts
inline constexpr char kStop[] = "stop";            // the task is over: drop the job
inline constexpr char kAlreadyDone[] = "done";     // an earlier attempt finished it
inline constexpr char kSuperseded[] = "superseded";  // a newer delivery has it: leave the job
inline constexpr char kRetry[] = "retry";          // this attempt cannot count: hand it back

// What every piece costs against the window beyond its bytes.
inline constexpr size_t kPieceOverhead = 16;
inline constexpr size_t kHeaderSize = 1 + 4;
inline constexpr size_t kPieceHeaderSize = kHeaderSize + 8 + 8;
inline constexpr uint64_t kMinimumWindow = 4 * kPieceOverhead;

// A subject a task's side may publish to: _INBOX.<tokens of [A-Za-z0-9_-]>
// separated by dots, no wildcards, no space or control bytes (a subject is
// written into the broker's protocol as it is).
bool IsWorkerSubject(absl::string_view subject);

// Asks JetStream to drop the job at `sequence` (a task given up before any
// worker took it), without waiting for its answer.
std::string DeleteJobSubject();
std::string DeleteJobRequest(uint64_t sequence);

std::string Header(Kind kind, uint32_t attempt);
void AppendU64(std::string& out, uint64_t value);
void AppendI32(std::string& out, int32_t value);

// A parsed message: kind, attempt, and what follows them.
struct Parsed {
  char kind = 0;
  uint32_t attempt = 0;
  absl::string_view rest;
};
std::optional<Parsed> Parse(absl::string_view bytes);
// Takes a u64 (i32) off the front of `bytes`; false when too short.
bool TakeU64(absl::string_view& bytes, uint64_t& value);
bool TakeI32(absl::string_view& bytes, int32_t& value);

absl::string_view DataOf(natsMsg* message);

}  // namespace taskrt::nats_workers_wire

#endif  // TASKRT_SCHEDULERS_NATS_WORKERS_WIRE_H_
