// The boot sequence on guest RAM. See boot.h.
#include "vmm/boot/boot.h"

#include <cstring>

#include "absl/strings/str_format.h"
#include "notifier/base/status_macros.h"
#include "vmm/boot/page_tables.h"

namespace mmuvisor::vmm {

absl::StatusOr<BootPlan> PrepareGuest(const GuestRamView& ram, absl::Span<const uint8_t> elf,
                                      const BootOptions& options) {
  BootPlan plan;
  plan.privilege = options.privilege;
  plan.tr_type = options.tr_type;
  // Everything that can refuse the guest for its vCPU count, its RAM or its image is
  // checked before the first byte of RAM changes. The count first: with 200 vCPUs the
  // stack area covers all RAM, and the loader would call the image too big for it.
  MMUVISOR_RETURN_IF_ERROR(CheckVcpusAndRamSize(ram.size, options.nr_vcpus));
  // The image must leave room for the stacks: checked by the loader, which names the
  // segment.
  ElfLoadTarget target;
  const uint64_t stacks = uint64_t{options.nr_vcpus} * MMV_STACK_SIZE;
  target.stacks_begin = ram.size > stacks ? ram.size - stacks : 0;
  target.ram_is_zero = options.ram_is_zero;
  absl::StatusOr<LoadedImage> image = InspectElf(elf, ram, options.limits, target);
  if (!image.ok()) return image.status();
  // The layout needs the image's boot mode (a real-mode image runs on one vCPU) and end.
  absl::StatusOr<BootLayout> layout = ComputeBootLayout(ram.size, options.nr_vcpus, *image);
  if (!layout.ok()) return layout.status();
  plan.layout = *layout;
  // Only now copy. LoadElf repeats InspectElf's checks (headers and notes, not the segment
  // bytes) on the same input, so it returns the same image.
  image = LoadElf(elf, ram, options.limits, target);
  if (!image.ok()) return image.status();
  plan.image = *image;
  if (plan.image.mode == BootMode::kLong64) {
    absl::StatusOr<uint64_t> cr3 = BuildIdentityPageTables(ram, options.identity_windows);
    if (!cr3.ok()) return cr3.status();
    plan.cr3 = *cr3;
    MMUVISOR_RETURN_IF_ERROR(WriteGdtAndTss(ram, plan.layout, options.ram_is_zero));
  }
  // Ucall blocks start zeroed so the VMM never sees a stale magic.
  constexpr uint64_t kUcallBytes = uint64_t{MMV_UCALL_STRIDE} * MMV_UCALL_MAX_VCPUS;
  if (!ram.Contains(MMV_UCALL_GPA, kUcallBytes)) {
    return absl::OutOfRangeError(absl::StrFormat(
        "ucall blocks [%#x, %#x) lie outside guest RAM [0, %#x)", MMV_UCALL_GPA,
        MMV_UCALL_GPA + kUcallBytes, ram.size));
  }
  if (!options.ram_is_zero) std::memset(ram.At(MMV_UCALL_GPA), 0, kUcallBytes);
  if (absl::Status s = WriteBootInfo(ram, MakeBootInfo(plan.layout, options)); !s.ok()) {
    return s;
  }
  return plan;
}

kvm_regs InitialRegs(const BootPlan& plan, uint32_t vcpu, uint64_t arg) {
  if (plan.image.mode == BootMode::kReal16) return RealModeRegs(plan.image.entry);
  return LongModeRegs(plan.layout, plan.image.entry, vcpu, arg);
}

kvm_sregs InitialSregs(const BootPlan& plan, uint32_t vcpu, const kvm_sregs& base) {
  if (plan.image.mode == BootMode::kReal16) return RealModeSregs(base);
  return LongModeSregs(base, plan.cr3, vcpu, plan.privilege, plan.tr_type);
}

mmv_boot_info MakeBootInfo(const BootLayout& layout, const BootOptions& options) {
  mmv_boot_info info{};
  info.magic = MMV_BOOT_INFO_MAGIC;
  info.ram_size = layout.ram_size;
  info.free_start = layout.free_start;
  info.free_end = layout.free_end;
  info.nr_vcpus = layout.nr_vcpus;
  info.flags = options.flags;
  info.seed = options.seed;
  for (size_t i = 0; i < options.args.size(); ++i) info.args[i] = options.args[i];
  info.nr_args = options.nr_args;
  return info;
}

absl::Status WriteBootInfo(const GuestRamView& ram, const mmv_boot_info& info) {
  if (!ram.Contains(MMV_BOOT_INFO_GPA, sizeof(info))) {
    return absl::OutOfRangeError(absl::StrFormat(
        "boot info [%#x, %#x) lies outside guest RAM [0, %#x)", MMV_BOOT_INFO_GPA,
        MMV_BOOT_INFO_GPA + sizeof(info), ram.size));
  }
  std::memcpy(ram.At(MMV_BOOT_INFO_GPA), &info, sizeof(info));
  return absl::OkStatus();
}

}  // namespace mmuvisor::vmm
