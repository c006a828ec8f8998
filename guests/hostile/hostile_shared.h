/* hostile: the record generator, arena and report protocol shared by the guest
 * (guests/hostile) and the VMM (vmm/stress: the verdict and the printable record log).
 * Plain C, static inline, no state: both sides must derive exactly the same records.
 *
 * The hostile vCPU (HOSTILE_VCPU) runs a small interpreter over records; record i of a run
 * with seed S is hostile_record_at(S, arena, i), a pure function, so `--seed S` replays the
 * same program and the VMM can print any record without the guest (mmuvisor stress
 * --hostile-log). Every other vCPU runs memstress unchanged and verifies its own data.
 *
 * The arena: the hostile vCPU's memstress work pages (memstress_layout_of for vCPU 0), the
 * only RAM its stores, balloons and well-formed DMA may change. Scratch slots of its part
 * receive another vCPU's DMA copies and are never touched:
 *   [0, store_pages)                       STORE and BALLOON targets (with a shadow; at
 *                                          most HOSTILE_MAX_STORE_PAGES, the rest unused)
 *   [store_pages, store_pages + 4 * lane)  four DMA lanes: descriptor j of a chain uses
 *                                          lane j (source in its first half, destination in
 *                                          its second), foreign ucall blocks, string INs
 *   the last page                          the chain's descriptors
 * Host operations (reclaim, migrate, protect, OOM reap) cover the arena like all free RAM.
 *
 * Fatal records: a malformed ucall, an exception or a touch outside RAM stops the vCPU,
 * and the VMM stops every vCPU with it (vmm/machine: one crash kicks all). So the program
 * ends with one terminal record (hostile_terminal_of), executed only after every verifying
 * vCPU has finished; the VMM checks that it was reported as exactly that.
 */
#ifndef MMUVISOR_GUESTS_HOSTILE_HOSTILE_SHARED_H_
#define MMUVISOR_GUESTS_HOSTILE_HOSTILE_SHARED_H_

#include "../memstress/memstress_shared.h"
#include "mmuvisor/guest_abi.h"

#define HOSTILE_VCPU 0u
#define HOSTILE_PAGE 4096ull
#define HOSTILE_DMA_LANES 4ull
#define HOSTILE_MAX_DMA_PAGES 2ull   /* per descriptor */
#define HOSTILE_MAX_BALLOON_PAGES 4ull
#define HOSTILE_MAX_STORE_PAGES 512ull /* the guest keeps a shadow entry per store page */
#define HOSTILE_SWEEP_EVERY 64ull    /* records between two sweeps over the shadow */
#define HOSTILE_CHECKS_REPORTED 8ull /* self-check failures reported one by one */
/* With a round count (memstress args[0] != 0) the verifiers may finish in milliseconds:
 * the hostile vCPU then runs at least this many records before its terminal record, so a
 * --rounds run exercises every kind of record. A --duration run stops at the stop word. */
#define HOSTILE_MIN_RECORDS_WITH_ROUNDS 1024ull

/* mmv_boot_info.flags bit (test only): STORE records write the first verifying vCPU's
 * work pages instead of the arena, so that vCPU's memstress must report mismatches (the
 * must-fail control, `mmuvisor stress --guest hostile --test-hostile-hits-verifier`). */
#define HOSTILE_F_HIT_VERIFIER 0x1u

/* REPORT kinds of the hostile guest (ucall REPORT args[0]); far from the ABI's own. */
#define HOSTILE_REPORT_BASE 0x484f0000ull
/* args[1] records run, [2] ucalls, [3] port OUTs, [4] port INs, [5] DMA chains. */
#define HOSTILE_REPORT_COUNTS (HOSTILE_REPORT_BASE + 1)
/* args[1] stores, [2] balloons, [3] DMA descriptors checked, [4] sweeps, [5] self-check
 * failures. */
#define HOSTILE_REPORT_COUNTS2 (HOSTILE_REPORT_BASE + 2)
/* Sent right before an operation the device counts as an error the guest did not ask for
 * (a doorbell of the wrong width, or one it cannot read a descriptor from): args[1] how
 * many. The VMM subtracts what was announced from the device's unrequested errors. */
#define HOSTILE_REPORT_ANNOUNCE (HOSTILE_REPORT_BASE + 3)
/* args[1] record index, [2] HOSTILE_CHECK_*, [3] gpa or port, [4] expected, [5] found. */
#define HOSTILE_REPORT_CHECK_FAILED (HOSTILE_REPORT_BASE + 4)
/* args[1] record index, [2] HOSTILE_T_*: the terminal record comes next. */
#define HOSTILE_REPORT_TERMINAL (HOSTILE_REPORT_BASE + 5)
/* From a verifying vCPU: args[1] memstress's exit code; it returns right after. */
#define HOSTILE_REPORT_VERIFIER_DONE (HOSTILE_REPORT_BASE + 6)
#define HOSTILE_REPORT_LAST HOSTILE_REPORT_VERIFIER_DONE

/* Self-checks of the hostile vCPU: each one a promise of the ABI the VMM must keep. */
#define HOSTILE_CHECK_STORE_READBACK 1u /* a store read back at once */
#define HOSTILE_CHECK_STORE_KEPT 2u     /* a store read back at a later sweep */
#define HOSTILE_CHECK_BALLOON_ZERO 3u   /* a ballooned page reads zero */
#define HOSTILE_CHECK_PORT_ALL_ONES 4u  /* an IN from a port with no device */
#define HOSTILE_CHECK_DMA_STATUS 5u     /* the status a descriptor must get */
#define HOSTILE_CHECK_DMA_DATA 6u       /* what a well-formed descriptor must do */

enum hostile_op {
  HOSTILE_OP_UCALL = 0,   /* a valid ucall with hostile contents */
  HOSTILE_OP_PORT_OUT,    /* an OUT to a device port or a port with no device */
  HOSTILE_OP_PORT_IN,     /* an IN (checked where the ABI says what it returns) */
  HOSTILE_OP_DMA,         /* a chain of well-formed and malformed descriptors */
  HOSTILE_OP_DOORBELL,    /* a doorbell the device cannot take (announced) */
  HOSTILE_OP_STORE,       /* stores into the arena, read back */
  HOSTILE_OP_BALLOON,     /* give arena pages back; they must read zero */
  HOSTILE_OP_COUNT
};

/* Variants. UCALL: */
#define HOSTILE_U_PRINT 0u        /* a = text length (may fill the field, no NUL), b = bytes seed */
#define HOSTILE_U_SYNC 1u         /* a = stage, b = values seed */
#define HOSTILE_U_REPORT 2u       /* a = kind (the ABI's, unknown ones, never the hostile's) */
#define HOSTILE_U_FOREIGN 3u      /* a PRINT through a block at a = gpa in lane 3, not ours */
#define HOSTILE_U_COUNT 4u
/* PORT_OUT / PORT_IN: a = port, b = value, c = width (1, 2, 4); d = element count of a
 * string (rep outs / rep ins) when variant is HOSTILE_P_STRING. */
#define HOSTILE_P_SERIAL 0u       /* the UART's eight ports */
#define HOSTILE_P_NO_DEVICE 1u    /* a port no device claims (IN: all ones) */
#define HOSTILE_P_DMA 2u          /* IN only: the device's busy count */
#define HOSTILE_P_UCALL 3u        /* IN only: the ucall port reads 0 */
#define HOSTILE_P_EXCEPTION 4u    /* IN only: the exception port (no device for reads) */
#define HOSTILE_P_STRING 5u       /* rep outsb to the UART; rep insb from no device into lane 2 */
#define HOSTILE_P_COUNT 6u
/* DOORBELL: a = value, c = width, b = port offset. */
#define HOSTILE_D_WIDTH 0u        /* a 1- or 2-byte OUT, or one at offset 1..3 */
#define HOSTILE_D_MISALIGNED 1u   /* a descriptor address not 64-byte aligned */
#define HOSTILE_D_OUTSIDE_RAM 2u  /* a descriptor address at or above ram_size */
#define HOSTILE_D_COUNT 3u
/* DMA: a = number of descriptors (1..4), b = seed of the descriptors; variant 1 = one
 * descriptor linked to itself (the device gives up after MMV_DMA_MAX_CHAIN). */
#define HOSTILE_DMA_CHAIN 0u
#define HOSTILE_DMA_SELF_LOOP 1u
/* STORE: a = gpa, b = value, c = width (1, 2, 4, 8) or 64 (a rep stosq of 64 words). */
/* BALLOON: a = gpa (store pages), b = length. */

/* Terminal records (the program's last; executed after every verifier finished). */
enum hostile_terminal {
  HOSTILE_T_NONE = 0,          /* return 0: DONE */
  HOSTILE_T_UCALL_BAD_MAGIC,   /* a block with the wrong magic */
  HOSTILE_T_UCALL_UNKNOWN_CMD, /* a command the ABI does not have */
  HOSTILE_T_UCALL_MISALIGNED,  /* a block address not 8-byte aligned */
  HOSTILE_T_UCALL_OUTSIDE_RAM, /* a block address at or above ram_size */
  HOSTILE_T_UCALL_SHORT_OUT,   /* a 1-byte OUT to the ucall port */
  HOSTILE_T_BALLOON_OUTSIDE,   /* BALLOON of a range past the end of RAM */
  HOSTILE_T_TOUCH_OUTSIDE_RAM, /* a load at or above ram_size: no mapping, #PF */
  HOSTILE_T_TOUCH_PAGE_ZERO,   /* a load from page 0: #PF */
  HOSTILE_T_NONCANONICAL,      /* a load from a non-canonical address: #GP */
  HOSTILE_T_UD2,               /* #UD */
  HOSTILE_T_HLT,               /* HLT at CPL3: #GP */
  HOSTILE_T_EXCEPTION_PORT,    /* an OUT to the exception stubs' port */
  HOSTILE_T_COUNT
};

struct hostile_arena {
  uint64_t ram_size;
  uint64_t start;       /* first arena byte (page aligned) */
  uint64_t store_pages; /* STORE/BALLOON pages at start */
  uint64_t lane_pages;  /* pages per DMA lane */
  uint64_t lanes_start; /* lane j at lanes_start + j * lane_pages * 4096 */
  uint64_t desc_page;   /* the chain's descriptors */
  uint64_t end;         /* one past the arena */
};

struct hostile_record {
  uint32_t op;      /* enum hostile_op */
  uint32_t variant; /* per op, above */
  uint64_t a, b, c, d;
};

/* 0 on success, -1 when the hostile vCPU's part is too small for an arena. */
static inline int hostile_arena_of(uint64_t ram_size, uint64_t free_start, uint64_t free_end,
                                   uint32_t nr_vcpus, uint64_t pages_per_vcpu,
                                   struct hostile_arena* out) {
  struct memstress_layout l;
  if (nr_vcpus < 2) return -1;
  if (memstress_layout_of(free_start, free_end, nr_vcpus, HOSTILE_VCPU, pages_per_vcpu, &l) != 0) {
    return -1;
  }
  /* lanes take about half of it, at least two descriptor sizes each; stores the rest */
  const uint64_t lane = (l.work_pages / 2) / HOSTILE_DMA_LANES;
  if (lane < 2 * HOSTILE_MAX_DMA_PAGES) return -1;
  uint64_t store = l.work_pages - 1 - lane * HOSTILE_DMA_LANES;
  if (store < HOSTILE_MAX_BALLOON_PAGES) return -1;
  if (store > HOSTILE_MAX_STORE_PAGES) store = HOSTILE_MAX_STORE_PAGES; /* the rest: unused */
  out->ram_size = ram_size;
  out->start = l.work_start;
  out->store_pages = store;
  out->lane_pages = lane;
  out->lanes_start = l.work_start + store * HOSTILE_PAGE;
  out->desc_page = out->lanes_start + HOSTILE_DMA_LANES * lane * HOSTILE_PAGE;
  out->end = out->desc_page + HOSTILE_PAGE;
  return 0;
}

/* Draw k of record i: independent 64-bit values. */
static inline uint64_t hostile_draw(uint64_t seed, uint64_t index, uint64_t k) {
  return memstress_mix(seed ^ memstress_mix(0x686f7374696c65ull ^ (index << 8) ^ k));
}

/* A port no device claims: every port but the UART's, ucall's, the exception port and
 * the DMA device's (guest_abi.h "Ports"). */
static inline uint16_t hostile_free_port(uint64_t draw) {
  uint16_t port = (uint16_t)draw;
  if ((port >= MMV_PORT_SERIAL && port < MMV_PORT_SERIAL + 8) ||
      (port >= MMV_PORT_UCALL && port < MMV_PORT_DMA + 4)) {
    port = (uint16_t)(0x80u + (draw >> 16) % 0x70u); /* POST-code range, no device here */
  }
  return port;
}

static inline void hostile_record_at(uint64_t seed, const struct hostile_arena* arena,
                                     uint64_t index, struct hostile_record* r) {
  const uint64_t d0 = hostile_draw(seed, index, 0), d1 = hostile_draw(seed, index, 1);
  const uint64_t d2 = hostile_draw(seed, index, 2), d3 = hostile_draw(seed, index, 3);
  const uint64_t pick = d0 % 100;
  static const uint32_t widths[3] = {1, 2, 4};
  r->a = r->b = r->c = r->d = 0;
  r->variant = 0;
  if (pick < 14) {
    r->op = HOSTILE_OP_UCALL;
    r->variant = (uint32_t)((d0 >> 8) % HOSTILE_U_COUNT);
    switch (r->variant) {
      case HOSTILE_U_PRINT: r->a = d1 % (MMV_UCALL_TEXT_MAX + 1); r->b = d2; break;
      case HOSTILE_U_SYNC: r->a = d1; r->b = d2; break;
      case HOSTILE_U_REPORT: {
        const uint64_t kinds[4] = {d1 % 8, d1 % 8, d1, 0x484f0000ull + (d1 % 256) + 256};
        r->a = kinds[d2 % 4];
        if (r->a >= HOSTILE_REPORT_BASE && r->a <= HOSTILE_REPORT_LAST) r->a = 0;
        r->b = d3;
        break;
      }
      default: { /* a block in lane 3, 8-byte aligned, wholly inside it */
        const uint64_t room = arena->lane_pages * HOSTILE_PAGE - MMV_UCALL_STRIDE;
        r->a = arena->lanes_start + 3 * arena->lane_pages * HOSTILE_PAGE + (d1 % room) / 8 * 8;
        r->b = d2;
        break;
      }
    }
  } else if (pick < 28) {
    r->op = HOSTILE_OP_PORT_OUT;
    r->variant = (d0 >> 8) % 3 == 0 ? HOSTILE_P_SERIAL
                                    : (d0 >> 8) % 3 == 1 ? HOSTILE_P_NO_DEVICE : HOSTILE_P_STRING;
    if (r->variant == HOSTILE_P_SERIAL) {
      r->a = MMV_PORT_SERIAL + d1 % 8;
      r->b = d2 % 16 == 0 ? '\n' : 0x20 + d2 % 0x5f; /* text, so the console stays readable */
      r->c = 1;
    } else if (r->variant == HOSTILE_P_NO_DEVICE) {
      r->a = hostile_free_port(d1);
      r->b = d2;
      r->c = widths[d3 % 3];
    } else {
      r->a = MMV_PORT_SERIAL; /* rep outsb of d printable bytes from lane 2 */
      r->c = 1;
      r->d = 1 + d2 % 64;
      r->b = d3;
    }
  } else if (pick < 40) {
    r->op = HOSTILE_OP_PORT_IN;
    r->variant = (uint32_t)((d0 >> 8) % HOSTILE_P_COUNT);
    r->c = widths[d3 % 3];
    switch (r->variant) {
      case HOSTILE_P_SERIAL: r->a = MMV_PORT_SERIAL + d1 % 8; break;
      case HOSTILE_P_NO_DEVICE: r->a = hostile_free_port(d1); break;
      case HOSTILE_P_DMA: r->a = MMV_PORT_DMA; r->c = 4; break;
      case HOSTILE_P_UCALL: r->a = MMV_PORT_UCALL; r->c = 4; break;
      case HOSTILE_P_EXCEPTION: r->a = MMV_PORT_EXCEPTION; break;
      default: /* rep insb of d bytes into lane 2: every byte must be 0xff */
        r->a = hostile_free_port(d1);
        r->c = 1;
        r->d = 1 + d2 % 512; /* each byte is an exit */
        break;
    }
  } else if (pick < 52) {
    r->op = HOSTILE_OP_DMA;
    r->variant = (d0 >> 8) % 8 == 0 ? HOSTILE_DMA_SELF_LOOP : HOSTILE_DMA_CHAIN;
    r->a = r->variant == HOSTILE_DMA_SELF_LOOP ? 1 : 1 + d1 % HOSTILE_DMA_LANES;
    r->b = d2;
  } else if (pick < 55) {
    r->op = HOSTILE_OP_DOORBELL;
    r->variant = (uint32_t)((d0 >> 8) % HOSTILE_D_COUNT);
    r->c = 4;
    switch (r->variant) {
      case HOSTILE_D_WIDTH:
        r->b = d1 % 4;                      /* offset */
        r->c = r->b != 0 ? 1 : widths[d2 % 2]; /* 1 or 2 bytes at 0; a byte elsewhere */
        r->a = arena->desc_page;
        break;
      case HOSTILE_D_MISALIGNED:
        r->a = arena->desc_page + 8 * (1 + d1 % 7);
        break;
      default: {
        const uint64_t above = 0x100000000ull - arena->ram_size; /* 32-bit doorbells */
        r->a = (arena->ram_size + d1 % above) & ~(uint64_t)(MMV_DMA_DESC_ALIGN - 1);
        if (r->a < arena->ram_size) r->a = 0xffffffc0u;
        break;
      }
    }
  } else if (pick < 95) {
    r->op = HOSTILE_OP_STORE;
    static const uint64_t store_widths[5] = {1, 2, 4, 8, 64};
    r->c = store_widths[d2 % 5];
    const uint64_t span = r->c == 64 ? 64 * 8 : r->c;  /* a rep stosq writes 64 words */
    const uint64_t align = r->c == 64 ? 8 : r->c;
    const uint64_t bytes = arena->store_pages * HOSTILE_PAGE;
    r->a = arena->start + (d1 % (bytes - span + 1)) / align * align;
    r->b = d3;
  } else {
    r->op = HOSTILE_OP_BALLOON;
    const uint64_t pages = 1 + d1 % HOSTILE_MAX_BALLOON_PAGES;
    r->a = arena->start + (d2 % (arena->store_pages - pages + 1)) * HOSTILE_PAGE;
    r->b = pages * HOSTILE_PAGE;
  }
}

/* Descriptor j of a chain (record seed b): well-formed or one malformed case, with the
 * status the device must write. The caller links them (next) and places them. */
struct hostile_desc_plan {
  uint32_t magic, op, flags, want;
  uint64_t src, dst, len, value;
  int bad_next; /* 1: next must point outside RAM (ends the chain: last only) */
};

static inline void hostile_desc_at(const struct hostile_arena* arena, uint64_t chain_seed,
                                   uint32_t j, uint32_t last, struct hostile_desc_plan* p) {
  const uint64_t d = memstress_mix(chain_seed ^ (0x9e37ull * (j + 1)));
  const uint64_t lane = arena->lanes_start + j * arena->lane_pages * HOSTILE_PAGE;
  const uint64_t half = arena->lane_pages / 2 * HOSTILE_PAGE;
  const uint64_t len = 8 * (1 + (d >> 8) % (HOSTILE_MAX_DMA_PAGES * HOSTILE_PAGE / 8));
  const uint32_t E = MMV_DMA_FLAG_EXPECT_ERROR;
  p->magic = MMV_DMA_DESC_MAGIC;
  p->flags = 0;
  p->want = MMV_DMA_STATUS_OK;
  p->src = lane;
  p->dst = lane + half;
  p->len = len;
  p->value = memstress_mix(d);
  p->bad_next = 0;
  p->op = MMV_DMA_OP_COPY + (uint32_t)((d >> 20) % 3);
  if (d % 2 == 0) return; /* well-formed */
  uint32_t c = (uint32_t)((d >> 32) % 12);
  if (c == 11 && !last) c = 10;
  p->flags = E;
  switch (c) {
    case 0: p->op = MMV_DMA_OP_COPY; p->dst = arena->ram_size - HOSTILE_PAGE;
            p->len = 2 * HOSTILE_PAGE; p->want = MMV_DMA_STATUS_OUT_OF_RANGE; break;
    case 1: p->op = MMV_DMA_OP_FILL; p->dst = 1ull << 52;
            p->want = MMV_DMA_STATUS_OUT_OF_RANGE; break;
    case 2: p->len = 1ull << 40; p->want = MMV_DMA_STATUS_BAD_LENGTH; break;
    case 3: p->len = 0; p->want = MMV_DMA_STATUS_BAD_LENGTH; break;
    case 4: p->len = 12; p->want = MMV_DMA_STATUS_BAD_LENGTH; break;
    case 5: p->op = MMV_DMA_OP_COPY; p->src = ~0ull - 0xff7; p->len = HOSTILE_PAGE;
            p->want = MMV_DMA_STATUS_WRAP; break;
    case 6: p->op = MMV_DMA_OP_COPY; p->dst = p->src + 8 * (1 + (d >> 40) % 64);
            p->len = HOSTILE_PAGE; p->want = MMV_DMA_STATUS_OVERLAP; break;
    case 7: p->op = MMV_DMA_OP_CHECKSUM; p->src += 4; p->want = MMV_DMA_STATUS_MISALIGNED; break;
    case 8: p->magic = (uint32_t)(d >> 16) | 1u;
            if (p->magic == MMV_DMA_DESC_MAGIC) p->magic ^= 2u;
            p->want = MMV_DMA_STATUS_BAD_DESC; break;
    case 9: p->op = 4 + (uint32_t)((d >> 16) % 1000); p->want = MMV_DMA_STATUS_BAD_DESC; break;
    case 10: p->flags = E | (2u << ((d >> 16) % 30)); p->want = MMV_DMA_STATUS_BAD_DESC; break;
    default: p->bad_next = 1; p->want = MMV_DMA_STATUS_BAD_CHAIN; break;
  }
}

static inline uint32_t hostile_terminal_of(uint64_t seed) {
  return (uint32_t)(hostile_draw(seed, ~0ull, 0) % HOSTILE_T_COUNT);
}

#endif /* MMUVISOR_GUESTS_HOSTILE_HOSTILE_SHARED_H_ */
