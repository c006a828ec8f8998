/* C side of the entry: runs mmv_main and reports its result. Also carries the ELF note
 * that tells the VMM this is a long-mode image. */
#include "mmuvisor/guest_runtime.h"

/* PT_NOTE "mmuvisor" / MMV_ELF_NOTE_BOOT_MODE = MMV_BOOT_MODE_LONG64 (guest_abi.h). */
struct mmv_boot_mode_note {
  uint32_t namesz, descsz, type;
  char name[12]; /* "mmuvisor\0" padded to 4 bytes */
  uint32_t mode;
};
__attribute__((section(".note.mmuvisor"), used, aligned(4)))
static const struct mmv_boot_mode_note boot_mode_note = {
    sizeof(MMV_ELF_NOTE_NAME), 4, MMV_ELF_NOTE_BOOT_MODE, MMV_ELF_NOTE_NAME,
    MMV_BOOT_MODE_LONG64};

/* Called by _start (start64.S) with RDI = vCPU index and RSI = number of run arguments. */
__attribute__((noreturn, used)) void mmv_start(uint64_t vcpu, uint64_t nr_args);

void mmv_start(uint64_t vcpu, uint64_t nr_args) {
  mmv_done((uint64_t)(uint32_t)mmv_main((uint32_t)vcpu, nr_args));
}
