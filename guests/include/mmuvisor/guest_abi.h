/* The contract between mmuvisor guests and the VMM: port numbers, the ucall block and the
 * guest-physical memory layout. Plain C so both freestanding guests and the C++ VMM can
 * include it; every field has a fixed width and the layout never depends on the compiler.
 *
 * Guest-physical layout (all guests; the VMM builds what sits below 1 MiB):
 *   [0x0000, 0x1000)    never mapped in guest page tables: a null dereference faults
 *   [0x1000, 0x2000)    GDT and TSS built by the VMM
 *   [0x2000, 0x3000)    IDT page (reserved; empty unless the VMM installs handlers)
 *   [0x3000, 0x4000)    struct mmv_boot_info, read-only for the guest by convention
 *   [0x4000, 0x8000)    per-vCPU ucall blocks (struct mmv_ucall, 512 bytes each)
 *   [0x8000, 0x10000)   real-mode guests are linked and loaded here (CS base 0)
 *   [0x10000, 0x100000) identity page tables built by the VMM (2 MiB pages, U bit set)
 *   [0x100000, ...)     long-mode guest ELF images are linked and loaded here
 *   [free_start, free_end)  memory the guest may use as it likes (see mmv_boot_info)
 *   [free_end, ram_end) per-vCPU stacks, MMV_STACK_SIZE each, vCPU 0 highest
 * Long-mode guests start at the ELF entry at CPL3 with IOPL=3 (port I/O allowed) unless the
 * VMM is told to enter at CPL0, with RDI = vCPU index, RSI = the start argument, RSP = top of
 * that vCPU's stack (16-byte aligned minus 8, as after a call).
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

/* Ports. Both are exits to the VMM from any ring when IOPL=3. */
#define MMV_PORT_SERIAL 0x3f8u  /* 8250 UART, THR at +0, LSR at +5 */
#define MMV_PORT_UCALL 0x0e00u  /* 32-bit OUT: guest-physical address of a struct mmv_ucall */
#define MMV_PORT_DMA 0x0e10u    /* 32-bit OUT: guest-physical address of a DMA descriptor */

#define MMV_GDT_GPA 0x1000u
#define MMV_IDT_GPA 0x2000u
#define MMV_BOOT_INFO_GPA 0x3000u
#define MMV_UCALL_GPA 0x4000u
#define MMV_UCALL_STRIDE 512u
#define MMV_UCALL_MAX_VCPUS 32u
#define MMV_REAL_MODE_LOAD_GPA 0x8000u
#define MMV_PAGE_TABLE_GPA 0x10000u
#define MMV_PAGE_TABLE_END_GPA 0x100000u
#define MMV_IMAGE_GPA 0x100000u
#define MMV_STACK_SIZE 0x10000u

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

/* Written by the VMM before any vCPU runs. */
struct mmv_boot_info {
  uint64_t magic;       /* MMV_BOOT_INFO_MAGIC */
  uint64_t ram_size;    /* bytes of guest RAM starting at guest-physical 0 */
  uint64_t free_start;  /* first free byte after the image, page aligned */
  uint64_t free_end;    /* end of free memory (start of the stacks), page aligned */
  uint32_t nr_vcpus;
  uint32_t flags;
  uint64_t seed;        /* workload seed chosen by the VMM */
  uint64_t args[8];     /* guest-specific parameters */
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
};

#define MMV_UCALL_MAGIC 0x55434c4cu /* "UCLL" */
#define MMV_UCALL_TEXT_MAX 192u

struct mmv_ucall {
  uint32_t magic;  /* MMV_UCALL_MAGIC */
  uint32_t cmd;    /* enum mmv_ucall_cmd */
  uint64_t args[6];
  char text[MMV_UCALL_TEXT_MAX]; /* NUL-terminated; the VMM never reads past the end */
};

#ifdef __cplusplus
}  /* extern "C" */
static_assert(sizeof(struct mmv_ucall) <= MMV_UCALL_STRIDE, "ucall block too large");
static_assert(sizeof(struct mmv_boot_info) == 112, "boot info layout changed");
static_assert(offsetof(struct mmv_ucall, cmd) == 4, "ucall layout changed");
static_assert(offsetof(struct mmv_ucall, args) == 8, "ucall layout changed");
static_assert(offsetof(struct mmv_ucall, text) == 56, "ucall layout changed");
#endif
#endif /* !__ASSEMBLER__ */

#endif /* MMUVISOR_GUEST_ABI_H_ */
