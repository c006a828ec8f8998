// The mmuvisor binary. Everything lives in vmm/cli/run_command.cc so it can be tested.
#include <unistd.h>

#include <cstdio>

#include "vmm/cli/run_command.h"

int main(int argc, char** argv) {
#if MMUVISOR_EXIT_WITHOUT_TEARDOWN
  // The process ends right after the run. At exit the kernel closes the VM, the
  // userfaultfd, the memfd and the store, unmaps RAM and stops the page-server thread in
  // one pass; the Machine's orderly teardown before it (waking and joining that thread,
  // unmapping, closing one by one) only delayed the exit, by ~0.2 ms on kvm_pvm
  // (vmm/README.md, "Process start"). Every stream is flushed first. Sanitizer builds
  // (without MMUVISOR_EXIT_WITHOUT_TEARDOWN) tear down, for their leak and race checks.
  const int code = mmuvisor::vmm::cli::Main(argc, argv, stdout, stderr,
                                            mmuvisor::vmm::cli::Teardown::kLeftToProcessExit);
  std::fflush(nullptr);
  _exit(code);
#else
  return mmuvisor::vmm::cli::Main(argc, argv, stdout, stderr);
#endif
}
