/* The contract between mmuvisor guests and the VMM: port numbers, the ucall block, the boot
 * info and the guest-physical memory layout. Plain C so both freestanding guests and the C++
 * VMM can include it; every field has a fixed width and the layout never depends on the
 * compiler. This header is the one source of truth for the numbers below; the READMEs
 * point here (guests/README.md is the guide).
 *
 * Guest-physical layout (all guests; the VMM builds what sits below 1 MiB and owns it: a
 * guest writes only its ucall block, its image, free memory and its stack):
 *   [0x0000, 0x1000)    never mapped in guest page tables: a null dereference faults
 *   [0x1000, 0x2000)    GDT and one TSS per vCPU built by the VMM
 *   [0x2000, 0x3000)    IDT: long-mode guests get gates for vectors 0-31 to the exception
 *                       stubs below (real mode: unused)
 *   [0x3000, 0x3800)    struct mmv_boot_info at its start (sizeof is far below 2 KiB), the
 *                       rest reserved; read-only for the guest by convention
 *   [0x3800, 0x4000)    exception stubs the VMM installs behind the IDT: each OUTs its
 *                       vector to MMV_PORT_EXCEPTION, so a guest exception (#PF, #GP, #UD,
 *                       ...) exits to the VMM with its frame and is reported as a crash
 *                       naming the exception, instead of triple-faulting
 *   [0x4000, 0x8000)    per-vCPU ucall blocks (struct mmv_ucall, MMV_UCALL_STRIDE each)
 *   [0x8000, 0x10000)   real-mode guests are linked and loaded here (CS base 0);
 *                       long-mode guests: [0x8000, 0xa001) is the VMM's I/O permission
 *                       bitmap (every port granted, then 0xff), shared by every TSS
 *   [0x10000, 0x100000) identity page tables built by the VMM (2 MiB pages, U bit set)
 *   [0x100000, ...)     long-mode guest ELF images are linked and loaded here
 *   [free_start, free_end)  memory the guest may use as it likes (see mmv_boot_info)
 *   [free_end, ram_end) per-vCPU stack regions, MMV_STACK_SIZE each, vCPU 0 highest: vCPU i
 *                       owns [ram_end - (i+1)*MMV_STACK_SIZE, ram_end - i*MMV_STACK_SIZE);
 *                       its lowest MMV_EXCEPTION_STACK_SIZE bytes are the ring-0 stack the
 *                       CPU switches to on an exception (TSS.RSP0), so the guest's own
 *                       stack is the MMV_STACK_SIZE - MMV_EXCEPTION_STACK_SIZE above it
 * Long-mode guests start at the ELF entry at CPL3 with RFLAGS.IOPL = 0 unless the VMM is
 * told to enter at CPL0; port I/O from CPL3 is allowed by the TSS I/O bitmap (never by
 * IOPL, which kvm_pvm ignores for guest ring 3). Registers at entry: RDI = vCPU index,
 * RSI = mmv_boot_info.nr_args (how many run arguments were given), RSP = top of that vCPU's
 * stack region - 8 (16-byte aligned minus 8, as after a call), interrupts off (IF = 0).
 */
#ifndef MMUVISOR_GUEST_ABI_H_
#define MMUVISOR_GUEST_ABI_H_

#ifndef __ASSEMBLER__ /* the C part; assembly files see no declarations */
#ifdef __cplusplus
#include <cstddef>
#include <cstdint>
extern "C" {
#else
#include <stdint.h>
#endif

/* Ports. Every port is an exit to the VMM from any ring (the TSS I/O bitmap grants all). */
#define MMV_PORT_SERIAL 0x3f8u  /* 8250 UART, THR at +0, LSR at +5 */
#define MMV_PORT_UCALL 0x0e00u  /* 32-bit OUT: guest-physical address of a struct mmv_ucall */
#define MMV_PORT_EXCEPTION 0x0e08u /* 8-bit OUT by a VMM exception stub: the vector */
#define MMV_PORT_DMA 0x0e10u    /* 32-bit OUT: guest-physical address of a DMA descriptor */

#define MMV_GDT_GPA 0x1000u
#define MMV_IDT_GPA 0x2000u
#define MMV_BOOT_INFO_GPA 0x3000u
#define MMV_EXCEPTION_STUB_GPA 0x3800u
#define MMV_UCALL_GPA 0x4000u
#define MMV_UCALL_STRIDE 512u
#define MMV_UCALL_MAX_VCPUS 32u
#define MMV_REAL_MODE_LOAD_GPA 0x8000u
#define MMV_IO_BITMAP_GPA 0x8000u /* long mode only: 8 KiB bitmap + one 0xff byte */
#define MMV_PAGE_TABLE_GPA 0x10000u
#define MMV_PAGE_TABLE_END_GPA 0x100000u
#define MMV_IMAGE_GPA 0x100000u
#define MMV_STACK_SIZE 0x10000u           /* per-vCPU stack region */
#define MMV_EXCEPTION_STACK_SIZE 0x1000u /* its lowest part: the ring-0 stack (TSS.RSP0) */

/* Real-mode guests: the image lies in [MMV_REAL_MODE_LOAD_GPA, MMV_REAL_MODE_LOAD_END_GPA),
 * entered with CS = DS = ES = SS = 0, IP = ELF entry, SP = MMV_REAL_MODE_STACK_TOP (the stack
 * is [MMV_REAL_MODE_LOAD_END_GPA, 0x10000)). One vCPU only. They use vCPU 0's ucall block
 * (32-bit OUT with an operand-size prefix) and may end with DONE or with HLT (ring 0). */
#define MMV_REAL_MODE_LOAD_END_GPA 0xf000u
#define MMV_REAL_MODE_STACK_TOP 0xfff0u

/* The boot mode travels with the image: an ELF PT_NOTE with name "mmuvisor" (n_namesz 9,
 * NUL included), type MMV_ELF_NOTE_BOOT_MODE and a 4-byte descriptor holding one of
 * MMV_BOOT_MODE_*. No such note means MMV_BOOT_MODE_LONG64. */
#define MMV_ELF_NOTE_NAME "mmuvisor"
#define MMV_ELF_NOTE_BOOT_MODE 1u
#define MMV_BOOT_MODE_LONG64 0u
#define MMV_BOOT_MODE_REAL16 1u

#define MMV_BOOT_INFO_MAGIC 0x4f4f42564d4d4d00ull /* "\0MMMVBOO" */

#define MMV_BOOT_INFO_MAX_ARGS 8u

/* Written by the VMM before any vCPU runs. `mmuvisor run GUEST [--seed N]
 * [--boot-flags N] -- ARG...` fills seed, flags, args[] and nr_args; every other field is
 * the VMM's. Fields a run does not set are 0. */
struct mmv_boot_info {
  uint64_t magic;       /* MMV_BOOT_INFO_MAGIC */
  uint64_t ram_size;    /* bytes of guest RAM starting at guest-physical 0 */
  uint64_t free_start;  /* first free byte after the image, page aligned */
  uint64_t free_end;    /* end of free memory (start of the stacks), page aligned */
  uint32_t nr_vcpus;
  uint32_t flags;       /* guest-defined bits (`--boot-flags`) */
  uint64_t seed;        /* workload seed (`--seed`) */
  uint64_t args[MMV_BOOT_INFO_MAX_ARGS]; /* guest-specific parameters (run arguments) */
  uint32_t nr_args;     /* how many of args[] the user gave (the rest are 0); also in RSI */
  uint32_t reserved;    /* 0 */
};

/* ucall commands. A guest fills its own block (MMV_UCALL_GPA + index * MMV_UCALL_STRIDE)
 * and writes its guest-physical address to MMV_PORT_UCALL with a 32-bit OUT. */
enum mmv_ucall_cmd {
  MMV_UCALL_PRINT = 1,   /* text: a line to print */
  MMV_UCALL_SYNC = 2,    /* args[0]: stage; args[1..5]: values to report */
  MMV_UCALL_ASSERT = 3,  /* text: "file:line: expression"; args[0]: line; args[1..2]: values */
  MMV_UCALL_DONE = 4,    /* args[0]: exit code (0 = success) */
  MMV_UCALL_BALLOON = 5, /* args[0]: gpa, args[1]: length: give pages back to the host */
  MMV_UCALL_REPORT = 6,  /* args[0]: kind, args[1..5]: values (progress, mismatches, ...) */
  MMV_UCALL_SERIAL = 7,  /* args[0]: n <= MMV_UCALL_TEXT_MAX; text[0..n): bytes for COM1's
                          * console, as if written to its THR one by one (whatever LCR's
                          * divisor-latch bit says), in one exit */
};

#define MMV_UCALL_MAGIC 0x55434c4cu /* "UCLL" */
#define MMV_UCALL_TEXT_MAX 192u

struct mmv_ucall {
  uint32_t magic;  /* MMV_UCALL_MAGIC */
  uint32_t cmd;    /* enum mmv_ucall_cmd */
  uint64_t args[6];
  char text[MMV_UCALL_TEXT_MAX]; /* NUL-terminated; the VMM never reads past the end */
};

/* ---- DMA engine (MMV_PORT_DMA) ------------------------------------------------------
 * The guest builds a chain of descriptors in its own memory, sets each status to
 * MMV_DMA_STATUS_PENDING and writes the guest-physical address of the first one to
 * MMV_PORT_DMA with a 32-bit OUT (one exit per chain). The OUT returns at once: a device
 * thread executes the chain in order and writes each status (and, for CHECKSUM, result)
 * back; the guest polls the statuses. Descriptors are MMV_DMA_DESC_ALIGN-aligned (so one
 * never straddles a page) and lie inside guest RAM; `next` is the gpa of the next
 * descriptor or 0; a chain holds at most MMV_DMA_MAX_CHAIN descriptors.
 * Data rules: len in (0, MMV_DMA_MAX_LEN], a multiple of 8; src/dst 8-byte aligned;
 * [addr, addr + len) must not wrap and must lie inside guest RAM; COPY ranges must not
 * overlap. Any violation leaves memory untouched and sets an error status.
 *   COPY:     dst[0..len) = src[0..len)
 *   FILL:     every 64-bit word of dst[0..len) = value
 *   CHECKSUM: result = mmv_dma_checksum over src[0..len) (see below)
 * A guest that sends a malformed descriptor on purpose sets MMV_DMA_FLAG_EXPECT_ERROR in
 * it: the VMM then counts the error as requested, not as a device failure. */
#define MMV_DMA_DESC_MAGIC 0x31414d44u /* "DMA1" */
#define MMV_DMA_DESC_ALIGN 64u
#define MMV_DMA_MAX_LEN 0x100000u /* 1 MiB per descriptor */
#define MMV_DMA_MAX_CHAIN 64u

#define MMV_DMA_OP_COPY 1u
#define MMV_DMA_OP_FILL 2u
#define MMV_DMA_OP_CHECKSUM 3u

#define MMV_DMA_FLAG_EXPECT_ERROR 0x1u
#define MMV_DMA_FLAGS_KNOWN 0x1u

#define MMV_DMA_STATUS_PENDING 0u      /* set by the guest before the OUT */
#define MMV_DMA_STATUS_OK 1u
#define MMV_DMA_STATUS_BAD_DESC 2u     /* magic, op or flags unknown */
#define MMV_DMA_STATUS_BAD_LENGTH 3u   /* zero, > MMV_DMA_MAX_LEN, or not a multiple of 8 */
#define MMV_DMA_STATUS_MISALIGNED 4u   /* src or dst not 8-byte aligned */
#define MMV_DMA_STATUS_WRAP 5u         /* addr + len wraps around 2^64 */
#define MMV_DMA_STATUS_OUT_OF_RANGE 6u /* [addr, addr + len) leaves guest RAM */
#define MMV_DMA_STATUS_OVERLAP 7u      /* COPY source and destination overlap */
#define MMV_DMA_STATUS_BAD_CHAIN 8u    /* next misaligned, outside RAM, or chain too long */
#define MMV_DMA_STATUS_FAULT 9u        /* the device could not reach guest memory */

struct mmv_dma_desc {
  uint32_t magic;  /* MMV_DMA_DESC_MAGIC */
  uint32_t op;     /* MMV_DMA_OP_* */
  uint64_t src;    /* gpa: COPY, CHECKSUM */
  uint64_t dst;    /* gpa: COPY, FILL */
  uint64_t len;    /* bytes */
  uint64_t value;  /* FILL: the 64-bit word written */
  uint64_t result; /* CHECKSUM: written by the device */
  uint64_t next;   /* gpa of the next descriptor, 0 ends the chain */
  uint32_t flags;  /* MMV_DMA_FLAG_* */
  uint32_t status; /* MMV_DMA_STATUS_*: PENDING from the guest, the outcome from the VMM */
};

/* CHECKSUM: over the 64-bit little-endian words w[i] of the range,
 *   sum = 0; for i: sum = (sum ^ w[i]) * 0x100000001b3 + i   (mod 2^64). */
#define MMV_DMA_CHECKSUM_PRIME 0x100000001b3ull

/* ---- REPORT kinds (MMV_UCALL_REPORT args[0]) ----------------------------------------- */
/* args[1] round, [2] pages verified so far by this vCPU, [3] digest of the sequence of
 * pages it verified so far, [4] DMA descriptors completed, [5] mismatches found so far. */
#define MMV_REPORT_PROGRESS 1u
/* args[1] gpa, [2] expected, [3] found, [4] round, [5] MMV_MISMATCH_* source. */
#define MMV_REPORT_MISMATCH 2u
/* args[1] descriptor gpa, [2] status, [3] op, [4] round: a DMA the guest expected to work. */
#define MMV_REPORT_DMA_ERROR 3u
/* args[1] mismatches not reported one by one (over the per-round cap), [2] round. */
#define MMV_REPORT_MISMATCH_SUMMARY 4u
/* args[1] descriptors sent, [2] errors seen, [3] errors the guest expected (dmahostile). */
#define MMV_REPORT_DMA_HOSTILE 5u

#define MMV_MISMATCH_CPU 0u      /* a word the vCPU wrote and read back */
#define MMV_MISMATCH_DMA_COPY 1u /* a word a DMA copy put in the scratch area */
#define MMV_MISMATCH_DMA_FILL 2u
#define MMV_MISMATCH_DMA_CHECKSUM 3u /* expected = guest's checksum, found = device's */
#define MMV_MISMATCH_SPARE 4u    /* the boot-info magic read through the spare slot */

/* ---- memstress parameters (mmv_boot_info.args) --------------------------------------- */
#define MMV_MEMSTRESS_ARG_ROUNDS 0   /* rounds to run; 0 = until the stop word is set */
#define MMV_MEMSTRESS_ARG_FLAGS 1    /* MMV_MEMSTRESS_F_* */
#define MMV_MEMSTRESS_ARG_PAGES 2    /* working-set pages per vCPU; 0 = share free memory */
#define MMV_MEMSTRESS_ARG_ALIASES 3  /* K: RAM is also at k * ALIAS_STRIDE, k = 1..K */
#define MMV_MEMSTRESS_ARG_ALIAS_STRIDE 4
/* Guest-physical windows where the VMM's churned spare slot (an alias of RAM's first
 * 2 MiB) comes and goes; 0 = none. Reads there give RAM's bytes or, with no slot, all ones. */
#define MMV_MEMSTRESS_ARG_SPARE_A 5
#define MMV_MEMSTRESS_ARG_SPARE_B 6
#define MMV_MEMSTRESS_ARG_STOP 7     /* the VMM writes non-zero here to stop at a round end */
#define MMV_MEMSTRESS_F_DMA 0x1u     /* program DMA copies/fills/checksums */
#define MMV_MEMSTRESS_F_BALLOON 0x2u /* give pages back from time to time */

#ifdef __cplusplus
}  /* extern "C" */
static_assert(sizeof(struct mmv_ucall) <= MMV_UCALL_STRIDE, "ucall block too large");
static_assert(sizeof(struct mmv_boot_info) == 120, "boot info layout changed");
static_assert(offsetof(struct mmv_boot_info, args) == 48, "boot info layout changed");
static_assert(MMV_BOOT_INFO_GPA + sizeof(struct mmv_boot_info) <= MMV_EXCEPTION_STUB_GPA,
              "boot info overlaps the exception stubs");
static_assert(offsetof(struct mmv_ucall, cmd) == 4, "ucall layout changed");
static_assert(offsetof(struct mmv_ucall, args) == 8, "ucall layout changed");
static_assert(offsetof(struct mmv_ucall, text) == 56, "ucall layout changed");
static_assert(sizeof(struct mmv_dma_desc) == MMV_DMA_DESC_ALIGN, "DMA descriptor layout changed");
static_assert(offsetof(struct mmv_dma_desc, status) == 60, "DMA descriptor layout changed");
#endif
#endif /* !__ASSEMBLER__ */

#endif /* MMUVISOR_GUEST_ABI_H_ */
