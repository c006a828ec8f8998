// The mmuvisor binary. Everything lives in vmm/cli/run_command.cc so it can be tested.
#include <cstdio>

#include "vmm/cli/run_command.h"

int main(int argc, char** argv) {
  return mmuvisor::vmm::cli::Main(argc, argv, stdout, stderr);
}
