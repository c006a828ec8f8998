// PrepareGuest: the whole boot sequence on guest RAM, in order: check the vCPU count, the
// RAM size, the ELF image and the layout it leaves, then load the image, build the identity
// page tables and the GDT/TSS (long mode), write struct mmv_boot_info. Then, per vCPU,
// InitialRegs / InitialSregs give the state to set with KVM_SET_REGS / KVM_SET_SREGS. The
// VMM also owns CPUID (KVM_SET_CPUID2) and the run loop; this library never touches
// /dev/kvm.
//
// Typical use (on the thread building the VM, before any vCPU runs):
//   MMUVISOR_ASSIGN_OR_RETURN(BootPlan plan, PrepareGuest(ram, elf_bytes, {.nr_vcpus = n}));
//   for (i...) { kvm_sregs s = GET_SREGS(i); SET_SREGS(InitialSregs(plan, i, s));
//                SET_REGS(InitialRegs(plan, i, /*arg (RSI) = nr_args*/n_args)); }
//
// Thread-compatible; BootPlan is an immutable value.
#ifndef MMUVISOR_VMM_BOOT_BOOT_H_
#define MMUVISOR_VMM_BOOT_BOOT_H_

#include <linux/kvm.h>

#include <array>
#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "mmuvisor/guest_abi.h"
#include "vmm/boot/boot_layout.h"
#include "vmm/boot/elf_loader.h"
#include "vmm/boot/guest_ram.h"
#include "vmm/boot/page_tables.h"
#include "vmm/boot/x86_state.h"

namespace mmuvisor::vmm {

struct BootOptions {
  uint32_t nr_vcpus = 1;
  GuestPrivilege privilege = GuestPrivilege::kUser;  // long-mode images only
  uint64_t seed = 0;                                 // mmv_boot_info.seed
  uint32_t flags = 0;                                // mmv_boot_info.flags
  std::array<uint64_t, MMV_BOOT_INFO_MAX_ARGS> args{};  // mmv_boot_info.args
  uint32_t nr_args = 0;  // mmv_boot_info.nr_args: how many of args the user gave
  TrType tr_type = TrType::kBusy;  // TR's cached type for this host (x86_state.h)
  // Guest-physical windows beyond RAM the page tables also map one-to-one (aliases of RAM,
  // the spare slot of memslot churn; page_tables.h).
  std::vector<IdentityWindow> identity_windows;
  ElfLoadLimits limits;
  // RAM is fresh (reads as zero): the ucall blocks, the I/O bitmap and the image's bss
  // (ElfLoadTarget::ram_is_zero) are left as they are instead of being zeroed, so their
  // pages are faulted in only when used (a 1-vCPU guest touches one of the four pages of
  // ucall blocks; a bss of nearly all RAM costs nothing before the guest runs). The Machine
  // sets it; false for a buffer that may hold anything.
  bool ram_is_zero = false;
};

struct BootPlan {
  LoadedImage image;
  BootLayout layout;
  GuestPrivilege privilege = GuestPrivilege::kUser;
  TrType tr_type = TrType::kBusy;
  uint64_t cr3 = 0;  // 0 in real mode
};

// Errors: whatever CheckVcpusAndRamSize, LoadElf, ComputeBootLayout,
// BuildIdentityPageTables and WriteGdtAndTss return, unchanged (their messages name the
// field or bound). A bad vCPU count or RAM size, a rejected image and a layout that does
// not work (a real-mode image on several vCPUs, no room for the stacks) leave RAM untouched.
absl::StatusOr<BootPlan> PrepareGuest(const GuestRamView& ram, absl::Span<const uint8_t> elf,
                                      const BootOptions& options);

// REQUIRES: vcpu < plan.layout.nr_vcpus. `arg` lands in RSI (long mode; ignored in real
// mode). `base` is the vCPU's current sregs from KVM_GET_SREGS.
kvm_regs InitialRegs(const BootPlan& plan, uint32_t vcpu, uint64_t arg);
kvm_sregs InitialSregs(const BootPlan& plan, uint32_t vcpu, const kvm_sregs& base);

// The boot-info block for `layout`: magic, sizes, free range and the options' values.
mmv_boot_info MakeBootInfo(const BootLayout& layout, const BootOptions& options);
// Writes `info` at MMV_BOOT_INFO_GPA. Errors: OutOfRange if RAM does not cover it.
absl::Status WriteBootInfo(const GuestRamView& ram, const mmv_boot_info& info);

}  // namespace mmuvisor::vmm

#endif  // MMUVISOR_VMM_BOOT_BOOT_H_
