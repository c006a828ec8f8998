/* crash: faults on purpose. Reports the address of the faulting instruction with SYNC
 * (stage 0xc7a5, args[1] = &mmv_crash_site), prints "crash: faulting at 0x...", then stores
 * to guest-physical 0, which the page tables leave unmapped: #PF with CR2 = 0 at RIP =
 * mmv_crash_site. The CPU delivers the #PF through the IDT to the VMM's exception stub,
 * which exits to the VMM: `mmuvisor run crash` reports "guest exception: page fault (#PF),
 * vector 14, error code 0x6, rip inside the image [...]" with cr2=0 and exits 3. */
#include "mmuvisor/guest_runtime.h"

#define CRASH_SYNC_STAGE 0xc7a5u

void mmv_crash_site(void);
__asm__(
    "  .text\n"
    "  .globl mmv_crash_site\n"
    "  .type mmv_crash_site, @function\n"
    "mmv_crash_site:\n"
    "  movl $0xdead, 0x0\n" /* absolute address 0: not present */
    "  ret\n"
    "  .size mmv_crash_site, . - mmv_crash_site\n");

int mmv_main(uint32_t vcpu, uint64_t arg) {
  (void)arg;
  const uint64_t site = (uint64_t)(uintptr_t)&mmv_crash_site;
  mmv_sync(CRASH_SYNC_STAGE, site, vcpu, 0);
  mmv_print("crash: faulting at %p", (void*)(uintptr_t)site);
  mmv_crash_site();
  mmv_print("crash: survived a store to address 0");
  return 1;
}
