// KvmFlavour: which KVM implementation backs /dev/kvm on this host, read from sysfs.
//
// The same guests must run on every flavour; nothing in the design depends on one. The
// flavour is named where users need it: `mmuvisor run --help`, the first line of a run,
// and crash reports on a flavour known to behave differently from VMX/SVM:
//   kvm_intel  VMX (Intel VT-x): hardware guest modes, EPT or shadow paging;
//   kvm_amd    SVM (AMD-V): hardware guest modes, NPT or shadow paging;
//   kvm_pvm    PVM (Pagetable-based Virtual Machine): no VMX/SVM, always shadow paging;
//              guest ring 3 runs natively in the host's ring 3, guest ring 0 is
//              instruction-emulated (~1000x slower), RFLAGS.IOPL is ignored for guest
//              ring 3 (port I/O is checked against the TSS I/O bitmap only).
// A module being present does not mean it bound: a kernel that is itself a kvm_pvm guest
// has the module and no /dev/kvm. Whether the device opens is KvmSystem::Open's answer.
//
// Thread-safety: pure functions over the file system; any thread.
#ifndef MMUVISOR_VMM_KVM_FLAVOUR_H_
#define MMUVISOR_VMM_KVM_FLAVOUR_H_

#include <string>

#include "absl/strings/string_view.h"

namespace mmuvisor::vmm {

enum class KvmFlavour { kUnknown, kVmx, kSvm, kPvm };

struct KvmHostInfo {
  KvmFlavour flavour = KvmFlavour::kUnknown;
  // kvm.tdp_mmu / ept / npt as sysfs states them: true only when the host says two-
  // dimensional paging is on; false for shadow paging or when sysfs does not say.
  bool tdp = false;
  // kvm.tdp_mmu as sysfs states it (Linux 5.10+; read-only and forced off without two-
  // dimensional paging since 6.3): whether TDP faults go through the TDP MMU.
  bool tdp_mmu = false;
};

// Whether KVM's MMU on this host maps neighbouring pages on a fault (`pte_prefetch`: up to
// 8 pages the host already has, in the legacy MMU's direct maps and the shadow MMU) — and
// so whether a dirty log costs faults: KVM never prefetches a writable page into a slot
// with KVM_MEM_LOG_DIRTY_PAGES (gfn_to_memslot_dirty_bitmap). True for PVM and for
// VMX/SVM without EPT/NPT or without the TDP MMU (which maps only the faulting page);
// false when the flavour is unknown.
bool KvmPrefetchesNeighbours(const KvmHostInfo& info);

// Reads `sysfs_module_dir` (normally /sys/module): kvm_pvm wins over kvm_intel/kvm_amd
// when several are present (a PVM host may also carry the hardware module, unbound).
KvmHostInfo DetectKvmHost(absl::string_view sysfs_module_dir = "/sys/module");

// "VMX (kvm_intel)", "SVM (kvm_amd)", "PVM (kvm_pvm)", "unknown (no kvm_intel, kvm_amd or
// kvm_pvm module)".
std::string KvmFlavourName(KvmFlavour flavour);

// One line for humans: flavour, paging, and what it means for guests.
std::string DescribeKvmHost(const KvmHostInfo& info);

// What a crash report should add on this flavour ("" where nothing differs from VMX/SVM).
std::string KvmFlavourCrashNote(KvmFlavour flavour);

}  // namespace mmuvisor::vmm

#endif  // MMUVISOR_VMM_KVM_FLAVOUR_H_
