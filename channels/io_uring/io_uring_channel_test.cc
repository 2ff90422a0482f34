// What the io_uring channel's header promises beyond the channel contract
// (tested in tests/conformance/): a pair owns no ring and no descriptor
// until readiness is asked for, and the channel works where the kernel
// refuses io_uring. Its data path is tested in channels/spsc_rings/.

#include "channels/io_uring/io_uring_channel.h"

#include <dirent.h>

#include <cerrno>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "core/channel.h"
#include "gtest/gtest.h"
#include "platform/io_uring/refuse_for_test.h"

namespace taskrt {
namespace {

// The number of descriptors this process holds (entries of /proc/self/fd,
// less the one the listing itself opens); -1 if it cannot be listed.
int OpenDescriptors() {
  DIR* dir = opendir("/proc/self/fd");
  if (dir == nullptr) return -1;
  int count = 0;
  while (const dirent* entry = readdir(dir)) {
    if (entry->d_name[0] != '.') ++count;
  }
  closedir(dir);
  return count - 1;
}

// One message each way through `pair`, without blocking (a pair's rings
// hold both messages).
absl::Status ExchangeOnce(ChannelPair& pair, const std::string& message) {
  for (auto [from, to] : {std::pair{pair.task_end.get(), pair.owner_end.get()},
                          std::pair{pair.owner_end.get(), pair.task_end.get()}}) {
    if (absl::Status sent = from->TrySend(absl::MakeConstSpan(message)); !sent.ok()) return sent;
    std::string buffer(message.size() + 1, '\0');
    absl::StatusOr<size_t> got = to->TryReceive(absl::MakeSpan(buffer));
    if (!got.ok()) return got.status();
    buffer.resize(*got);
    if (buffer != message) return absl::DataLossError(absl::StrCat("got \"", buffer, "\""));
  }
  return absl::OkStatus();
}

TEST(IoUringChannel, IsNamedIoUringAndItsErrorsSaySo) {
  absl::StatusOr<std::unique_ptr<ChannelFactory>> factory = NewIoUringChannelFactory();
  ASSERT_TRUE(factory.ok()) << factory.status();
  EXPECT_EQ((*factory)->name(), "io_uring");
  EXPECT_FALSE(IoUringChannelDescriptor().needs_io_uring);
  ChannelOptions too_big;
  too_big.max_message_size = size_t{1} << 33;
  const absl::Status refused = (*factory)->CreatePair(too_big).status();
  EXPECT_EQ(refused.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(refused.message().rfind("io_uring channel: max_message_size ", 0), 0u) << refused;
}

TEST(IoUringChannel, PairsOwnNoDescriptorUntilReadinessIsAskedFor) {
  absl::StatusOr<std::unique_ptr<ChannelFactory>> factory = NewIoUringChannelFactory();
  ASSERT_TRUE(factory.ok()) << factory.status();
  const int before = OpenDescriptors();
  ASSERT_GE(before, 0) << "cannot list /proc/self/fd";
  constexpr int kPairs = 1000;  // the fan-in benchmark's shape: many pairs alive at once
  std::vector<ChannelPair> pairs;
  pairs.reserve(kPairs);
  for (int i = 0; i < kPairs; ++i) {
    absl::StatusOr<ChannelPair> pair = (*factory)->CreatePair(ChannelOptions{});
    ASSERT_TRUE(pair.ok()) << "pair " << i << ": " << pair.status();
    pairs.push_back(*std::move(pair));
    ASSERT_TRUE(ExchangeOnce(pairs.back(), absl::StrCat("pair ", i)).ok()) << i;
  }
  EXPECT_EQ(OpenDescriptors(), before) << "descriptors opened by " << kPairs << " pairs";
  // An event loop's watch is what makes one: an eventfd for that direction.
  const int fd = pairs.front().owner_end->receive_readiness().fd;
  EXPECT_GE(fd, 0);
  EXPECT_EQ(OpenDescriptors(), before + 1);
  pairs.clear();
  EXPECT_EQ(OpenDescriptors(), before) << "the eventfd outlived its pair";
}

TEST(IoUringChannel, WorksWhereTheKernelRefusesIoUring) {
  absl::StatusOr<absl::Status> ran =
      io_uring_platform::RunWithIoUringSetupRefused(EPERM, []() -> absl::Status {
        absl::StatusOr<std::unique_ptr<ChannelFactory>> factory = NewIoUringChannelFactory();
        if (!factory.ok()) return factory.status();
        absl::StatusOr<ChannelPair> pair = (*factory)->CreatePair(ChannelOptions{});
        if (!pair.ok()) return pair.status();
        return ExchangeOnce(*pair, "with io_uring refused");
      });
  if (!ran.ok()) GTEST_SKIP() << "cannot refuse io_uring on a thread here: " << ran.status();
  EXPECT_TRUE(ran->ok()) << *ran;
}

}  // namespace
}  // namespace taskrt
