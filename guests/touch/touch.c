/* touch: the demand-paging benchmark guest (touch_shared.h has the contract). Each vCPU
 * writes one byte to every page of its share of a range the VMM chose (swapped out, or
 * never touched), bracketed by two SYNCs the VMM times, then verifies every page (the
 * host's word at offset 0, its own byte) and reports. Runs at CPL3; no interrupts. */
#include "mmuvisor/guest_runtime.h"
#include "touch/touch_shared.h"

int mmv_main(uint32_t vcpu, uint64_t arg) {
  (void)arg;
  const volatile struct mmv_boot_info* bi = mmv_boot_info();
  const uint64_t pages = bi->args[TOUCH_ARG_PAGES];
  const uint64_t start = bi->args[TOUCH_ARG_FIRST_GPA] + (uint64_t)vcpu * pages * TOUCH_PAGE;
  const int filled = (bi->args[TOUCH_ARG_FLAGS] & TOUCH_F_FILLED) != 0;
  MMV_ASSERT(pages != 0);
  MMV_ASSERT(start % TOUCH_PAGE == 0);
  MMV_ASSERT(start >= bi->free_start);
  MMV_ASSERT(start + pages * TOUCH_PAGE <= bi->free_end);

  mmv_sync(TOUCH_SYNC_START, pages, 0, 0);
  for (uint64_t p = 0; p < pages; ++p) {
    *(volatile uint8_t*)(uintptr_t)(start + p * TOUCH_PAGE + TOUCH_BYTE_OFFSET) = TOUCH_BYTE;
  }
  mmv_sync(TOUCH_SYNC_TOUCHED, pages, 0, 0);

  uint64_t bad = 0, first_bad = 0;
  for (uint64_t p = 0; p < pages; ++p) {
    const uint64_t gpa = start + p * TOUCH_PAGE;
    const uint64_t want = filled ? touch_word(gpa) : 0;
    const uint64_t word = *(const volatile uint64_t*)(uintptr_t)gpa;
    const uint8_t byte = *(const volatile uint8_t*)(uintptr_t)(gpa + TOUCH_BYTE_OFFSET);
    if (word != want || byte != TOUCH_BYTE) {
      if (bad++ == 0) first_bad = gpa;
    }
  }
  mmv_sync(TOUCH_SYNC_VERIFIED, pages - bad, bad, first_bad);
  return bad == 0 ? 0 : 1;
}
