#ifndef TASKRT_TESTS_CONFORMANCE_TASK_FIXTURE_H_
#define TASKRT_TESTS_CONFORMANCE_TASK_FIXTURE_H_

// What the task groups share (task_tests.cc with closures,
// named_task_tests.cc with entries by name): the task environment of the
// combination, reading what has arrived, and a request that counts its
// resumes.

#include <algorithm>
#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "core/errors.h"
#include "core/task.h"
#include "gtest/gtest.h"
#include "tests/conformance/conformance.h"

namespace taskrt::conformance {

inline absl::Span<const char> Bytes(absl::string_view s) {
  return absl::MakeConstSpan(s.data(), s.size());
}

class TaskFixture : public ConformanceTest {
 protected:
  TaskEnvironment Env(size_t max_message_size = size_t{1} << 20) {
    TaskEnvironment env;
    env.scheduler = scheduler_.get();
    env.channels = channels_.get();
    env.loop = loop_.get();
    env.channel_options.max_message_size = max_message_size;
    return env;
  }

  // Reads every message that has arrived, without blocking.
  static void Drain(Task& task, std::vector<std::string>* out) {
    char buffer[256];
    while (true) {
      absl::StatusOr<size_t> n = task.TryRead(absl::MakeSpan(buffer));
      if (!n.ok()) {
        EXPECT_TRUE(IsWouldBlock(n.status()) || absl::IsOutOfRange(n.status())) << n.status();
        return;
      }
      out->emplace_back(buffer, std::min(*n, sizeof buffer));
    }
  }
};

// A bound request that reads everything at each resume and counts the
// resumes that found the task finished.
class CountingRequest : public Resumable {
 public:
  explicit CountingRequest(Task** task) : task_(task) {}
  void Resume() override {
    ++resumes;
    char buffer[64];
    while (true) {
      absl::StatusOr<size_t> n = (*task_)->TryRead(absl::MakeSpan(buffer));
      if (!n.ok()) break;
      messages.emplace_back(buffer, std::min(*n, sizeof buffer));
    }
    if ((*task_)->finished()) ++finished_resumes;
  }
  int resumes = 0;
  int finished_resumes = 0;
  std::vector<std::string> messages;

 private:
  Task** task_;
};

// Kore's pipe_task pattern, the owner's side: a binding that reads one line
// per call while the entry writes "line 0" .. "line <kLines - 1>", far more
// than the channel holds, and then waits for "all read". The binding is
// called again while lines are unread, so the writer never waits for ever;
// the entry finishes only after "all read", so the one-per-call reads alone
// must get every line.
class OneLinePerCall : public Resumable {
 public:
  static constexpr int kLines = 20000;
  explicit OneLinePerCall(Task** task) : task_(task) {}
  void Resume() override { ReadOne(**task_); }
  void ReadOne(Task& task) {
    ++calls;
    if (task.finished()) {
      ++finished_calls;
      return;
    }
    char buffer[32];
    absl::StatusOr<size_t> n = task.TryRead(absl::MakeSpan(buffer));
    if (!n.ok()) return;  // a call may find nothing
    if (std::string(buffer, std::min(*n, sizeof buffer)) != absl::StrCat("line ", read)) {
      ++out_of_order;
    }
    if (++read == kLines) {
      EXPECT_TRUE(task.Write(Bytes("all read")).ok());
    }
  }
  std::string Progress() const {
    return absl::StrCat(read, " of ", kLines, " read in ", calls, " calls");
  }
  int calls = 0;
  int finished_calls = 0;
  int read = 0;
  int out_of_order = 0;

 private:
  Task** task_;
};

}  // namespace taskrt::conformance

#endif  // TASKRT_TESTS_CONFORMANCE_TASK_FIXTURE_H_
