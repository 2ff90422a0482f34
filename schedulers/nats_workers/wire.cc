#include "schedulers/nats_workers/wire.h"

#include <cstring>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "platform/nats/connection.h"

namespace taskrt::nats_workers_wire {
namespace {

constexpr absl::string_view kJobMagic = "taskrt-job 1";

template <typename T>
void AppendRaw(std::string& out, T value) {
  // Little-endian on the wire whatever the host, for mixed machines.
  for (size_t i = 0; i < sizeof value; ++i) {
    out.push_back(static_cast<char>((static_cast<uint64_t>(value) >> (8 * i)) & 0xff));
  }
}

template <typename T>
bool TakeRaw(absl::string_view& bytes, T& value) {
  if (bytes.size() < sizeof value) return false;
  uint64_t raw = 0;
  for (size_t i = 0; i < sizeof value; ++i) {
    raw |= static_cast<uint64_t>(static_cast<unsigned char>(bytes[i])) << (8 * i);
  }
  value = static_cast<T>(raw);
  bytes.remove_prefix(sizeof value);
  return true;
}

}  // namespace

absl::Status EnsureQueue(jsCtx* js, absl::Duration ack_wait) {
  using nats_platform::NatsError;
  const char* subjects[] = {kJobSubject};
  jsStreamConfig stream;
  jsStreamConfig_Init(&stream);
  stream.Name = kStream;
  stream.Subjects = subjects;
  stream.SubjectsLen = 1;
  stream.Retention = js_WorkQueuePolicy;
  stream.Storage = js_FileStorage;
  jsErrCode error = static_cast<jsErrCode>(0);
  jsStreamInfo* stream_info = nullptr;
  natsStatus status = js_AddStream(&stream_info, js, &stream, nullptr, &error);
  jsStreamInfo_Destroy(stream_info);
  if (status != NATS_OK && error != JSStreamNameExistErr) {
    return NatsError(absl::StrCat("work queue stream ", kStream, " (JetStream error ", error, ")"),
                     status);
  }
  if (status != NATS_OK) {
    return absl::FailedPreconditionError(absl::StrCat(
        "nats_workers: stream ", kStream, " exists with another configuration than a work queue on ",
        kJobSubject));
  }
  jsConsumerConfig consumer;
  jsConsumerConfig_Init(&consumer);
  consumer.Durable = kConsumer;
  consumer.AckPolicy = js_AckExplicit;
  consumer.AckWait = absl::ToInt64Nanoseconds(ack_wait);
  consumer.MaxDeliver = -1;
  consumer.MaxAckPending = -1;
  jsConsumerInfo* consumer_info = nullptr;
  error = static_cast<jsErrCode>(0);
  status = js_AddConsumer(&consumer_info, js, kStream, &consumer, nullptr, &error);
  jsConsumerInfo_Destroy(consumer_info);
  if (status == NATS_OK) return absl::OkStatus();
  if (error == JSConsumerNameExistErr) {
    return absl::FailedPreconditionError(absl::StrCat(
        "nats_workers: consumer ", kConsumer, " exists with another configuration (the ack wait "
        "differs between this process and the ones that created it: ", absl::FormatDuration(ack_wait),
        " here)"));
  }
  return NatsError(absl::StrCat("work queue consumer ", kConsumer, " (JetStream error ", error, ")"),
                   status);
}

absl::Status CheckAckWait(absl::Duration ack_wait) {
  if (ack_wait >= kMinimumAckWait) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat("nats_workers: an ack wait of ",
                                                 absl::FormatDuration(ack_wait), " is under the ",
                                                 absl::FormatDuration(kMinimumAckWait), " minimum"));
}

std::string EncodeJob(const Job& job) {
  return absl::StrCat(kJobMagic, "\n", job.entry, "\n", job.owner_subject, "\n", job.window, "\n",
                      job.max_message_size, "\n");
}

absl::Status DecodeJob(absl::string_view bytes, Job& job) {
  std::vector<absl::string_view> lines = absl::StrSplit(bytes, '\n');
  if (lines.size() != 6 || lines[0] != kJobMagic || !lines[5].empty() || lines[1].empty() ||
      lines[2].empty() || !absl::SimpleAtoi(lines[3], &job.window) ||
      !absl::SimpleAtoi(lines[4], &job.max_message_size) || job.window == 0) {
    return absl::DataLossError(absl::StrCat("nats_workers: a malformed job of ", bytes.size(),
                                            " bytes in the work queue"));
  }
  if (!IsWorkerSubject(lines[2]) || job.window < kMinimumWindow) {
    return absl::DataLossError(absl::StrCat("nats_workers: a job with an owner subject or window ",
                                            "no owner sends, in the work queue"));
  }
  job.entry = std::string(lines[1]);
  job.owner_subject = std::string(lines[2]);
  return absl::OkStatus();
}

bool IsWorkerSubject(absl::string_view subject) {
  constexpr absl::string_view kPrefix = "_INBOX.";
  if (subject.size() <= kPrefix.size() || subject.size() > 256 ||
      subject.substr(0, kPrefix.size()) != kPrefix) {
    return false;
  }
  bool token_empty = true;
  for (const char c : subject.substr(kPrefix.size())) {
    if (c == '.') {
      if (token_empty) return false;
      token_empty = true;
      continue;
    }
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '_' && c != '-') return false;
    token_empty = false;
  }
  return !token_empty;
}

std::string DeleteJobSubject() { return absl::StrCat("$JS.API.STREAM.MSG.DELETE.", kStream); }

std::string DeleteJobRequest(uint64_t sequence) {
  return absl::StrCat("{\"seq\":", sequence, ",\"no_erase\":true}");
}

std::string Header(Kind kind, uint32_t attempt) {
  std::string out(1, static_cast<char>(kind));
  AppendRaw(out, attempt);
  return out;
}

void AppendU64(std::string& out, uint64_t value) { AppendRaw(out, value); }
void AppendI32(std::string& out, int32_t value) { AppendRaw(out, static_cast<uint32_t>(value)); }

std::optional<Parsed> Parse(absl::string_view bytes) {
  Parsed parsed;
  if (bytes.empty()) return std::nullopt;
  parsed.kind = bytes[0];
  bytes.remove_prefix(1);
  if (!TakeRaw(bytes, parsed.attempt)) return std::nullopt;
  parsed.rest = bytes;
  return parsed;
}

bool TakeU64(absl::string_view& bytes, uint64_t& value) { return TakeRaw(bytes, value); }

bool TakeI32(absl::string_view& bytes, int32_t& value) {
  uint32_t raw = 0;
  if (!TakeRaw(bytes, raw)) return false;
  value = static_cast<int32_t>(raw);
  return true;
}

absl::string_view DataOf(natsMsg* message) {
  const char* data = natsMsg_GetData(message);
  const int size = natsMsg_GetDataLength(message);
  return data == nullptr || size <= 0 ? absl::string_view() : absl::string_view(data, size);
}

}  // namespace taskrt::nats_workers_wire
