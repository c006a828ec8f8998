/* hostile: a seeded hostile vCPU beside verifying ones (like syzkaller's SYZOS: a small
 * interpreter of command records). vCPU HOSTILE_VCPU runs records hostile_record_at(seed,
 * arena, 0, 1, ...) — valid ucalls with hostile contents, OUTs and INs on device ports and
 * ports with no device, DMA chains of well-formed and malformed descriptors, doorbells the
 * device cannot take, stores into its arena (which the host reclaims, migrates, protects
 * and OOM-reaps like all guest RAM) and balloon calls — until the VMM sets the memstress
 * stop word or every verifier has finished. Then, once every verifier has finished, it runs
 * the seed's terminal record (a malformed ucall, an exception, a touch outside RAM, or a
 * plain return), which the VMM must report as exactly that.
 *
 * Every other vCPU runs memstress unchanged (verifier.c) and verifies its own data: the
 * verdict's proof that the hostile vCPU did not reach it.
 *
 * The hostile vCPU checks what the ABI promises about its own actions (a store reads back,
 * now and at a later sweep; a ballooned page reads zero; a port with no device reads all
 * ones; each descriptor gets its status; a well-formed one does its work) and reports any
 * failure (HOSTILE_REPORT_CHECK_FAILED), its counts (HOSTILE_REPORT_COUNTS*), and every
 * device error it causes that no descriptor flag can request (HOSTILE_REPORT_ANNOUNCE).
 * CPL3, no interrupts; globals are shared with the verifiers (verifiers_done only). */
#include "hostile/hostile_shared.h"
#include "mmuvisor/guest_runtime.h"

int memstress_main(uint32_t vcpu, uint64_t nr_args); /* verifier.c */

static uint32_t verifiers_done; /* __atomic: verifying vCPUs that have finished */

struct shadow { /* the last store that began in a store page */
  uint64_t gpa, width, value; /* width 0: none */
};

struct state {
  uint64_t seed, index;
  uint32_t nr_vcpus, flags;
  struct hostile_arena arena;
  uint64_t records, ucalls, outs, ins, chains, stores, balloons, descs, sweeps, failures;
  struct shadow* shadow; /* store_pages entries (shadow_table) */
};

static struct shadow shadow_table[HOSTILE_MAX_STORE_PAGES];

static void report(uint64_t kind, uint64_t a, uint64_t b, uint64_t c, uint64_t d, uint64_t e) {
  const uint64_t args[6] = {kind, a, b, c, d, e};
  mmv_ucall(MMV_UCALL_REPORT, args, 0);
}

static void check_failed(struct state* s, uint32_t what, uint64_t where, uint64_t want,
                         uint64_t got) {
  if (s->failures++ < HOSTILE_CHECKS_REPORTED) {
    report(HOSTILE_REPORT_CHECK_FAILED, s->index, what, where, want, got);
  }
}

/* The stop word, or every verifier finished (and, in a --rounds run, enough records). */
static int stopping(const struct state* s) {
  const volatile struct mmv_boot_info* bi = mmv_boot_info();
  if (bi->args[MMV_MEMSTRESS_ARG_STOP] != 0) return 1;
  if (__atomic_load_n(&verifiers_done, __ATOMIC_ACQUIRE) + 1 < s->nr_vcpus) return 0;
  return bi->args[MMV_MEMSTRESS_ARG_ROUNDS] == 0 || s->records >= HOSTILE_MIN_RECORDS_WITH_ROUNDS;
}

/* ---- port I/O with a run-time port and width ---- */
static void port_out(uint16_t port, uint64_t width, uint32_t v) {
  if (width == 1) __asm__ volatile("outb %b0, %w1" : : "a"(v), "Nd"(port) : "memory");
  else if (width == 2) __asm__ volatile("outw %w0, %w1" : : "a"(v), "Nd"(port) : "memory");
  else __asm__ volatile("outl %0, %w1" : : "a"(v), "Nd"(port) : "memory");
}

static uint32_t port_in(uint16_t port, uint64_t width) {
  uint32_t v = 0;
  if (width == 1) {
    uint8_t b;
    __asm__ volatile("inb %w1, %b0" : "=a"(b) : "Nd"(port) : "memory");
    v = b;
  } else if (width == 2) {
    uint16_t w;
    __asm__ volatile("inw %w1, %w0" : "=a"(w) : "Nd"(port) : "memory");
    v = w;
  } else {
    __asm__ volatile("inl %w1, %0" : "=a"(v) : "Nd"(port) : "memory");
  }
  return v;
}

static uint64_t lane(const struct state* s, uint64_t j) {
  return s->arena.lanes_start + j * s->arena.lane_pages * HOSTILE_PAGE;
}

/* ---- UCALL ---- */
static void op_ucall(struct state* s, const struct hostile_record* r) {
  struct mmv_ucall* own = (struct mmv_ucall*)(uintptr_t)(MMV_UCALL_GPA +
                                                         HOSTILE_VCPU * MMV_UCALL_STRIDE);
  struct mmv_ucall* uc = r->variant == HOSTILE_U_FOREIGN ? (struct mmv_ucall*)(uintptr_t)r->a
                                                         : own;
  uint32_t cmd = MMV_UCALL_PRINT;
  for (int i = 0; i < 6; ++i) uc->args[i] = memstress_mix(r->b + (uint64_t)i);
  switch (r->variant) {
    case HOSTILE_U_PRINT: { /* printable bytes, up to the whole field without a NUL */
      for (uint64_t i = 0; i < MMV_UCALL_TEXT_MAX; ++i) {
        const uint64_t c = memstress_mix(r->b ^ i) % 0x60;
        uc->text[i] = i < r->a ? (char)(c == 0x5f ? '\n' : 0x20 + c) : '\0';
      }
      break;
    }
    case HOSTILE_U_SYNC: cmd = MMV_UCALL_SYNC; uc->args[0] = r->a; break;
    case HOSTILE_U_REPORT: cmd = MMV_UCALL_REPORT; uc->args[0] = r->a; break;
    default: mmv_snprintf(uc->text, MMV_UCALL_TEXT_MAX, "hostile: record %lu through a block "
                          "at 0x%lx", (unsigned long)s->index, (unsigned long)r->a);
  }
  uc->magic = MMV_UCALL_MAGIC;
  uc->cmd = cmd;
  mmv_outl(MMV_PORT_UCALL, (uint32_t)(uintptr_t)uc);
  s->ucalls++;
}

/* ---- PORT OUT / IN ---- */
static void op_port_out(struct state* s, const struct hostile_record* r) {
  if (r->variant == HOSTILE_P_STRING) {
    char* text = (char*)(uintptr_t)lane(s, 2);
    for (uint64_t i = 0; i < r->d; ++i) text[i] = (char)(0x20 + memstress_mix(r->b ^ i) % 0x5f);
    const char* p = text;
    uint64_t n = r->d;
    __asm__ volatile("rep outsb" : "+S"(p), "+c"(n) : "d"((uint16_t)r->a) : "memory");
    port_out(MMV_PORT_SERIAL, 1, '\n');
  } else {
    port_out((uint16_t)r->a, r->c, (uint32_t)r->b);
  }
  s->outs++;
}

static void op_port_in(struct state* s, const struct hostile_record* r) {
  const uint32_t ones = r->c == 1 ? 0xffu : r->c == 2 ? 0xffffu : 0xffffffffu;
  if (r->variant == HOSTILE_P_STRING) {
    volatile uint8_t* buf = (volatile uint8_t*)(uintptr_t)lane(s, 2);
    for (uint64_t i = 0; i < r->d; ++i) buf[i] = 0;
    uint8_t* p = (uint8_t*)(uintptr_t)buf;
    uint64_t n = r->d;
    __asm__ volatile("rep insb" : "+D"(p), "+c"(n) : "d"((uint16_t)r->a) : "memory");
    for (uint64_t i = 0; i < r->d; ++i) {
      if (buf[i] != 0xff) {
        check_failed(s, HOSTILE_CHECK_PORT_ALL_ONES, r->a, 0xff, buf[i]);
        break;
      }
    }
  } else {
    const uint32_t v = port_in((uint16_t)r->a, r->c);
    if ((r->variant == HOSTILE_P_NO_DEVICE || r->variant == HOSTILE_P_EXCEPTION) && v != ones) {
      check_failed(s, HOSTILE_CHECK_PORT_ALL_ONES, r->a, ones, v);
    }
    if (r->variant == HOSTILE_P_UCALL && v != 0) {
      check_failed(s, HOSTILE_CHECK_PORT_ALL_ONES, r->a, 0, v);
    }
  }
  s->ins++;
}

/* ---- DMA ---- */
static uint32_t dma_busy(void) { return port_in(MMV_PORT_DMA, 4); }

/* Waits for a status other than PENDING (or for the run to stop: 0 = abandoned). */
static uint32_t wait_status(const struct state* s, volatile struct mmv_dma_desc* d) {
  while (d->status == MMV_DMA_STATUS_PENDING) {
    if (stopping(s)) return MMV_DMA_STATUS_PENDING;
    mmv_pause();
  }
  return d->status;
}

static void wait_idle(const struct state* s) {
  while (dma_busy() != 0 && !stopping(s)) mmv_pause();
}

static uint64_t pattern(uint64_t seed, uint64_t k) { return memstress_mix(seed ^ (k << 1)); }

static void op_dma(struct state* s, const struct hostile_record* r) {
  volatile struct mmv_dma_desc* d = (volatile struct mmv_dma_desc*)(uintptr_t)s->arena.desc_page;
  struct hostile_desc_plan plans[HOSTILE_DMA_LANES];
  const uint32_t n = (uint32_t)r->a;
  for (uint32_t j = 0; j < n; ++j) {
    struct hostile_desc_plan* p = &plans[j];
    hostile_desc_at(&s->arena, r->b, j, j + 1 == n, p);
    if (r->variant == HOSTILE_DMA_SELF_LOOP) {
      p->magic = MMV_DMA_DESC_MAGIC;
      p->op = MMV_DMA_OP_CHECKSUM;
      p->src = lane(s, 0);
      p->len = HOSTILE_PAGE;
      p->flags = MMV_DMA_FLAG_EXPECT_ERROR;
      p->want = MMV_DMA_STATUS_BAD_CHAIN;
      p->bad_next = 0;
    }
    if (p->want == MMV_DMA_STATUS_OK) { /* the source pattern, and a stale destination */
      volatile uint64_t* src = (volatile uint64_t*)(uintptr_t)p->src;
      volatile uint64_t* dst = (volatile uint64_t*)(uintptr_t)p->dst;
      for (uint64_t k = 0; k < p->len / 8; ++k) {
        src[k] = pattern(r->b + j, k);
        dst[k] = ~pattern(r->b + j, k);
      }
    }
    volatile struct mmv_dma_desc* x = &d[j];
    x->magic = p->magic;
    x->op = p->op;
    x->src = p->src;
    x->dst = p->dst;
    x->len = p->len;
    x->value = p->value;
    x->result = 0;
    x->next = p->bad_next ? s->arena.ram_size + MMV_DMA_DESC_ALIGN
              : r->variant == HOSTILE_DMA_SELF_LOOP ? s->arena.desc_page
              : j + 1 < n ? s->arena.desc_page + (j + 1) * MMV_DMA_DESC_ALIGN : 0;
    x->flags = p->flags;
    x->status = MMV_DMA_STATUS_PENDING;
  }
  mmv_outl(MMV_PORT_DMA, (uint32_t)s->arena.desc_page);
  s->chains++;
  for (uint32_t j = 0; j < n; ++j) {
    if (wait_status(s, &d[j]) == MMV_DMA_STATUS_PENDING) return; /* the run is stopping */
  }
  wait_idle(s); /* a self-linked descriptor gets OK on each pass, BAD_CHAIN on the last */
  if (stopping(s)) return;
  for (uint32_t j = 0; j < n; ++j) {
    const struct hostile_desc_plan* p = &plans[j];
    s->descs++;
    const uint32_t status = d[j].status;
    if (status != p->want) {
      check_failed(s, HOSTILE_CHECK_DMA_STATUS, s->arena.desc_page + j * MMV_DMA_DESC_ALIGN,
                   p->want, status);
      continue;
    }
    if (p->want != MMV_DMA_STATUS_OK) continue;
    const volatile uint64_t* src = (const volatile uint64_t*)(uintptr_t)p->src;
    const volatile uint64_t* dst = (const volatile uint64_t*)(uintptr_t)p->dst;
    uint64_t sum = 0;
    for (uint64_t k = 0; k < p->len / 8; ++k) {
      const uint64_t want = pattern(r->b + j, k);
      if (p->op == MMV_DMA_OP_CHECKSUM) {
        sum = (sum ^ src[k]) * MMV_DMA_CHECKSUM_PRIME + k;
        continue;
      }
      const uint64_t expect = p->op == MMV_DMA_OP_COPY ? want : p->value;
      if (dst[k] != expect) {
        check_failed(s, HOSTILE_CHECK_DMA_DATA, p->dst + 8 * k, expect, dst[k]);
        break;
      }
    }
    if (p->op == MMV_DMA_OP_CHECKSUM && d[j].result != sum) {
      check_failed(s, HOSTILE_CHECK_DMA_DATA, p->src, sum, d[j].result);
    }
  }
}

static void op_doorbell(struct state* s, const struct hostile_record* r) {
  report(HOSTILE_REPORT_ANNOUNCE, 1, 0, 0, 0, 0);
  port_out((uint16_t)(MMV_PORT_DMA + r->b), r->c, (uint32_t)r->a);
  s->outs++;
  wait_idle(s);
}

/* ---- STORE / BALLOON, and the shadow of the stores ---- */
static uint64_t span_of(uint64_t width) { return width == 64 ? 64 * 8 : width; }

static uint64_t read_at(uint64_t gpa, uint64_t width) {
  switch (width) {
    case 1: return *(volatile uint8_t*)(uintptr_t)gpa;
    case 2: return *(volatile uint16_t*)(uintptr_t)gpa;
    case 4: return *(volatile uint32_t*)(uintptr_t)gpa;
    default: return *(volatile uint64_t*)(uintptr_t)gpa;
  }
}

static uint64_t truncated(uint64_t value, uint64_t width) {
  return width >= 8 ? value : value & ((1ull << (8 * width)) - 1);
}

/* 0 when [gpa, gpa + span) still holds the shadow's value; else the first word found. */
static int shadow_holds(const struct shadow* e, uint64_t* found) {
  if (e->width == 64) {
    for (uint64_t k = 0; k < 64; ++k) {
      const uint64_t v = read_at(e->gpa + 8 * k, 8);
      if (v != e->value) {
        *found = v;
        return 0;
      }
    }
    return 1;
  }
  *found = read_at(e->gpa, e->width);
  return *found == truncated(e->value, e->width);
}

/* Forgets every shadow entry overlapping [gpa, gpa + len): entries begin in their page
 * and span at most into the next. */
static void shadow_forget(struct state* s, uint64_t gpa, uint64_t len) {
  const uint64_t first = (gpa - s->arena.start) / HOSTILE_PAGE;
  const uint64_t last = (gpa + len - 1 - s->arena.start) / HOSTILE_PAGE;
  for (uint64_t p = first == 0 ? 0 : first - 1; p <= last && p < s->arena.store_pages; ++p) {
    struct shadow* e = &s->shadow[p];
    if (e->width != 0 && e->gpa < gpa + len && gpa < e->gpa + span_of(e->width)) e->width = 0;
  }
}

static void op_store(struct state* s, const struct hostile_record* r) {
  s->stores++;
  uint64_t gpa = r->a;
  const int hit_verifier = (s->flags & HOSTILE_F_HIT_VERIFIER) != 0;
  if (hit_verifier) { /* test only: the next vCPU's work pages, same offset */
    struct memstress_layout victim = {0};
    memstress_layout_of(mmv_boot_info()->free_start, mmv_boot_info()->free_end, s->nr_vcpus,
                        HOSTILE_VCPU + 1, mmv_boot_info()->args[MMV_MEMSTRESS_ARG_PAGES],
                        &victim);
    gpa = victim.work_start + (gpa - s->arena.start) % (victim.work_pages * HOSTILE_PAGE -
                                                        span_of(r->c));
    gpa &= ~7ull;
  }
  if (r->c == 64) {
    void* p = (void*)(uintptr_t)gpa;
    uint64_t n = 64;
    __asm__ volatile("rep stosq" : "+D"(p), "+c"(n) : "a"(r->b) : "memory");
  } else {
    switch (r->c) {
      case 1: *(volatile uint8_t*)(uintptr_t)gpa = (uint8_t)r->b; break;
      case 2: *(volatile uint16_t*)(uintptr_t)gpa = (uint16_t)r->b; break;
      case 4: *(volatile uint32_t*)(uintptr_t)gpa = (uint32_t)r->b; break;
      default: *(volatile uint64_t*)(uintptr_t)gpa = r->b; break;
    }
  }
  if (hit_verifier) return;
  const struct shadow e = {gpa, r->c, r->b};
  uint64_t found = 0;
  if (!shadow_holds(&e, &found)) {
    check_failed(s, HOSTILE_CHECK_STORE_READBACK, gpa, truncated(r->b, r->c == 64 ? 8 : r->c),
                 found);
  }
  shadow_forget(s, gpa, span_of(r->c));
  s->shadow[(gpa - s->arena.start) / HOSTILE_PAGE] = e;
}

static void sweep(struct state* s) {
  s->sweeps++;
  for (uint64_t p = 0; p < s->arena.store_pages; ++p) {
    const struct shadow* e = &s->shadow[p];
    uint64_t found = 0;
    if (e->width != 0 && !shadow_holds(e, &found)) {
      const uint64_t width = e->width == 64 ? 8 : e->width;
      check_failed(s, HOSTILE_CHECK_STORE_KEPT, e->gpa, truncated(e->value, width), found);
      s->shadow[p].width = 0;
    }
  }
}

static void op_balloon(struct state* s, const struct hostile_record* r) {
  mmv_balloon(r->a, r->b);
  s->balloons++;
  shadow_forget(s, r->a, r->b);
  for (uint64_t off = 0; off < r->b; off += HOSTILE_PAGE) {
    const uint64_t v = read_at(r->a + off + (memstress_mix(r->a + off) % 512) * 8, 8);
    if (v != 0) {
      check_failed(s, HOSTILE_CHECK_BALLOON_ZERO, r->a + off, 0, v);
      break;
    }
  }
}

static void send_counts(const struct state* s) {
  report(HOSTILE_REPORT_COUNTS, s->records, s->ucalls, s->outs, s->ins, s->chains);
  report(HOSTILE_REPORT_COUNTS2, s->stores, s->balloons, s->descs, s->sweeps, s->failures);
}

/* ---- the terminal record ---- */
static void terminal(const struct state* s, uint32_t t) {
  struct mmv_ucall* uc = (struct mmv_ucall*)(uintptr_t)(MMV_UCALL_GPA +
                                                        HOSTILE_VCPU * MMV_UCALL_STRIDE);
  const uint64_t d = hostile_draw(s->seed, ~0ull, 1);
  uc->magic = MMV_UCALL_MAGIC;
  uc->cmd = MMV_UCALL_PRINT;
  uc->text[0] = '\0';
  switch (t) {
    case HOSTILE_T_UCALL_BAD_MAGIC:
      uc->magic = (uint32_t)d | 1u;
      if (uc->magic == MMV_UCALL_MAGIC) uc->magic ^= 2u;
      mmv_outl(MMV_PORT_UCALL, (uint32_t)(uintptr_t)uc);
      break;
    case HOSTILE_T_UCALL_UNKNOWN_CMD:
      uc->cmd = MMV_UCALL_REPORT + 1 + (uint32_t)(d % 0xfffffff0u);
      mmv_outl(MMV_PORT_UCALL, (uint32_t)(uintptr_t)uc);
      break;
    case HOSTILE_T_UCALL_MISALIGNED:
      mmv_outl(MMV_PORT_UCALL, (uint32_t)(uintptr_t)uc + 1 + (uint32_t)(d % 7));
      break;
    case HOSTILE_T_UCALL_OUTSIDE_RAM:
      mmv_outl(MMV_PORT_UCALL, (uint32_t)((s->arena.ram_size + 8 * (d % 4096)) & 0xfffffff8u));
      break;
    case HOSTILE_T_UCALL_SHORT_OUT:
      mmv_outb(MMV_PORT_UCALL, (uint8_t)d);
      break;
    case HOSTILE_T_BALLOON_OUTSIDE:
      mmv_balloon(s->arena.ram_size - HOSTILE_PAGE, 2 * HOSTILE_PAGE);
      break;
    case HOSTILE_T_TOUCH_OUTSIDE_RAM:
      (void)*(volatile uint64_t*)(uintptr_t)(s->arena.ram_size + 8 * (d % 512));
      break;
    case HOSTILE_T_TOUCH_PAGE_ZERO:
      (void)*(volatile uint64_t*)(uintptr_t)(8 * (d % 512));
      break;
    case HOSTILE_T_NONCANONICAL:
      (void)*(volatile uint64_t*)(uintptr_t)(0x8000000000000000ull | (d & 0x7ffffffffff8ull));
      break;
    case HOSTILE_T_UD2:
      __asm__ volatile("ud2");
      break;
    case HOSTILE_T_HLT:
      __asm__ volatile("hlt");
      break;
    case HOSTILE_T_EXCEPTION_PORT:
      mmv_outb(MMV_PORT_EXCEPTION, (uint8_t)d);
      break;
    default:
      break;
  }
}

static int hostile_main(uint32_t nr_vcpus) {
  const volatile struct mmv_boot_info* bi = mmv_boot_info();
  struct state s = {0};
  s.seed = bi->seed;
  s.nr_vcpus = nr_vcpus;
  s.flags = bi->flags;
  s.shadow = shadow_table;
  if (hostile_arena_of(bi->ram_size, bi->free_start, bi->free_end, nr_vcpus,
                       bi->args[MMV_MEMSTRESS_ARG_PAGES], &s.arena) != 0) {
    mmv_print("hostile: no arena in [0x%lx, 0x%lx) for %u vCPUs", (unsigned long)bi->free_start,
              (unsigned long)bi->free_end, nr_vcpus);
    return 2;
  }
  for (s.index = 0; !stopping(&s); ++s.index) {
    struct hostile_record r;
    hostile_record_at(s.seed, &s.arena, s.index, &r);
    switch (r.op) {
      case HOSTILE_OP_UCALL: op_ucall(&s, &r); break;
      case HOSTILE_OP_PORT_OUT: op_port_out(&s, &r); break;
      case HOSTILE_OP_PORT_IN: op_port_in(&s, &r); break;
      case HOSTILE_OP_DMA: op_dma(&s, &r); break;
      case HOSTILE_OP_DOORBELL: op_doorbell(&s, &r); break;
      case HOSTILE_OP_STORE: op_store(&s, &r); break;
      default: op_balloon(&s, &r); break;
    }
    s.records++;
    if (s.records % HOSTILE_SWEEP_EVERY == 0) {
      sweep(&s);
      send_counts(&s);
    }
  }
  sweep(&s);
  send_counts(&s);
  /* The terminal record stops every vCPU: only once each verifier has finished. */
  while (__atomic_load_n(&verifiers_done, __ATOMIC_ACQUIRE) + 1 < nr_vcpus) mmv_pause();
  const uint32_t t = hostile_terminal_of(s.seed);
  report(HOSTILE_REPORT_TERMINAL, s.index, t, 0, 0, 0);
  terminal(&s, t);
  return 0;
}

int mmv_main(uint32_t vcpu, uint64_t nr_args) {
  const uint32_t nr_vcpus = mmv_boot_info()->nr_vcpus;
  if (vcpu == HOSTILE_VCPU) return hostile_main(nr_vcpus);
  const int code = memstress_main(vcpu, nr_args);
  report(HOSTILE_REPORT_VERIFIER_DONE, (uint64_t)code, 0, 0, 0, 0);
  __atomic_add_fetch(&verifiers_done, 1, __ATOMIC_RELEASE);
  return code;
}
