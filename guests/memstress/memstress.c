/* memstress: the stress guest. Every vCPU owns a part of [free_start, free_end)
 * (memstress_shared.h). In round r it
 *   1. visits its work pages in a seeded order: verifies the words it wrote in round r-1
 *      (except pages it gave back), then writes the round-r words;
 *   2. programs MEMSTRESS_DMA_BATCHES DMA chains (COPY 3 pages of its work area into its
 *      slot of the next vCPU's scratch area, CHECKSUM them, FILL the slot's last page),
 *      one OUT per chain, polls the statuses in memory and verifies every byte;
 *   3. sometimes gives MEMSTRESS_BALLOON_PAGES pages back (BALLOON ucall);
 *   4. sends one PROGRESS report (round, pages verified, digest, DMA ops, mismatches).
 * With K aliases (args: RAM also at k * stride, k = 1..K) round r writes page p through
 * alias (p + r) mod (K + 1) (0 = RAM itself) and verifies it in round r + 1 through the
 * next one, so every check reads what another guest-physical view of the page wrote; the
 * DMA chains name their copy's source and destination through aliases too. With a spare
 * slot (args: the two windows where the VMM's memslot churn adds, moves and deletes an
 * alias of RAM's first 2 MiB) every round reads the boot-info magic through both windows:
 * it must be the magic (slot there) or all ones (no slot: the VMM's answer).
 * Mismatches are reported one by one (gpa, expected, found) up to MEMSTRESS_MISMATCH_CAP
 * per round, then summarised. Port I/O exits per round: DMA chains + balloon + progress
 * + mismatches, nothing per page. Runs at CPL3; no interrupts; stops when the round count
 * (boot info args) is reached or the VMM sets the stop word.
 * Returns 0 when it saw no mismatch and every DMA succeeded, 1 otherwise. */
#include "memstress/memstress_shared.h"
#include "mmuvisor/guest_runtime.h"

#define WORDS_PER_PAGE (MEMSTRESS_PAGE / 8)
#define COPY_PAGES (MEMSTRESS_DMA_PAGES - 1)
#define DMA_POLL_LIMIT (1ull << 34) /* pause iterations: minutes; the watchdog is sooner */

struct state {
  uint32_t vcpu, nr_vcpus;
  uint64_t seed;
  uint64_t aliases, alias_stride; /* K and where alias k starts (k * stride) */
  uint64_t spare[2];              /* the spare slot's windows; 0 = none */
  struct memstress_layout layout;
  uint64_t round;
  uint64_t verified, digest, dma_ops, mismatches, reported_this_round, failed_dma;
};

static void report(uint64_t kind, uint64_t a, uint64_t b, uint64_t c, uint64_t d, uint64_t e) {
  const uint64_t args[6] = {kind, a, b, c, d, e};
  mmv_ucall(MMV_UCALL_REPORT, args, 0);
}

static void mismatch(struct state* s, uint32_t source, uint64_t gpa, uint64_t want,
                     uint64_t got) {
  s->mismatches++;
  if (s->reported_this_round++ < MEMSTRESS_MISMATCH_CAP) {
    report(MMV_REPORT_MISMATCH, gpa, want, got, s->round, source);
  }
}

/* Where this round reaches guest-physical `gpa` (in RAM) through alias `which` mod K + 1. */
static uint64_t alias_of(const struct state* s, uint64_t gpa, uint64_t which) {
  return gpa + (which % (s->aliases + 1)) * s->alias_stride;
}

static void probe_spare(struct state* s) {
  for (int i = 0; i < 2; ++i) {
    if (s->spare[i] == 0) continue;
    const uint64_t gpa = s->spare[i] + MMV_BOOT_INFO_GPA; /* offset 0: the magic */
    const uint64_t got = *(volatile uint64_t*)(uintptr_t)gpa;
    if (got != MMV_BOOT_INFO_MAGIC && got != ~0ull) {
      mismatch(s, MMV_MISMATCH_SPARE, gpa, MMV_BOOT_INFO_MAGIC, got);
    }
  }
}

static void verify_and_write(struct state* s, uint64_t prev_balloon) {
  const struct memstress_layout* l = &s->layout;
  for (uint64_t i = 0; i < l->work_pages; ++i) {
    const uint64_t page = memstress_page_at(s->seed, s->vcpu, s->round, i, l->work_pages);
    const uint64_t gpa = l->work_start + page * MEMSTRESS_PAGE;
    volatile uint64_t* w = (volatile uint64_t*)(uintptr_t)alias_of(s, gpa, page + s->round);
    const int ballooned = prev_balloon != ~0ull && page >= prev_balloon &&
                          page < prev_balloon + MEMSTRESS_BALLOON_PAGES;
    if (s->round > 1 && !ballooned) {
      for (uint64_t k = 0; k < WORDS_PER_PAGE; ++k) {
        const uint64_t want = memstress_word(s->seed, gpa + k * 8, s->round - 1);
        const uint64_t got = w[k];
        if (got != want) mismatch(s, MMV_MISMATCH_CPU, gpa + k * 8, want, got);
      }
      s->digest = memstress_digest(s->digest, gpa);
      s->verified++;
    }
    for (uint64_t k = 0; k < WORDS_PER_PAGE; ++k) {
      w[k] = memstress_word(s->seed, gpa + k * 8, s->round);
    }
  }
}

static void set_desc(volatile struct mmv_dma_desc* d, uint32_t op, uint64_t src, uint64_t dst,
                     uint64_t len, uint64_t value, uint64_t next) {
  d->magic = MMV_DMA_DESC_MAGIC;
  d->op = op;
  d->src = src;
  d->dst = dst;
  d->len = len;
  d->value = value;
  d->result = 0;
  d->next = next;
  d->flags = 0;
  d->status = MMV_DMA_STATUS_PENDING;
}

/* One chain; 0 when all three descriptors completed OK. */
static int dma_batch(struct state* s, uint64_t batch) {
  const struct memstress_layout* l = &s->layout;
  struct memstress_layout target = {0};
  memstress_layout_of(mmv_boot_info()->free_start, mmv_boot_info()->free_end, s->nr_vcpus,
                      (s->vcpu + 1) % s->nr_vcpus, mmv_boot_info()->args[MMV_MEMSTRESS_ARG_PAGES],
                      &target);
  const uint64_t first = memstress_dma_first(s->seed, s->vcpu, s->round, batch, l->work_pages);
  const uint64_t src = l->work_start + first * MEMSTRESS_PAGE;
  const uint64_t dst = target.scratch_start + (uint64_t)s->vcpu * MEMSTRESS_DMA_PAGES * MEMSTRESS_PAGE;
  const uint64_t fill_gpa = dst + COPY_PAGES * MEMSTRESS_PAGE;
  const uint64_t fill_value = memstress_word(s->seed, fill_gpa, s->round) ^ 0x5a5a5a5a5a5a5a5aull;
  const uint64_t len = COPY_PAGES * MEMSTRESS_PAGE;
  volatile struct mmv_dma_desc* d = (volatile struct mmv_dma_desc*)(uintptr_t)l->desc_page;

  const uint64_t view = s->round + batch; /* the device's aliases for this chain */
  set_desc(&d[0], MMV_DMA_OP_COPY, alias_of(s, src, view), alias_of(s, dst, view + 1), len, 0,
           l->desc_page + 64);
  set_desc(&d[1], MMV_DMA_OP_CHECKSUM, alias_of(s, src, view + 2), 0, len, 0,
           l->desc_page + 128);
  set_desc(&d[2], MMV_DMA_OP_FILL, 0, fill_gpa, MEMSTRESS_PAGE, fill_value, 0);
  mmv_outl(MMV_PORT_DMA, (uint32_t)l->desc_page);

  for (int i = 0; i < 3; ++i) {
    uint64_t spins = 0;
    while (d[i].status == MMV_DMA_STATUS_PENDING && spins++ < DMA_POLL_LIMIT) mmv_pause();
    if (d[i].status != MMV_DMA_STATUS_OK) {
      report(MMV_REPORT_DMA_ERROR, l->desc_page + 64 * i, d[i].status, d[i].op, s->round, 0);
      s->failed_dma++;
      return -1;
    }
  }
  s->dma_ops += 3;

  uint64_t sum = 0, index = 0;
  for (uint64_t p = 0; p < COPY_PAGES; ++p) {
    const volatile uint64_t* got = (const volatile uint64_t*)(uintptr_t)(dst + p * MEMSTRESS_PAGE);
    for (uint64_t k = 0; k < WORDS_PER_PAGE; ++k) {
      const uint64_t want = memstress_word(s->seed, src + p * MEMSTRESS_PAGE + k * 8, s->round);
      sum = (sum ^ want) * MMV_DMA_CHECKSUM_PRIME + index++;
      const uint64_t found = got[k];
      if (found != want) mismatch(s, MMV_MISMATCH_DMA_COPY, dst + p * MEMSTRESS_PAGE + k * 8, want, found);
    }
    s->verified++;
  }
  if (d[1].result != sum) mismatch(s, MMV_MISMATCH_DMA_CHECKSUM, src, sum, d[1].result);
  const volatile uint64_t* fill = (const volatile uint64_t*)(uintptr_t)fill_gpa;
  for (uint64_t k = 0; k < WORDS_PER_PAGE; ++k) {
    const uint64_t found = fill[k];
    if (found != fill_value) mismatch(s, MMV_MISMATCH_DMA_FILL, fill_gpa + k * 8, fill_value, found);
  }
  s->verified++;
  return 0;
}

int mmv_main(uint32_t vcpu, uint64_t arg) {
  (void)arg;
  const volatile struct mmv_boot_info* bi = mmv_boot_info();
  struct state s = {0};
  s.vcpu = vcpu;
  s.nr_vcpus = bi->nr_vcpus;
  s.seed = bi->seed;
  s.aliases = bi->args[MMV_MEMSTRESS_ARG_ALIASES];
  s.alias_stride = bi->args[MMV_MEMSTRESS_ARG_ALIAS_STRIDE];
  if (s.alias_stride == 0) s.aliases = 0;
  s.spare[0] = bi->args[MMV_MEMSTRESS_ARG_SPARE_A];
  s.spare[1] = bi->args[MMV_MEMSTRESS_ARG_SPARE_B];
  const uint64_t rounds = bi->args[MMV_MEMSTRESS_ARG_ROUNDS];
  const uint64_t flags = bi->args[MMV_MEMSTRESS_ARG_FLAGS];
  if (memstress_layout_of(bi->free_start, bi->free_end, s.nr_vcpus, vcpu,
                          bi->args[MMV_MEMSTRESS_ARG_PAGES], &s.layout) != 0) {
    mmv_print("memstress: vCPU %u: free memory [0x%lx, 0x%lx) is too small for %u vCPUs",
              vcpu, (unsigned long)bi->free_start, (unsigned long)bi->free_end, s.nr_vcpus);
    return 2;
  }
  uint64_t prev_balloon = ~0ull;
  for (s.round = 1; rounds == 0 || s.round <= rounds; ++s.round) {
    if (bi->args[MMV_MEMSTRESS_ARG_STOP] != 0) break;
    s.reported_this_round = 0;
    verify_and_write(&s, prev_balloon);
    probe_spare(&s);
    if (flags & MMV_MEMSTRESS_F_DMA) {
      for (uint64_t b = 0; b < MEMSTRESS_DMA_BATCHES; ++b) {
        if (dma_batch(&s, b) != 0) break;
      }
    }
    prev_balloon = ~0ull;
    if (flags & MMV_MEMSTRESS_F_BALLOON) {
      const uint64_t first = memstress_balloon_first(s.seed, vcpu, s.round, s.layout.work_pages);
      if (first != ~0ull) {
        const uint64_t args[6] = {s.layout.work_start + first * MEMSTRESS_PAGE,
                                  MEMSTRESS_BALLOON_PAGES * MEMSTRESS_PAGE, 0, 0, 0, 0};
        mmv_ucall(MMV_UCALL_BALLOON, args, 0);
        prev_balloon = first;
      }
    }
    if (s.reported_this_round > MEMSTRESS_MISMATCH_CAP) {
      report(MMV_REPORT_MISMATCH_SUMMARY, s.reported_this_round - MEMSTRESS_MISMATCH_CAP,
             s.round, 0, 0, 0);
    }
    report(MMV_REPORT_PROGRESS, s.round, s.verified, s.digest, s.dma_ops, s.mismatches);
  }
  return (s.mismatches != 0 || s.failed_dma != 0) ? 1 : 0;
}
