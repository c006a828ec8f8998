/* hello64: the smallest long-mode guest. Checks the boot info, greets through a ucall and
 * through the serial port, then returns 0 (DONE with exit code 0).
 * Exact output (vCPU i, CPL c): ucall PRINT "hello64: Hello from vCPU i at CPLc!" then
 * serial "hello64: serial says hi\n". */
#include "mmuvisor/guest_runtime.h"

int mmv_main(uint32_t vcpu, uint64_t arg) {
  (void)arg;
  MMV_ASSERT_EQ(mmv_boot_info()->magic, MMV_BOOT_INFO_MAGIC);
  MMV_ASSERT_EQ(mmv_vcpu_index(), vcpu);
  mmv_print("hello64: Hello from vCPU %u at CPL%u!", vcpu, mmv_cpl());
  mmv_serial_printf("hello64: serial says hi\n");
  return 0;
}
