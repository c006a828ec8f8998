// RegisterDump: the registers a crash report shows (RIP, RSP, RFLAGS, CR0/CR2/CR3/CR4,
// EFER, CS), taken from KVM_GET_REGS / KVM_GET_SREGS on the vCPU's own thread, and their
// one-line rendering:
//   "rip=0x100123 rsp=0x3fffff8 rflags=0x3002 cr0=0x80000033 cr2=0x0 cr3=0x10000
//    cr4=0x620 efer=0xd01 cs=0x2b (dpl 3, long)"
#ifndef MMUVISOR_VMM_VCPU_REGISTER_DUMP_H_
#define MMUVISOR_VMM_VCPU_REGISTER_DUMP_H_

#include <linux/kvm.h>

#include <cstdint>
#include <string>

namespace mmuvisor::vmm {

struct RegisterDump {
  uint64_t rip = 0, rsp = 0, rflags = 0;
  uint64_t cr0 = 0, cr2 = 0, cr3 = 0, cr4 = 0, efer = 0;
  uint16_t cs_selector = 0;
  uint8_t cs_dpl = 0;
  bool cs_long = false;
  uint64_t cs_base = 0;

  static RegisterDump From(const kvm_regs& regs, const kvm_sregs& sregs);
  std::string ToString() const;
};

}  // namespace mmuvisor::vmm

#endif  // MMUVISOR_VMM_VCPU_REGISTER_DUMP_H_
