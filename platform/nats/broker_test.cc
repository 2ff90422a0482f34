#include "platform/nats/broker.h"

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdlib>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/string_view.h"
#include "gtest/gtest.h"

namespace taskrt::nats_platform {
namespace {

// Connects a TCP socket to the broker's port; true if it accepted.
bool Accepts(const std::string& url) {
  const absl::string_view prefix = "nats://127.0.0.1:";
  if (!absl::StartsWith(url, prefix)) return false;
  int port = 0;
  if (!absl::SimpleAtoi(absl::string_view(url).substr(prefix.size()), &port)) return false;
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(static_cast<uint16_t>(port));
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  const bool connected = connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0;
  close(fd);
  return connected;
}

TEST(LocalBrokerTest, ListensOnLoopbackUntilStopped) {
  absl::StatusOr<std::unique_ptr<LocalBroker>> broker = LocalBroker::Start();
  if (absl::IsUnavailable(broker.status()) && !FindNatsServer().ok()) {
    GTEST_SKIP() << "no nats-server here: " << broker.status();
  }
  ASSERT_TRUE(broker.ok()) << broker.status();
  EXPECT_TRUE(Accepts((*broker)->url())) << (*broker)->url();
  EXPECT_GT((*broker)->pid(), 0);
  (*broker)->Stop();
  EXPECT_FALSE(Accepts((*broker)->url())) << "still listening after Stop(): " << (*broker)->url();
  (*broker)->Stop();  // idempotent
}

TEST(LocalBrokerTest, TwoBrokersGetTwoPorts) {
  absl::StatusOr<std::unique_ptr<LocalBroker>> first = LocalBroker::Start();
  if (!FindNatsServer().ok()) GTEST_SKIP() << "no nats-server here: " << first.status();
  absl::StatusOr<std::unique_ptr<LocalBroker>> second = LocalBroker::Start();
  ASSERT_TRUE(first.ok()) << first.status();
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_NE((*first)->url(), (*second)->url());
}

TEST(BrokerUrlTest, TheEnvironmentWins) {
  ASSERT_EQ(setenv(kBrokerUrlVariable, "nats://192.0.2.1:4222", 1), 0);
  absl::StatusOr<std::string> url = BrokerUrl();
  unsetenv(kBrokerUrlVariable);
  ASSERT_TRUE(url.ok()) << url.status();
  EXPECT_EQ(*url, "nats://192.0.2.1:4222");
}

TEST(BrokerUrlTest, OneSharedBrokerWhenUnset) {
  unsetenv(kBrokerUrlVariable);
  if (!FindNatsServer().ok()) GTEST_SKIP() << "no nats-server here: " << FindNatsServer().status();
  absl::StatusOr<std::string> first = BrokerUrl();
  absl::StatusOr<std::string> second = BrokerUrl();
  ASSERT_TRUE(first.ok()) << first.status();
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_EQ(*first, *second);
  EXPECT_TRUE(Accepts(*first));
}

TEST(FindNatsServerTest, MissingServerIsUnavailableWithTheReason) {
  // With no PATH, only the fixed directories are searched; a broker found
  // there is fine, a missing one must say what to install.
  const char* saved = std::getenv("PATH");
  const std::string path = saved == nullptr ? "" : saved;
  ASSERT_EQ(setenv("PATH", "/nonexistent", 1), 0);
  absl::StatusOr<std::string> found = FindNatsServer();
  setenv("PATH", path.c_str(), 1);
  if (found.ok()) {
    EXPECT_TRUE(absl::EndsWith(*found, "/nats-server")) << *found;
  } else {
    EXPECT_TRUE(absl::IsUnavailable(found.status()));
    EXPECT_TRUE(absl::StrContains(found.status().message(), "nats-server")) << found.status();
  }
}

}  // namespace
}  // namespace taskrt::nats_platform
