"""The registered backends by kind, for Bazel: the names backends/registry.cc
registers, in its order. tests/conformance generates one conformance target
per combination from these lists, and //tests/conformance:matrix_test fails
if they and the registry disagree."""

SCHEDULERS = ["thread_pool", "work_stealing", "cooperative"]
CHANNELS = ["socketpair", "memory", "io_uring", "nats"]
EVENT_LOOPS = ["epoll", "io_uring"]

# Where //tests/faults runs the conformance suite under its syscall shim: the
# channel whose every message is a plain send/recv the shim can fail, on a
# scheduler of OS threads and on the one with stackful tasks. Each target
# fails if the shim injected nothing, so a choice that stops reaching the
# shim is seen.
SYSCALL_FAULT_COMBINATIONS = [
    ("thread_pool", "socketpair", "epoll"),
    ("cooperative", "socketpair", "epoll"),
]
