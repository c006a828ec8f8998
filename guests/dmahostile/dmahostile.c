/* dmahostile: vCPU 0 throws malformed DMA descriptors at the device — out of RAM, huge
 * lengths, wrap-around, overlapping copies, misaligned addresses, bad magic/op/flags,
 * broken and looping chains — each flagged MMV_DMA_FLAG_EXPECT_ERROR, plus raw doorbells
 * the device cannot even read (misaligned, outside RAM). It checks that each descriptor
 * comes back with the expected error status and that a well-formed copy still works
 * afterwards, reports the counts (REPORT DMA_HOSTILE: sent, errors seen, errors as
 * expected) and returns 0 when every check held. Other vCPUs return at once. */
#include "mmuvisor/guest_runtime.h"

#define POLL_LIMIT (1ull << 32)

static volatile struct mmv_dma_desc* desc_at(uint64_t gpa) {
  return (volatile struct mmv_dma_desc*)(uintptr_t)gpa;
}

static void set(volatile struct mmv_dma_desc* d, uint32_t magic, uint32_t op, uint64_t src,
                uint64_t dst, uint64_t len, uint64_t next, uint32_t flags) {
  d->magic = magic;
  d->op = op;
  d->src = src;
  d->dst = dst;
  d->len = len;
  d->value = 0x1111;
  d->result = 0;
  d->next = next;
  d->flags = flags;
  d->status = MMV_DMA_STATUS_PENDING;
}

/* A read of the DMA port: chains queued or running (0 = the device is idle). */
static inline uint32_t dma_busy(void) {
  uint32_t value;
  __asm__ volatile("inl %1, %0" : "=a"(value) : "Nd"((uint16_t)MMV_PORT_DMA));
  return value;
}

/* Rings the doorbell and waits until the device is idle again: a chain may write a status
 * into the same descriptor more than once (the self-linked chain writes OK on each pass
 * and BAD_CHAIN on the last), so the first non-PENDING status is not the final one. */
static uint32_t ring_and_wait(uint64_t gpa) {
  mmv_outl(MMV_PORT_DMA, (uint32_t)gpa);
  uint64_t spins = 0;
  while (desc_at(gpa)->status == MMV_DMA_STATUS_PENDING && spins++ < POLL_LIMIT) mmv_pause();
  while (dma_busy() != 0 && spins++ < POLL_LIMIT) mmv_pause();
  return desc_at(gpa)->status;
}

int mmv_main(uint32_t vcpu, uint64_t arg) {
  (void)arg;
  if (vcpu != 0) return 0;
  const volatile struct mmv_boot_info* bi = mmv_boot_info();
  const uint64_t ram = bi->ram_size;
  const uint64_t base = bi->free_start;          /* descriptor page */
  const uint64_t src = base + 0x1000, dst = base + 0x3000;
  const uint32_t E = MMV_DMA_FLAG_EXPECT_ERROR, M = MMV_DMA_DESC_MAGIC;
  struct {
    uint32_t magic, op;
    uint64_t src, dst, len, next;
    uint32_t flags, want;
  } cases[] = {
      {M, MMV_DMA_OP_COPY, src, ram - 0x1000, 0x2000, 0, E, MMV_DMA_STATUS_OUT_OF_RANGE},
      {M, MMV_DMA_OP_FILL, 0, 1ull << 52, 0x1000, 0, E, MMV_DMA_STATUS_OUT_OF_RANGE},
      {M, MMV_DMA_OP_COPY, src, dst, 1ull << 40, 0, E, MMV_DMA_STATUS_BAD_LENGTH},
      {M, MMV_DMA_OP_COPY, src, dst, 0, 0, E, MMV_DMA_STATUS_BAD_LENGTH},
      {M, MMV_DMA_OP_COPY, ~0ull - 0xff7, dst, 0x1000, 0, E, MMV_DMA_STATUS_WRAP},
      {M, MMV_DMA_OP_COPY, src, src + 0x800, 0x1000, 0, E, MMV_DMA_STATUS_OVERLAP},
      {M, MMV_DMA_OP_CHECKSUM, src + 4, 0, 0x1000, 0, E, MMV_DMA_STATUS_MISALIGNED},
      {0x12345678u, MMV_DMA_OP_COPY, src, dst, 0x1000, 0, E, MMV_DMA_STATUS_BAD_DESC},
      {M, 99, src, dst, 0x1000, 0, E, MMV_DMA_STATUS_BAD_DESC},
      {M, MMV_DMA_OP_COPY, src, dst, 0x1000, 0, E | 0x100u, MMV_DMA_STATUS_BAD_DESC},
      {M, MMV_DMA_OP_COPY, src, dst, 0x1000, ram + 0x40, E, MMV_DMA_STATUS_BAD_CHAIN},
      {M, MMV_DMA_OP_COPY, src, dst, 0x1000, base + 8, E, MMV_DMA_STATUS_BAD_CHAIN},
  };
  const uint64_t n = sizeof(cases) / sizeof(cases[0]);
  uint64_t errors = 0, as_expected = 0;
  for (uint64_t i = 0; i < n; ++i) {
    volatile struct mmv_dma_desc* d = desc_at(base);
    set(d, cases[i].magic, cases[i].op, cases[i].src, cases[i].dst, cases[i].len,
        cases[i].next, cases[i].flags);
    const uint32_t status = ring_and_wait(base);
    if (status != MMV_DMA_STATUS_OK) ++errors;
    if (status == cases[i].want) {
      ++as_expected;
    } else {
      mmv_print("dmahostile: case %lu: status %u, expected %u", (unsigned long)i, status,
                cases[i].want);
    }
  }
  /* A chain that links to itself: the device stops after MMV_DMA_MAX_CHAIN. */
  set(desc_at(base + 64), M, MMV_DMA_OP_CHECKSUM, src, 0, 0x1000, base + 64, E);
  const uint32_t loop = ring_and_wait(base + 64);
  if (loop == MMV_DMA_STATUS_BAD_CHAIN) ++as_expected;
  ++errors;
  /* Doorbells the device cannot read a descriptor from (no status can come back). */
  mmv_outl(MMV_PORT_DMA, (uint32_t)(base + 4));
  mmv_outl(MMV_PORT_DMA, 0xfffffff0u);
  /* The device still works: a valid copy. */
  volatile uint64_t* s = (volatile uint64_t*)(uintptr_t)src;
  volatile uint64_t* t = (volatile uint64_t*)(uintptr_t)dst;
  for (int k = 0; k < 512; ++k) s[k] = 0xabc000u + (uint64_t)k;
  set(desc_at(base + 128), M, MMV_DMA_OP_COPY, src, dst, 0x1000, 0, 0);
  const uint32_t ok = ring_and_wait(base + 128);
  int copy_ok = ok == MMV_DMA_STATUS_OK;
  for (int k = 0; copy_ok && k < 512; ++k) copy_ok = t[k] == 0xabc000u + (uint64_t)k;
  const uint64_t args[6] = {MMV_REPORT_DMA_HOSTILE, n + 1, errors, as_expected, copy_ok, 0};
  mmv_ucall(MMV_UCALL_REPORT, args, 0);
  mmv_print("dmahostile: %lu malformed descriptors, %lu errors as expected, valid copy %s",
            (unsigned long)(n + 1), (unsigned long)as_expected, copy_ok ? "ok" : "FAILED");
  return (as_expected == n + 1 && copy_ok) ? 0 : 1;
}
