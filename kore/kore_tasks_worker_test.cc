// A C entry registered through the Kore facade, run as a worker process
// runs it: found by name in the core registry and run with RunEntryOn on a
// channel end, with no owner's struct kore_task in the process. Its facade
// calls on the struct it is given go to that end.

#include <atomic>
#include <cstdio>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/str_format.h"
#include "absl/strings/string_view.h"
#include "backends/registry.h"
#include "core/entry_registry.h"
#include "core/task.h"
#include "gtest/gtest.h"
#include "kore/kore_tasks.h"

namespace {

struct kore_task* seen_task = nullptr;

// Reads one message and answers "<message>:<attempt>:<cancelled>:<arg>".
int WorkerEntry(struct kore_task* t) {
  seen_task = t;
  char buffer[32];
  const u_int32_t length = kore_task_channel_read(t, buffer, sizeof(buffer));
  if (kore_task_last_error() != nullptr || length > sizeof(buffer)) return -1;
  const std::string reply =
      absl::StrFormat("%s:%d:%d:%s", absl::string_view(buffer, length), kore_task_attempt(t),
                      kore_task_cancel_requested(t), t->arg == nullptr ? "null" : "set");
  kore_task_channel_write(t, const_cast<char*>(reply.data()), static_cast<u_int32_t>(reply.size()));
  return kore_task_last_error() == nullptr ? 9 : -2;
}

TEST(KoreWorkerTest, ARegisteredCEntryRunsOnAnEndWithAStructOfItsOwn) {
  ASSERT_EQ(kore_task_register("kore.worker.entry", WorkerEntry), KORE_RESULT_OK)
      << kore_task_last_error();
  absl::StatusOr<taskrt::RegisteredEntry> entry = taskrt::FindEntry("kore.worker.entry");
  ASSERT_TRUE(entry.ok()) << entry.status();

  absl::StatusOr<std::unique_ptr<taskrt::ChannelFactory>> channels =
      taskrt::NewChannelFactoryNamed(taskrt::Defaults().channel);
  ASSERT_TRUE(channels.ok()) << channels.status();
  std::printf("worker-style run over %s\n", (*channels)->name().c_str());
  absl::StatusOr<taskrt::ChannelPair> pair = (*channels)->CreatePair(taskrt::ChannelOptions{});
  ASSERT_TRUE(pair.ok()) << pair.status();
  ASSERT_TRUE(taskrt::Send(*pair->owner_end, absl::string_view("job")).ok());

  std::atomic<bool> cancel{true};
  EXPECT_EQ(taskrt::RunEntryOn(*entry, *pair->task_end, 3, &cancel), 9);
  EXPECT_NE(seen_task, nullptr);

  char buffer[64];
  absl::StatusOr<size_t> got = taskrt::Receive(*pair->owner_end, absl::MakeSpan(buffer));
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(absl::string_view(buffer, *got), "job:3:1:null");

  // Outside its run the struct is nobody's task: the facade refuses it.
  kore_task_channel_write(seen_task, const_cast<char*>("x"), 1);
  EXPECT_NE(kore_task_last_error(), nullptr);
}

}  // namespace
