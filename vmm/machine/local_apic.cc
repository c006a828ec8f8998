#include "vmm/machine/local_apic.h"

namespace mmuvisor::vmm {
namespace {

// Whether [gpa, gpa + size) meets the APIC page (no sum that could wrap).
bool MeetsApicPage(uint64_t gpa, uint64_t size) {
  if (size == 0 || gpa >= kLocalApicGpa + kLocalApicBytes) return false;
  return gpa >= kLocalApicGpa || kLocalApicGpa - gpa < size;
}

}  // namespace

bool WantInKernelLapic(LocalApicMode mode, BootMode boot, GuestPrivilege privilege,
                       uint64_t ram_bytes, absl::Span<const IdentityWindow> windows) {
  if (mode != LocalApicMode::kAuto) return false;
  if (boot != BootMode::kLong64 || privilege != GuestPrivilege::kUser) return false;
  constexpr uint64_t k2MiB = 2ull << 20;
  if (MeetsApicPage(0, (ram_bytes + k2MiB - 1) / k2MiB * k2MiB)) return false;
  for (const IdentityWindow& w : windows) {
    if (MeetsApicPage(w.gpa, w.size)) return false;
  }
  return true;
}

absl::string_view LocalApicName(bool in_kernel) { return in_kernel ? "in KVM" : "none"; }

}  // namespace mmuvisor::vmm
