#include "vmm/vcpu/register_dump.h"

#include "absl/strings/str_format.h"

namespace mmuvisor::vmm {

RegisterDump RegisterDump::From(const kvm_regs& regs, const kvm_sregs& sregs) {
  RegisterDump d;
  d.rip = regs.rip;
  d.rsp = regs.rsp;
  d.rflags = regs.rflags;
  d.cr0 = sregs.cr0;
  d.cr2 = sregs.cr2;
  d.cr3 = sregs.cr3;
  d.cr4 = sregs.cr4;
  d.efer = sregs.efer;
  d.cs_selector = sregs.cs.selector;
  d.cs_dpl = sregs.cs.dpl;
  d.cs_long = sregs.cs.l != 0;
  d.cs_base = sregs.cs.base;
  return d;
}

std::string RegisterDump::ToString() const {
  return absl::StrFormat(
      "rip=%#x rsp=%#x rflags=%#x cr0=%#x cr2=%#x cr3=%#x cr4=%#x efer=%#x cs=%#x (dpl %u, %s)",
      rip, rsp, rflags, cr0, cr2, cr3, cr4, efer, cs_selector, cs_dpl,
      cs_long ? "long" : (cr0 & 1) ? "protected" : "real");
}

}  // namespace mmuvisor::vmm
