/* sdk-example: the guest SDK's example (guests/README.md walks through it). Reads its run
 * arguments, prints through ucall PRINT and the serial port, verifies a pattern over its
 * share of free memory, and, when asked, fails an assertion or crashes:
 *
 *   mmuvisor run sdk-example [--vcpus N] [--seed S] -- [ACTION [KIB [VALUE]]]
 *     ACTION 0 (default): every vCPU writes and verifies KIB KiB (default 4096 = 4 MiB,
 *              at most its share of free memory), then returns 0 (DONE 0, exit status 0)
 *     ACTION 1: as 0, then vCPU 0 asserts VALUE == 42 (exit status 1 unless it is)
 *     ACTION 2: as 0, then vCPU 0 stores to address 0: a #PF reported as a crash (exit 3)
 *
 * Output of vCPU i (PRINT lines, then one serial line):
 *   sdk-example: vCPU i of N: 3 args [0x0 0x100 0x2a] seed 0x7 flags 0x0
 *   sdk-example: vCPU i verified 256 KiB at [0x..., 0x...): 0 mismatches
 *   sdk-example: vCPU i done            (serial)
 */
#include "mmuvisor/guest_runtime.h"

#define ACTION_VERIFY 0
#define ACTION_ASSERT 1
#define ACTION_CRASH 2
#define PAGE 4096u

/* The value written at guest-physical address `gpa`: differs per address and per seed, so
 * a page that lost its contents, or got another page's, shows. */
static uint64_t pattern(uint64_t gpa, uint64_t seed) {
  return (gpa * 0x9e3779b97f4a7c15ull) ^ seed ^ 0x5a5a5a5a5a5a5a5aull;
}

/* Writes then re-reads every word of [start, end); returns the words that differ. */
static uint64_t verify(uint64_t start, uint64_t end, uint64_t seed) {
  for (uint64_t a = start; a < end; a += 8) *(volatile uint64_t*)(uintptr_t)a = pattern(a, seed);
  uint64_t mismatches = 0;
  for (uint64_t a = start; a < end; a += 8) {
    if (*(volatile uint64_t*)(uintptr_t)a != pattern(a, seed)) ++mismatches;
  }
  return mismatches;
}

int mmv_main(uint32_t vcpu, uint64_t nr_args) {
  const volatile struct mmv_boot_info* bi = mmv_boot_info();
  MMV_ASSERT_EQ(bi->magic, MMV_BOOT_INFO_MAGIC);
  MMV_ASSERT_EQ(nr_args, mmv_nr_args()); /* RSI at entry = boot info nr_args */

  /* The arguments, with defaults for the ones not given. */
  const uint64_t action = mmv_arg(0, ACTION_VERIFY);
  const uint64_t kib = mmv_arg(1, 4096);
  const uint64_t value = mmv_arg(2, 0);
  char list[MMV_UCALL_TEXT_MAX];
  size_t len = 0;
  list[0] = '\0';
  for (uint32_t i = 0; i < mmv_nr_args() && len < sizeof(list); ++i) {
    len += mmv_snprintf(list + len, sizeof(list) - len, "%s0x%lx", i ? " " : "",
                        (unsigned long)bi->args[i]);
  }
  mmv_print("sdk-example: vCPU %u of %u: %u args [%s] seed 0x%lx flags 0x%x", vcpu, bi->nr_vcpus,
            mmv_nr_args(), list, (unsigned long)bi->seed, bi->flags);

  /* This vCPU's share of free memory, page aligned: [free_start, free_end) split N ways. */
  const uint64_t share = (bi->free_end - bi->free_start) / bi->nr_vcpus / PAGE * PAGE;
  const uint64_t start = bi->free_start + vcpu * share;
  uint64_t bytes = kib * 1024;
  if (bytes > share) bytes = share;
  const uint64_t mismatches = verify(start, start + bytes, bi->seed + vcpu);
  mmv_print("sdk-example: vCPU %u verified %lu KiB at [0x%lx, 0x%lx): %lu mismatches", vcpu,
            (unsigned long)(bytes / 1024), (unsigned long)start, (unsigned long)(start + bytes),
            (unsigned long)mismatches);
  MMV_ASSERT_EQ(mismatches, 0);

  if (vcpu == 0 && action == ACTION_ASSERT) MMV_ASSERT_EQ(value, 42);
  if (vcpu == 0 && action == ACTION_CRASH) {
    mmv_print("sdk-example: vCPU 0 stores to address 0");
    *(volatile uint64_t*)(uintptr_t)0 = 1; /* page 0 is never mapped: #PF, cr2 = 0 */
  }
  mmv_serial_printf("sdk-example: vCPU %u done\n", vcpu);
  return 0;
}
