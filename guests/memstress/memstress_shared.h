/* memstress: the pattern, layout and digest shared by the guest (guests/memstress) and the
 * VMM's host-thread workload and checkers (vmm/stress). Plain C, static inline, no state:
 * both sides must compute exactly the same numbers.
 *
 * Pattern: the 64-bit word at guest-physical `gpa` in round `round` of a run with `seed`
 * is memstress_word(seed, gpa, round). It depends on all three, so a word left from any
 * earlier round (a lost write), another page (a misdirected write) or poison is detected.
 *
 * Layout of [free_start, free_end) for N vCPUs (each part page aligned):
 *   vCPU v's part = [free_start + v * part_pages * 4096, ...), part_pages = total / N:
 *     work pages     [0, work)             written and verified every round
 *     scratch slots  [work, work + N * MEMSTRESS_DMA_PAGES)   slot s receives DMA copies
 *                                          from vCPU s (only vCPU s programs them)
 *     descriptors    the last page         this vCPU's DMA descriptors
 */
#ifndef MMUVISOR_GUESTS_MEMSTRESS_MEMSTRESS_SHARED_H_
#define MMUVISOR_GUESTS_MEMSTRESS_MEMSTRESS_SHARED_H_

#ifdef __cplusplus
#include <cstdint>
#else
#include <stdint.h>
#endif

#define MEMSTRESS_PAGE 4096ull
#define MEMSTRESS_DMA_PAGES 4ull      /* pages per DMA copy */
#define MEMSTRESS_DMA_BATCHES 2ull    /* DMA chains per round */
#define MEMSTRESS_BALLOON_PAGES 8ull  /* pages given back per balloon call */
#define MEMSTRESS_BALLOON_EVERY 4ull  /* about one round in this many balloons */
#define MEMSTRESS_MISMATCH_CAP 8ull   /* mismatches reported one by one per round */

static inline uint64_t memstress_mix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

static inline uint64_t memstress_word(uint64_t seed, uint64_t gpa, uint64_t round) {
  return memstress_mix(seed ^ memstress_mix(gpa ^ (round << 48) ^ (round >> 16)));
}

/* A seeded draw for (vCPU, round, purpose). */
static inline uint64_t memstress_draw(uint64_t seed, uint64_t vcpu, uint64_t round,
                                      uint64_t purpose) {
  return memstress_mix(seed ^ memstress_mix((vcpu << 56) ^ (purpose << 48) ^ round));
}

/* Digest of the verified-page sequence: folded once per verified page. */
static inline uint64_t memstress_digest(uint64_t digest, uint64_t page_gpa) {
  return memstress_mix(digest ^ page_gpa);
}

struct memstress_layout {
  uint64_t part_start; /* first byte of this vCPU's part */
  uint64_t work_pages;
  uint64_t work_start;
  uint64_t scratch_start; /* slot s at scratch_start + s * MEMSTRESS_DMA_PAGES * 4096 */
  uint64_t desc_page;
};

/* 0 on success, -1 when the free memory cannot hold N parts of at least 4 work pages.
 * pages_per_vcpu: 0 = share all free memory, else cap the work pages at this. */
static inline int memstress_layout_of(uint64_t free_start, uint64_t free_end,
                                      uint32_t nr_vcpus, uint32_t vcpu,
                                      uint64_t pages_per_vcpu, struct memstress_layout* out) {
  if (nr_vcpus == 0 || vcpu >= nr_vcpus || free_end <= free_start) return -1;
  const uint64_t total = (free_end - free_start) / MEMSTRESS_PAGE;
  const uint64_t part = total / nr_vcpus;
  const uint64_t fixed = nr_vcpus * MEMSTRESS_DMA_PAGES + 1;
  if (part < fixed + MEMSTRESS_DMA_PAGES + MEMSTRESS_BALLOON_PAGES) return -1;
  uint64_t work = part - fixed;
  if (pages_per_vcpu != 0 && work > pages_per_vcpu) work = pages_per_vcpu;
  if (work < MEMSTRESS_DMA_PAGES + MEMSTRESS_BALLOON_PAGES) return -1;
  out->part_start = free_start + (uint64_t)vcpu * part * MEMSTRESS_PAGE;
  out->work_pages = work;
  out->work_start = out->part_start;
  out->scratch_start = out->work_start + work * MEMSTRESS_PAGE;
  out->desc_page = out->scratch_start + nr_vcpus * MEMSTRESS_DMA_PAGES * MEMSTRESS_PAGE;
  return 0;
}

/* Round r of vCPU v: the work page where the balloon chunk starts, or ~0 for none. */
static inline uint64_t memstress_balloon_first(uint64_t seed, uint32_t vcpu, uint64_t round,
                                               uint64_t work_pages) {
  const uint64_t d = memstress_draw(seed, vcpu, round, 1);
  if (d % MEMSTRESS_BALLOON_EVERY != 0) return ~0ull;
  return (d >> 8) % (work_pages - MEMSTRESS_BALLOON_PAGES + 1);
}

/* Round r of vCPU v, batch b: the first work page copied by DMA. */
static inline uint64_t memstress_dma_first(uint64_t seed, uint32_t vcpu, uint64_t round,
                                           uint64_t batch, uint64_t work_pages) {
  return memstress_draw(seed, vcpu, round, 2 + batch) % (work_pages - MEMSTRESS_DMA_PAGES + 1);
}

/* The order pages are visited in a round: a seeded rotation of [0, work_pages). */
static inline uint64_t memstress_page_at(uint64_t seed, uint32_t vcpu, uint64_t round,
                                         uint64_t index, uint64_t work_pages) {
  return (index + memstress_draw(seed, vcpu, round, 0)) % work_pages;
}

#endif /* MMUVISOR_GUESTS_MEMSTRESS_MEMSTRESS_SHARED_H_ */
