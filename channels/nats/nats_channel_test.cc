// What the conformance suite cannot ask of every backend: a broker that is
// not there or goes away, messages over NATS's maximum payload, flow
// control, and a hostile client publishing on a channel's subject.

#include "channels/nats/nats_channel.h"

#include <nats/nats.h>

#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "core/channel.h"
#include "gtest/gtest.h"
#include "platform/nats/broker.h"

namespace taskrt {
namespace {

using nats_platform::LocalBroker;

// A broker of the test's own, so that it can stop it.
class NatsChannelTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (absl::Status found = nats_platform::FindNatsServer().status(); !found.ok()) {
      GTEST_SKIP() << "no broker to test against: " << found;
    }
    absl::StatusOr<std::unique_ptr<LocalBroker>> broker = LocalBroker::Start();
    ASSERT_TRUE(broker.ok()) << broker.status();
    broker_ = *std::move(broker);
    absl::StatusOr<std::unique_ptr<ChannelFactory>> factory =
        NewNatsChannelFactory({.url = broker_->url()});
    ASSERT_TRUE(factory.ok()) << factory.status();
    factory_ = *std::move(factory);
  }

  ChannelPair NewPair(ChannelOptions options = {}) {
    absl::StatusOr<ChannelPair> pair = factory_->CreatePair(options);
    EXPECT_TRUE(pair.ok()) << pair.status();
    return pair.ok() ? *std::move(pair) : ChannelPair{};
  }

  std::unique_ptr<LocalBroker> broker_;
  std::unique_ptr<ChannelFactory> factory_;
};

TEST(NatsChannelFactoryTest, UnreachableBrokerIsUnavailable) {
  // Port 1 of the loopback address: nothing listens there.
  absl::StatusOr<std::unique_ptr<ChannelFactory>> factory =
      NewNatsChannelFactory({.url = "nats://127.0.0.1:1"});
  ASSERT_FALSE(factory.ok());
  EXPECT_TRUE(absl::IsUnavailable(factory.status())) << factory.status();
  EXPECT_TRUE(absl::StrContains(factory.status().message(), "nats://127.0.0.1:1"))
      << factory.status();
}

TEST(NatsChannelFactoryTest, MalformedUrlIsAnErrorNotACrash) {
  absl::StatusOr<std::unique_ptr<ChannelFactory>> factory =
      NewNatsChannelFactory({.url = "no scheme, no port"});
  EXPECT_FALSE(factory.ok());
}

TEST_F(NatsChannelTest, MessagesOverTheBrokersMaximumPayloadPassInPieces) {
  // nats-server refuses payloads over 1 MiB by default.
  const size_t size = size_t{3} << 20;
  ChannelPair pair = NewPair({.max_message_size = size});
  ASSERT_NE(pair.task_end, nullptr);
  std::string big(size, '\0');
  for (size_t i = 0; i < size; ++i) big[i] = static_cast<char>(i * 131 + i / 4093);
  std::thread sender([&] {
    EXPECT_TRUE(Send(*pair.task_end, big).ok());
    EXPECT_TRUE(Send(*pair.task_end, absl::string_view("after")).ok());
  });
  std::string got(size, '\0');
  absl::StatusOr<size_t> n = Receive(*pair.owner_end, absl::MakeSpan(got));
  ASSERT_TRUE(n.ok()) << n.status();
  EXPECT_EQ(*n, size);
  EXPECT_TRUE(got == big) << "the reassembled message differs";
  char small[16];
  n = Receive(*pair.owner_end, absl::MakeSpan(small));
  ASSERT_TRUE(n.ok()) << n.status();
  EXPECT_EQ(absl::string_view(small, *n), "after");
  sender.join();
}

TEST_F(NatsChannelTest, ASenderStopsAtItsWindowAndLosesNothing) {
  ChannelPair pair = NewPair({.buffer_bytes = 4096});
  ASSERT_NE(pair.task_end, nullptr);
  // Nobody receives: the sender must run out of credit instead of handing
  // the broker more than the window.
  int accepted = 0;
  absl::Status status;
  for (; accepted < 10000; ++accepted) {
    const std::string message = absl::StrCat("message ", accepted, std::string(100, '.'));
    status = pair.task_end->TrySend(message);
    if (!status.ok()) break;
  }
  ASSERT_TRUE(IsWouldBlock(status)) << status;
  EXPECT_LT(accepted, 100) << "a 4 KiB window let " << accepted << " messages of 110 bytes through";
  EXPECT_GT(pair.task_end->metrics().sends_blocked, 0u);
  for (int i = 0; i < accepted; ++i) {
    char buffer[256];
    absl::StatusOr<size_t> n = Receive(*pair.owner_end, absl::MakeSpan(buffer));
    ASSERT_TRUE(n.ok()) << n.status();
    EXPECT_EQ(absl::string_view(buffer, *n),
              absl::StrCat("message ", i, std::string(100, '.')));
    // Receiving hands credit back: the held message gets out.
    (void)pair.task_end->TryFlush();
  }
  EXPECT_TRUE(Send(*pair.task_end, absl::string_view("last")).ok());
  char buffer[16];
  absl::StatusOr<size_t> n = Receive(*pair.owner_end, absl::MakeSpan(buffer));
  ASSERT_TRUE(n.ok()) << n.status();
  EXPECT_EQ(absl::string_view(buffer, *n), "last");
}

TEST_F(NatsChannelTest, ABrokerThatGoesAwayFailsTheChannelClearly) {
  ChannelPair pair = NewPair();
  ASSERT_NE(pair.task_end, nullptr);
  ASSERT_TRUE(Send(*pair.task_end, absl::string_view("before")).ok());
  char buffer[16];
  absl::StatusOr<size_t> n = Receive(*pair.owner_end, absl::MakeSpan(buffer));
  ASSERT_TRUE(n.ok()) << n.status();
  broker_->Stop();
  // The blocked receive is woken by the loss, not left waiting for ever.
  n = Receive(*pair.owner_end, absl::MakeSpan(buffer));
  ASSERT_FALSE(n.ok());
  EXPECT_TRUE(absl::IsUnavailable(n.status())) << n.status();
  EXPECT_FALSE(IsWouldBlock(n.status()));
  EXPECT_TRUE(absl::StrContains(n.status().message(), "broker")) << n.status();
  absl::Status sent = Send(*pair.task_end, absl::string_view("after"));
  EXPECT_TRUE(absl::IsUnavailable(sent) && !IsWouldBlock(sent)) << sent;
  absl::StatusOr<ChannelPair> another = factory_->CreatePair({});
  EXPECT_FALSE(another.ok());
  // A task's owner waits for nothing more: no close can come now.
  EXPECT_FALSE(pair.owner_end->MessagesMayBeInFlight());
  EXPECT_FALSE(pair.owner_end->ReceiveReady());
}

// A client of the broker that is not a channel end: it learns a channel's
// subjects by listening to every inbox, then publishes on one.
class HostileClient {
 public:
  explicit HostileClient(const std::string& url) {
    EXPECT_EQ(natsConnection_ConnectTo(&connection_, url.c_str()), NATS_OK);
    EXPECT_EQ(natsConnection_SubscribeSync(&spy_, connection_, "_INBOX.>"), NATS_OK);
    EXPECT_EQ(natsConnection_Flush(connection_), NATS_OK);
  }
  ~HostileClient() {
    natsSubscription_Destroy(spy_);
    natsConnection_Destroy(connection_);
  }

  // The subject of the next message the spy sees.
  std::string NextSubject() {
    natsMsg* message = nullptr;
    EXPECT_EQ(natsSubscription_NextMsg(&message, spy_, 30000), NATS_OK);
    if (message == nullptr) return "";
    std::string subject = natsMsg_GetSubject(message);
    natsMsg_Destroy(message);
    return subject;
  }

  // The subject of `pair`'s owner end, learnt from a first message sent
  // through the pair (and received, so that the pair is empty again);
  // empty on failure.
  std::string LearnOwnerSubject(ChannelPair& pair) {
    EXPECT_TRUE(Send(*pair.task_end, absl::string_view("first")).ok());
    std::string subject = NextSubject();
    char buffer[16];
    absl::StatusOr<size_t> n = Receive(*pair.owner_end, absl::MakeSpan(buffer));
    EXPECT_TRUE(n.ok() && absl::string_view(buffer, *n) == "first") << n.status();
    return subject;
  }

  void Publish(const std::string& subject, const char* reply, absl::string_view data) {
    const int size = static_cast<int>(data.size());
    EXPECT_EQ(reply == nullptr
                  ? natsConnection_Publish(connection_, subject.c_str(), data.data(), size)
                  : natsConnection_PublishRequest(connection_, subject.c_str(), reply, data.data(),
                                                  size),
              NATS_OK);
    EXPECT_EQ(natsConnection_Flush(connection_), NATS_OK);
  }

 private:
  natsConnection* connection_ = nullptr;
  natsSubscription* spy_ = nullptr;
};

TEST_F(NatsChannelTest, GarbageOnAChannelsSubjectIsDataLossAndTheStreamGoesOn) {
  ChannelPair pair = NewPair({.max_message_size = 64});
  ASSERT_NE(pair.task_end, nullptr);
  HostileClient hostile(broker_->url());
  const std::string owner_subject = hostile.LearnOwnerSubject(pair);
  ASSERT_FALSE(owner_subject.empty());
  char buffer[64];
  absl::StatusOr<size_t> n;

  // A kind no end sends, credit of the wrong size, and a message over the
  // pair's maximum: each is kDataLoss where it falls in the order.
  hostile.Publish(owner_subject, "q", "unknown kind");
  hostile.Publish(owner_subject, "c", "12345");
  hostile.Publish(owner_subject, nullptr, std::string(65, 'x'));
  ASSERT_TRUE(Send(*pair.task_end, absl::string_view("second")).ok());
  for (int bad = 0; bad < 3; ++bad) {
    n = Receive(*pair.owner_end, absl::MakeSpan(buffer));
    ASSERT_FALSE(n.ok()) << "garbage " << bad << " was taken for a message";
    EXPECT_TRUE(absl::IsDataLoss(n.status())) << n.status();
  }
  n = Receive(*pair.owner_end, absl::MakeSpan(buffer));
  ASSERT_TRUE(n.ok()) << n.status();
  EXPECT_EQ(absl::string_view(buffer, *n), "second");
}

TEST_F(NatsChannelTest, EveryPairHasSubjectsOfItsOwn) {
  HostileClient spy(broker_->url());
  ChannelPair first = NewPair();
  ChannelPair second = NewPair();
  ASSERT_NE(first.task_end, nullptr);
  ASSERT_NE(second.task_end, nullptr);
  ASSERT_TRUE(Send(*first.task_end, absl::string_view("1")).ok());
  const std::string first_subject = spy.NextSubject();
  ASSERT_TRUE(Send(*second.task_end, absl::string_view("2")).ok());
  const std::string second_subject = spy.NextSubject();
  EXPECT_NE(first_subject, second_subject);
  char buffer[4];
  absl::StatusOr<size_t> n = Receive(*second.owner_end, absl::MakeSpan(buffer));
  ASSERT_TRUE(n.ok()) << n.status();
  EXPECT_EQ(absl::string_view(buffer, *n), "2");
}


// Enough pairs that closed ends' subscriptions are destroyed in batches
// while the connection lives, each pair used once.
TEST_F(NatsChannelTest, ManyPairsComeAndGoOnOneConnection) {
  for (int i = 0; i < 700; ++i) {
    ChannelPair pair = NewPair();
    ASSERT_NE(pair.task_end, nullptr);
    const std::string message = absl::StrCat("pair ", i);
    ASSERT_TRUE(Send(*pair.task_end, absl::MakeConstSpan(message)).ok());
    char buffer[32];
    absl::StatusOr<size_t> n = Receive(*pair.owner_end, absl::MakeSpan(buffer));
    ASSERT_TRUE(n.ok()) << n.status();
    ASSERT_EQ(absl::string_view(buffer, *n), message);
    pair.task_end.reset();
    n = Receive(*pair.owner_end, absl::MakeSpan(buffer));
    ASSERT_EQ(n.status().code(), absl::StatusCode::kOutOfRange) << n.status();
  }
}


// What a third party on the broker can send that the peer never would.
TEST_F(NatsChannelTest, AHostileClientCannotCorruptTheStream) {
  ChannelPair pair = NewPair({.max_message_size = 64});
  ASSERT_NE(pair.task_end, nullptr);
  HostileClient hostile(broker_->url());
  const std::string owner_subject = hostile.LearnOwnerSubject(pair);
  ASSERT_TRUE(absl::EndsWith(owner_subject, ".b")) << owner_subject;
  const std::string task_subject = owner_subject.substr(0, owner_subject.size() - 1) + "a";
  char buffer[64];
  absl::StatusOr<size_t> n;

  // A message over the maximum in pieces: one kDataLoss, and its tail is
  // not taken for a message of its own.
  hostile.Publish(owner_subject, "m", std::string(40, 'm'));
  hostile.Publish(owner_subject, "m", std::string(40, 'm'));
  hostile.Publish(owner_subject, nullptr, "tail");
  ASSERT_TRUE(Send(*pair.task_end, absl::string_view("second")).ok());
  n = Receive(*pair.owner_end, absl::MakeSpan(buffer));
  ASSERT_FALSE(n.ok());
  EXPECT_TRUE(absl::IsDataLoss(n.status())) << n.status();
  n = Receive(*pair.owner_end, absl::MakeSpan(buffer));
  ASSERT_TRUE(n.ok()) << n.status();
  EXPECT_EQ(absl::string_view(buffer, *n), "second");

  // Credit the sender never had outstanding: kDataLoss at its next send,
  // not a window without bounds (nor a wrapped one).
  const std::string huge_credit(8, '\xff');
  hostile.Publish(task_subject, "c", huge_credit);
  absl::Status sent;
  for (int i = 0; i < 1000 && sent.ok(); ++i) {
    // The credit arrives on the library's thread; a send after it fails.
    sent = pair.task_end->TrySend(absl::MakeConstSpan("x", 1));
    if (sent.ok()) (void)Receive(*pair.owner_end, absl::MakeSpan(buffer));
    if (sent.ok()) hostile.Publish(task_subject, "c", huge_credit);
  }
  EXPECT_TRUE(absl::IsDataLoss(sent)) << sent;
}

TEST_F(NatsChannelTest, ACloseInTheMiddleOfAMessageIsDataLossThenTheEnd) {
  ChannelPair pair = NewPair({.max_message_size = 64});
  ASSERT_NE(pair.task_end, nullptr);
  HostileClient hostile(broker_->url());
  const std::string owner_subject = hostile.LearnOwnerSubject(pair);
  ASSERT_FALSE(owner_subject.empty());
  char buffer[64];
  hostile.Publish(owner_subject, "m", "half a message");
  hostile.Publish(owner_subject, "x", "");
  absl::StatusOr<size_t> n = Receive(*pair.owner_end, absl::MakeSpan(buffer));
  EXPECT_TRUE(absl::IsDataLoss(n.status())) << n.status();
  n = Receive(*pair.owner_end, absl::MakeSpan(buffer));
  EXPECT_EQ(n.status().code(), absl::StatusCode::kOutOfRange) << n.status();
}

}  // namespace
}  // namespace taskrt
