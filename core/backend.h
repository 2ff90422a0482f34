#ifndef TASKRT_CORE_BACKEND_H_
#define TASKRT_CORE_BACKEND_H_

// What a backend is, to the code that chooses one: a descriptor with its
// name, a one-line summary, its capabilities and its factory. Each backend
// defines its descriptor in its own folder; backends/registry.cc lists them,
// and everything that picks a backend (flags, the Kore facade, tests,
// benchmarks, fuzzers) reads that list, never a name of its own.
//
// Factories
//   One shape for every kind: absl::StatusOr<std::unique_ptr<Interface>>
//   from BackendOptions. A configuration the backend cannot honour is
//   kInvalidArgument; a kernel that refuses the backend here (io_uring under
//   seccomp) is kUnavailable, with the reason.

#include <memory>


#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "core/channel.h"
#include "core/event_loop.h"
#include "core/scheduler.h"

namespace taskrt {

struct BackendOptions {
  // Worker threads, for schedulers that honour a count
  // (SchedulerCapabilities::honours_worker_count); others ignore it.
  int workers = 1;
};

// For kinds whose backends differ in nothing a caller must choose by.
struct NoCapabilities {
  friend bool operator==(const NoCapabilities&, const NoCapabilities&) = default;
};

template <typename Interface, typename Capabilities = NoCapabilities>
struct BackendDescriptor {
  using Factory = absl::StatusOr<std::unique_ptr<Interface>> (*)(const BackendOptions&);

  absl::string_view name;     // the flag value: --scheduler=<name> and so on
  absl::string_view summary;  // one line, for usage texts
  // The kernel must allow io_uring: where it does not, the factory returns
  // kUnavailable and tests skip with its reason.
  bool needs_io_uring = false;
  // What every instance the factory makes reports (for schedulers, as
  // Scheduler::capabilities()).
  Capabilities capabilities;
  Factory create = nullptr;
};

struct ChannelCapabilities {
  // The send readiness fd is the stream socket that carries the channel's
  // wire format (core/channel.h's length prefix), so bytes written to it
  // reach the peer as if sent: for tests that forge a peer's bytes.
  bool readiness_fd_is_the_wire = false;

  friend bool operator==(const ChannelCapabilities&, const ChannelCapabilities&) = default;
};

using SchedulerDescriptor = BackendDescriptor<Scheduler, SchedulerCapabilities>;
using ChannelDescriptor = BackendDescriptor<ChannelFactory, ChannelCapabilities>;
using EventLoopDescriptor = BackendDescriptor<EventLoop>;

}  // namespace taskrt

#endif  // TASKRT_CORE_BACKEND_H_
