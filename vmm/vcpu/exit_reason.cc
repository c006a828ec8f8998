#include "vmm/vcpu/exit_reason.h"

#include <linux/kvm.h>

#include <array>

#include "absl/strings/str_cat.h"
#include "vmm/kvm/kvm_constants.h"

namespace mmuvisor::vmm {
namespace {

struct ExitName {
  uint32_t reason;
  absl::string_view name;
};

#define MMV_EXIT(x) ExitName{KVM_EXIT_##x, "KVM_EXIT_" #x}
constexpr std::array kExitNames = {
    MMV_EXIT(UNKNOWN),        MMV_EXIT(EXCEPTION),      MMV_EXIT(IO),
    MMV_EXIT(HYPERCALL),      MMV_EXIT(DEBUG),          MMV_EXIT(HLT),
    MMV_EXIT(MMIO),           MMV_EXIT(IRQ_WINDOW_OPEN), MMV_EXIT(SHUTDOWN),
    MMV_EXIT(FAIL_ENTRY),     MMV_EXIT(INTR),           MMV_EXIT(SET_TPR),
    MMV_EXIT(TPR_ACCESS),     MMV_EXIT(S390_SIEIC),     MMV_EXIT(S390_RESET),
    MMV_EXIT(DCR),            MMV_EXIT(NMI),            MMV_EXIT(INTERNAL_ERROR),
    MMV_EXIT(OSI),            MMV_EXIT(PAPR_HCALL),     MMV_EXIT(S390_UCONTROL),
    MMV_EXIT(WATCHDOG),       MMV_EXIT(S390_TSCH),      MMV_EXIT(EPR),
    MMV_EXIT(SYSTEM_EVENT),   MMV_EXIT(S390_STSI),      MMV_EXIT(IOAPIC_EOI),
    MMV_EXIT(HYPERV),         MMV_EXIT(ARM_NISV),       MMV_EXIT(X86_RDMSR),
    MMV_EXIT(X86_WRMSR),      MMV_EXIT(DIRTY_RING_FULL), MMV_EXIT(AP_RESET_HOLD),
    MMV_EXIT(X86_BUS_LOCK),   MMV_EXIT(XEN),            MMV_EXIT(RISCV_SBI),
    MMV_EXIT(RISCV_CSR),      MMV_EXIT(NOTIFY),
    ExitName{kvm_abi::kExitLoongarchIocsr, "KVM_EXIT_LOONGARCH_IOCSR"},
    ExitName{kvm_abi::kExitMemoryFault, "KVM_EXIT_MEMORY_FAULT"},
};
#undef MMV_EXIT

// The table is indexed by reason: keep it dense and in order.
constexpr bool TableIsDense() {
  for (size_t i = 0; i < kExitNames.size(); ++i) {
    if (kExitNames[i].reason != i) return false;
  }
  return true;
}
static_assert(TableIsDense(), "kExitNames must list reasons 0..N in order");

}  // namespace

std::string ExitReasonName(uint32_t reason) {
  if (reason < kExitNames.size()) return std::string(kExitNames[reason].name);
  return absl::StrCat("KVM_EXIT_", reason);
}

absl::string_view InternalErrorName(uint32_t suberror) {
  switch (suberror) {
    case KVM_INTERNAL_ERROR_EMULATION:
      return "emulation failure";
    case KVM_INTERNAL_ERROR_SIMUL_EX:
      return "simultaneous exceptions";
    case KVM_INTERNAL_ERROR_DELIVERY_EV:
      return "exit during event delivery";
    case KVM_INTERNAL_ERROR_UNEXPECTED_EXIT_REASON:
      return "unexpected exit reason";
  }
  return "unknown suberror";
}

}  // namespace mmuvisor::vmm
