/* smp: every vCPU computes sum(1..n) with n = 1000 * (index + 1), meets the others at a
 * barrier, then reports through SYNC (args: stage 1, index, sum, vCPUs seen at the barrier)
 * and a PRINT "smp: vCPU i of N: sum(1..n) = s", then returns 0.
 * Expected sums: vCPU 0 -> 500500, vCPU 1 -> 2001000, vCPU i -> n(n+1)/2. */
#include "mmuvisor/guest_runtime.h"

static uint32_t arrived; /* vCPUs that reached the barrier; .bss, zeroed by the loader */

int mmv_main(uint32_t vcpu, uint64_t arg) {
  (void)arg;
  const uint32_t nr_vcpus = mmv_boot_info()->nr_vcpus;
  MMV_ASSERT(vcpu < nr_vcpus);
  MMV_ASSERT_EQ(mmv_vcpu_index(), vcpu);

  const uint64_t n = 1000ull * (vcpu + 1);
  volatile uint64_t sum = 0; /* volatile: really loop, do not fold to n(n+1)/2 */
  for (uint64_t k = 1; k <= n; ++k) sum += k;

  /* Barrier: the seq_cst add pairs with the acquire loads of the other vCPUs. */
  __atomic_fetch_add(&arrived, 1, __ATOMIC_SEQ_CST);
  while (__atomic_load_n(&arrived, __ATOMIC_ACQUIRE) < nr_vcpus) mmv_pause();

  mmv_sync(1, vcpu, sum, nr_vcpus);
  mmv_print("smp: vCPU %u of %u: sum(1..%lu) = %lu", vcpu, nr_vcpus, (unsigned long)n,
            (unsigned long)sum);
  MMV_ASSERT_EQ(sum, n * (n + 1) / 2);
  return 0;
}
