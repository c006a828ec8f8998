/* touch: the contract between the demand-paging benchmark guest (guests/touch) and its VMM
 * side (tests/bench/paging/guest_touch_run.cc). Plain C, static inline, no state.
 *
 * Boot-info arguments (struct mmv_boot_info.args):
 *   TOUCH_ARG_FIRST_GPA  page-aligned first byte of the touched range, inside free memory
 *   TOUCH_ARG_PAGES      pages per vCPU: vCPU v touches
 *                        [first + v * pages * TOUCH_PAGE, first + (v + 1) * pages * TOUCH_PAGE)
 *   TOUCH_ARG_FLAGS      TOUCH_F_FILLED: the host wrote touch_word(gpa) at offset 0 of every
 *                        page before the run (then reclaimed them); without it every page
 *                        must read zeros there (never-touched memory)
 * Per vCPU, in order: SYNC(TOUCH_SYNC_START, pages); one byte store of TOUCH_BYTE at offset
 * TOUCH_BYTE_OFFSET of every page, lowest page first (the timed phase: nothing else, no
 * exits); SYNC(TOUCH_SYNC_TOUCHED, pages); then it reads every page back and sends
 * SYNC(TOUCH_SYNC_VERIFIED, good pages, bad pages, first bad gpa or 0) and DONE(0) when no
 * page was bad, DONE(1) otherwise.
 */
#ifndef MMUVISOR_GUESTS_TOUCH_TOUCH_SHARED_H_
#define MMUVISOR_GUESTS_TOUCH_TOUCH_SHARED_H_

#ifdef __cplusplus
#include <cstdint>
#else
#include <stdint.h>
#endif

#define TOUCH_PAGE 4096ull
#define TOUCH_ARG_FIRST_GPA 0
#define TOUCH_ARG_PAGES 1
#define TOUCH_ARG_FLAGS 2
#define TOUCH_F_FILLED 1ull

#define TOUCH_BYTE_OFFSET 64ull
#define TOUCH_BYTE 0xa5u

#define TOUCH_SYNC_START 1ull
#define TOUCH_SYNC_TOUCHED 2ull
#define TOUCH_SYNC_VERIFIED 3ull

/* The word the host writes at offset 0 of the page at `gpa` (never zero, so a page that came
 * back as zeros instead of from the swap store is caught). */
static inline uint64_t touch_word(uint64_t gpa) {
  return ((gpa * 0x9e3779b97f4a7c15ull) ^ 0x746f756368000000ull) | 1ull;
}

#endif /* MMUVISOR_GUESTS_TOUCH_TOUCH_SHARED_H_ */
