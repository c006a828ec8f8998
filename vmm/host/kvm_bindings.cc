#include "vmm/host/kvm_bindings.h"

#include <linux/kvm.h>

#include <vector>

#include "absl/strings/str_format.h"
#include "notifier/base/status_macros.h"

namespace mmuvisor::vmm {

absl::Status KvmMemslotControl::SetSlot(const GuestMemorySlot& slot) {
  return vm_.SetUserMemoryRegion(slot.slot, slot.flags, slot.gpa.value, slot.size.value,
                                 slot.hva.value);
}

absl::Status KvmMemslotControl::DeleteSlot(const GuestMemorySlot& slot) {
  return vm_.SetUserMemoryRegion(slot.slot, slot.flags, slot.gpa.value, 0, slot.hva.value);
}

absl::StatusOr<std::vector<uint64_t>> KvmDirtyLog::Fetch(const GuestMemorySlot& slot) {
  const uint64_t pages = slot.size.value / kPageSize;
  std::vector<uint64_t> bitmap((pages + 63) / 64, 0);
  MMUVISOR_RETURN_IF_ERROR(vm_.GetDirtyLog(slot.slot, absl::MakeSpan(bitmap)));
  return bitmap;
}

absl::Status RunRealModeWriteProbe(KvmVcpu& vcpu, const GuestMemorySlot& slot) {
  if (slot.size.value < 2 * kPageSize || slot.gpa.value + 2 * kPageSize > 0xF0000) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "dirty-log probe: slot %d at gpa 0x%x (%d bytes) cannot hold the real-mode stub",
        slot.slot, slot.gpa.value, slot.size.value));
  }
  auto* data = slot.hva.As<volatile uint8_t>();
  // The VMM may have loaded the guest image already: keep both pages as they were.
  std::vector<uint8_t> saved(2 * kPageSize);
  for (size_t i = 0; i < saved.size(); ++i) saved[i] = data[i];
  struct Restore {
    volatile uint8_t* data;
    const std::vector<uint8_t>& saved;
    ~Restore() {
      for (size_t i = 0; i < saved.size(); ++i) data[i] = saved[i];
    }
  } restore{data, saved};
  data[0] = 0;
  // mov byte [0x0000], 0x5a ; out kProbeDonePort, al   (ds = cs = slot.gpa >> 4)
  // An OUT, not a HLT: with an in-kernel LAPIC a HLT waits in KVM for an interrupt.
  static constexpr uint8_t kStub[] = {0xC6, 0x06, 0x00, 0x00, 0x5A, 0xE6, kProbeDonePort};
  for (size_t i = 0; i < sizeof(kStub); ++i) data[kPageSize + i] = kStub[i];
  absl::StatusOr<kvm_sregs> sregs = vcpu.GetSregs();
  if (!sregs.ok()) return sregs.status();
  for (kvm_segment* seg : {&sregs->cs, &sregs->ds}) {
    seg->base = slot.gpa.value;
    seg->selector = static_cast<uint16_t>(slot.gpa.value >> 4);
  }
  sregs->cr0 &= ~uint64_t{1};  // real mode
  MMUVISOR_RETURN_IF_ERROR(vcpu.SetSregs(*sregs));
  kvm_regs regs{};
  regs.rip = kPageSize;
  regs.rflags = 2;
  MMUVISOR_RETURN_IF_ERROR(vcpu.SetRegs(regs));
  for (int exits = 0; exits < 16; ++exits) {
    absl::Status s = vcpu.Run();
    if (absl::IsUnavailable(s)) continue;  // EINTR: enter again
    if (!s.ok()) return s;
    const kvm_run& run = *vcpu.run();
    if (run.exit_reason == KVM_EXIT_IO && run.io.direction == KVM_EXIT_IO_OUT &&
        run.io.port == kProbeDonePort) {
      if (data[0] != 0x5A) {
        return absl::InternalError("dirty-log probe: the guest store did not land");
      }
      return absl::OkStatus();
    }
    return absl::InternalError(absl::StrFormat("dirty-log probe: unexpected exit reason %d",
                                               vcpu.run()->exit_reason));
  }
  return absl::InternalError(
      absl::StrFormat("dirty-log probe: no OUT to port %#x after 16 entries", kProbeDonePort));
}

}  // namespace mmuvisor::vmm
