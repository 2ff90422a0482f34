// The main() of every conformance target that matrix.bzl generates: the
// combination comes from --scheduler, --channel and --event_loop.

#include "tests/conformance/conformance.h"

int main(int argc, char** argv) {
  return taskrt::conformance::RunConformanceSuiteFromFlags(argc, argv);
}
