// main() of the fault targets: the conformance suite on the combination its
// arguments name (see tests/conformance/conformance.h), failing if no fault
// was injected (tests/faults/syscall_faults.h).

#include "tests/conformance/conformance.h"
#include "tests/faults/syscall_faults.h"

int main(int argc, char** argv) {
  return taskrt::faults::RequireFaultsInjected(
      taskrt::conformance::RunConformanceSuiteFromFlags(argc, argv));
}
