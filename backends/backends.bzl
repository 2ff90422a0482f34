"""The registered backends by kind, for Bazel: the names backends/registry.cc
registers, in its order. tests/conformance generates one conformance target
per combination from these lists, and //tests/conformance:matrix_test fails
if they and the registry disagree."""

SCHEDULERS = ["thread_pool", "work_stealing", "cooperative"]
CHANNELS = ["socketpair", "memory", "io_uring"]
EVENT_LOOPS = ["epoll", "io_uring"]
