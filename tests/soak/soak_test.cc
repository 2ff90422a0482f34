// Soak: every scheduler x channel pair carries many messages, each with a
// writer id, a sequence number and a checksum, and the owner checks that
// every message arrives exactly once, in order and intact. The run is split
// into rounds of fresh channel pairs; resident memory must stay flat across
// them (round 10 within 5% of round 2, plus 0.5 MiB).
//
// 10^6 messages per pair by default; TASKRT_SOAK_MESSAGES sets another count
// (10^7 on demand). The sanitizer builds run 10^5, since they are 10-50x
// slower, and skip the memory check, since their allocators grow by design
// (asan's quarantine, tsan's shadow); both print why.

#include <poll.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <latch>
#include <memory>
#include <string>
#include <tuple>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "backends/registry.h"
#include "core/channel.h"
#include "core/errors.h"
#include "core/scheduler.h"
#include "gtest/gtest.h"

namespace taskrt {
namespace {

#if defined(TASKRT_TSAN) || defined(TASKRT_ASAN)
constexpr bool kSanitized = true;
constexpr uint64_t kDefaultMessages = 100'000;
#else
constexpr bool kSanitized = false;
constexpr uint64_t kDefaultMessages = 1'000'000;
#endif
constexpr int kRounds = 10;
constexpr int kWriters = 8;
constexpr size_t kMaxPayload = 48;
constexpr absl::Duration kHangGuard = absl::Seconds(240);

uint64_t MessagesPerPair() {
  const char* env = std::getenv("TASKRT_SOAK_MESSAGES");
  return env != nullptr ? std::strtoull(env, nullptr, 10) : kDefaultMessages;
}

struct Header {
  uint32_t writer;
  uint32_t length;
  uint64_t seq;
  uint64_t checksum;
};

char PayloadByte(uint32_t writer, uint64_t seq, size_t i) {
  return static_cast<char>(writer * 31 + seq * 17 + i * 7);
}

uint64_t Checksum(const Header& header, const char* payload) {
  uint64_t hash = 1469598103934665603ull;  // FNV-1a
  auto mix = [&hash](uint64_t value) {
    for (int i = 0; i < 8; ++i) {
      hash = (hash ^ ((value >> (8 * i)) & 0xff)) * 1099511628211ull;
    }
  };
  mix(header.writer);
  mix(header.length);
  mix(header.seq);
  for (uint32_t i = 0; i < header.length; ++i) mix(static_cast<unsigned char>(payload[i]));
  return hash;
}

std::string Message(uint32_t writer, uint64_t seq) {
  Header header{writer, static_cast<uint32_t>(seq % (kMaxPayload + 1)), seq, 0};
  std::string message(sizeof header + header.length, '\0');
  for (uint32_t i = 0; i < header.length; ++i) {
    message[sizeof header + i] = PayloadByte(writer, seq, i);
  }
  header.checksum = Checksum(header, message.data() + sizeof header);
  std::memcpy(message.data(), &header, sizeof header);
  return message;
}

double ResidentMiB() {
  std::ifstream statm("/proc/self/statm");
  long pages = 0;
  long resident = 0;
  statm >> pages >> resident;
  return static_cast<double>(resident) * static_cast<double>(sysconf(_SC_PAGESIZE)) / (1 << 20);
}

// Every scheduler (with 2 workers) against every channel, by name from
// backends/registry.h.
class Soak : public ::testing::TestWithParam<std::tuple<std::string, std::string>> {
 protected:
  const std::string& scheduler_name() const { return std::get<0>(GetParam()); }
  const std::string& channel_name() const { return std::get<1>(GetParam()); }
};

// Receives every message of every writer of one round from the owner's
// thread, round-robin, waiting in poll() on the ends' readiness when none
// has a message. Returns the messages received.
uint64_t ReceiveRound(std::vector<ChannelPair>& pairs, uint64_t per_writer) {
  std::vector<uint64_t> next_seq(pairs.size(), 0);
  std::vector<bool> ended(pairs.size(), false);
  size_t open = pairs.size();
  uint64_t received = 0;
  std::string buffer(sizeof(Header) + kMaxPayload + 16, '\0');
  const absl::Time deadline = absl::Now() + kHangGuard;
  while (open > 0) {
    bool progressed = false;
    for (size_t w = 0; w < pairs.size(); ++w) {
      if (ended[w]) continue;
      // Drain this end while it has messages.
      while (true) {
        absl::StatusOr<size_t> got = pairs[w].owner_end->TryReceive(absl::MakeSpan(buffer));
        if (!got.ok()) {
          if (IsWouldBlock(got.status())) break;
          EXPECT_EQ(got.status().code(), absl::StatusCode::kOutOfRange) << got.status();
          EXPECT_EQ(next_seq[w], per_writer) << "writer " << w << ": messages lost";
          ended[w] = true;
          --open;
          progressed = true;
          break;
        }
        progressed = true;
        Header header;
        EXPECT_GE(*got, sizeof header) << "a message shorter than its header";
        if (*got < sizeof header) return received;
        std::memcpy(&header, buffer.data(), sizeof header);
        const char* payload = buffer.data() + sizeof header;
        if (header.writer != w || header.seq != next_seq[w] ||
            *got != sizeof header + header.length ||
            header.checksum != Checksum(header, payload)) {
          ADD_FAILURE() << "writer " << w << ": expected seq " << next_seq[w] << ", got writer "
                        << header.writer << " seq " << header.seq << " of " << *got
                        << " bytes (lost, duplicated, reordered or corrupted)";
          return received;
        }
        ++next_seq[w];
        ++received;
      }
    }
    if (progressed) continue;
    if (absl::Now() > deadline) {
      ADD_FAILURE() << "hang guard: " << open << " writers still open";
      return received;
    }
    std::vector<pollfd> fds;
    for (size_t w = 0; w < pairs.size(); ++w) {
      if (ended[w]) continue;
      const Readiness readiness = pairs[w].owner_end->receive_readiness();
      fds.push_back({readiness.fd, readiness.events, 0});
    }
    // The timeout only bounds a wait for an edge that never came: a missed
    // wake-up shows up as a slow run, and the counts above still hold.
    poll(fds.data(), fds.size(), 100);
  }
  return received;
}

TEST_P(Soak, EveryMessageArrivesOnceInOrderAndMemoryStaysFlat) {
  absl::StatusOr<std::unique_ptr<ChannelFactory>> channels = NewChannelFactoryNamed(channel_name());
  if (!channels.ok() && channels.status().code() == absl::StatusCode::kUnavailable) {
    GTEST_SKIP() << channel_name() << " is unavailable here: " << channels.status();
  }
  ASSERT_TRUE(channels.ok()) << channels.status();
  absl::StatusOr<std::unique_ptr<Scheduler>> scheduler = NewSchedulerNamed(scheduler_name(), 2);
  ASSERT_TRUE(scheduler.ok()) << scheduler.status();

  const uint64_t total = MessagesPerPair();
  const uint64_t per_writer = total / kRounds / kWriters;
  ASSERT_GT(per_writer, 0u) << "TASKRT_SOAK_MESSAGES must be at least " << kRounds * kWriters;
  if (kSanitized && std::getenv("TASKRT_SOAK_MESSAGES") == nullptr) {
    std::printf("soak: %llu messages per pair, not 10^6: a sanitizer build is 10-50x slower\n",
                static_cast<unsigned long long>(total));
  }
  std::vector<double> rss;
  uint64_t received_total = 0;
  const absl::Time start = absl::Now();
  for (int round = 1; round <= kRounds; ++round) {
    std::vector<ChannelPair> pairs;
    for (int w = 0; w < kWriters; ++w) {
      absl::StatusOr<ChannelPair> pair = (*channels)->CreatePair(ChannelOptions());
      ASSERT_TRUE(pair.ok()) << pair.status();
      pairs.push_back(*std::move(pair));
    }
    std::latch writers_done(kWriters);
    for (int w = 0; w < kWriters; ++w) {
      ChannelEnd* end = pairs[w].task_end.get();
      ASSERT_TRUE((*scheduler)->Schedule([end, w, per_writer, &writers_done] {
        for (uint64_t seq = 0; seq < per_writer; ++seq) {
          const std::string message = Message(static_cast<uint32_t>(w), seq);
          absl::Status sent = Send(*end, absl::MakeConstSpan(message));
          if (!sent.ok()) {
            ADD_FAILURE() << "writer " << w << " seq " << seq << ": " << sent;
            break;
          }
        }
        end->Close();
        writers_done.count_down();
      }).ok());
    }
    received_total += ReceiveRound(pairs, per_writer);
    // A writer may still be inside Close() when its end of stream arrives;
    // the pairs go only after every writer is done. Closing the owner ends
    // first releases writers a failed round left blocked.
    for (ChannelPair& pair : pairs) pair.owner_end->Close();
    writers_done.wait();
    if (HasFailure()) break;
    rss.push_back(ResidentMiB());
    std::printf("soak %s x %s: round %d/%d, %llu messages, rss %.1f MiB\n",
                scheduler_name().c_str(), channel_name().c_str(), round, kRounds,
                static_cast<unsigned long long>(received_total), rss.back());
    std::fflush(stdout);
  }
  ASSERT_TRUE((*scheduler)->Shutdown().ok());
  EXPECT_EQ(received_total, per_writer * kWriters * kRounds) << "lost = "
                                                             << per_writer * kWriters * kRounds -
                                                                    received_total;
  std::printf("soak %s x %s: %llu messages in %.2f s, lost 0, duplicated 0, reordered 0\n",
              scheduler_name().c_str(), channel_name().c_str(),
              static_cast<unsigned long long>(received_total),
              absl::ToDoubleSeconds(absl::Now() - start));
  if (kSanitized) {
    std::printf("soak: memory check skipped: sanitizer allocators grow by design\n");
  } else if (rss.size() == kRounds) {
    // 5%, plus half a MiB: these heaps are a few MiB, where one more
    // allocator arena page is already a few percent.
    EXPECT_LE(rss[kRounds - 1], rss[1] * 1.05 + 0.5)
        << "resident memory grew from " << rss[1] << " MiB (round 2) to " << rss[kRounds - 1]
        << " MiB (round " << kRounds << ")";
  }
}

std::string PairName(const ::testing::TestParamInfo<Soak::ParamType>& info) {
  return absl::StrCat(std::get<0>(info.param), "_", std::get<1>(info.param));
}

INSTANTIATE_TEST_SUITE_P(AllPairs, Soak,
                         ::testing::Combine(::testing::ValuesIn(SchedulerNames()),
                                            ::testing::ValuesIn(ChannelNames())),
                         PairName);

}  // namespace
}  // namespace taskrt
