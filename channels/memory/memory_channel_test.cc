// The memory backend's own face: its name and the label of its errors. Its
// data path is tested in channels/spsc_rings/, the channel contract in
// tests/conformance/.

#include "channels/memory/memory_channel.h"

#include <memory>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "core/channel.h"
#include "gtest/gtest.h"

namespace taskrt {
namespace {

TEST(MemoryChannel, IsNamedMemoryAndItsErrorsSaySo) {
  absl::StatusOr<std::unique_ptr<ChannelFactory>> factory = NewMemoryChannelFactory();
  ASSERT_TRUE(factory.ok()) << factory.status();
  EXPECT_EQ((*factory)->name(), "memory");
  ChannelOptions too_small;
  too_small.buffer_bytes = 16;
  const absl::Status refused = (*factory)->CreatePair(too_small).status();
  EXPECT_EQ(refused.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(refused.message().rfind("memory channel: buffer_bytes 16 ", 0), 0u) << refused;
}

}  // namespace
}  // namespace taskrt
