"""fuzz_target: one fuzz target as two Bazel targets.

<name>_replay_test: a cc_test (in //...) that runs every checked-in corpus
  input in corpus/<name>/ once, with any compiler and sanitizer config.
<name>_fuzzer: the libFuzzer binary, tagged manual; it builds only with
  --config=fuzz (clang-14, -fsanitize=fuzzer). .ci/run fuzzes each for a
  bounded time.
"""

def fuzz_target(name, srcs, deps = [], size = "small"):
    native.cc_test(
        name = name + "_replay_test",
        size = size,
        srcs = srcs,
        args = ["tests/fuzz/corpus/" + name],
        data = native.glob(["corpus/" + name + "/*"]),
        deps = deps + [":replay_main"],
    )
    native.cc_binary(
        name = name + "_fuzzer",
        testonly = True,
        srcs = srcs,
        linkopts = ["-fsanitize=fuzzer"],
        tags = ["manual"],
        deps = deps,
    )
