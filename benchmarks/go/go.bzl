"""go_baseline: one Go program of benchmarks/go and its smoke test."""

def go_baseline(name, key):
    """Builds <name>.go into <name>_bin and tests it.

    Args:
      name: the program, <name>.go in this package.
      key: what it prints before its figure ("<key> <ns>").
    """

    # Bazel's strict action env has no HOME and a bare PATH: give go a
    # throwaway cache and GOPATH inside the action. -trimpath keeps the
    # sandbox's paths out of the binary.
    native.genrule(
        name = name,
        srcs = [name + ".go"],
        outs = [name + "_bin"],
        cmd = """
            tmp="$$(mktemp -d)"
            trap 'rm -rf "$$tmp"' EXIT
            HOME="$$tmp" GOPATH="$$tmp/gopath" GOCACHE="$$tmp/cache" \\
                GO111MODULE=off GOFLAGS=-trimpath CGO_ENABLED=0 \\
                go build -o "$@" $(location %s.go)
        """ % name,
        executable = True,
    )

    # The program builds, runs offline, prints its figure and refuses a bad N.
    native.sh_test(
        name = name + "_test",
        size = "small",
        srcs = ["go_program_test.sh"],
        data = [":" + name],
        args = ["$(location :%s)" % name, key],
    )
