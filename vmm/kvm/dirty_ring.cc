#include "vmm/kvm/dirty_ring.h"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <bit>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "notifier/base/status_macros.h"

namespace mmuvisor::vmm {
namespace {

constexpr uint64_t kGfnBytes = sizeof(kvm_dirty_gfn);
static_assert(kGfnBytes == 16, "struct kvm_dirty_gfn layout");

const char* CapName(bool acq_rel) {
  return acq_rel ? "KVM_CAP_DIRTY_LOG_RING_ACQ_REL" : "KVM_CAP_DIRTY_LOG_RING";
}

}  // namespace

std::string DirtyRingSupport::Describe() const {
  if (!offered()) {
    return "KVM_CAP_DIRTY_LOG_RING not offered (KVM_CHECK_EXTENSION on the VM returned 0)";
  }
  return absl::StrFormat("%s (max %u entries)", CapName(acq_rel), max_bytes / kGfnBytes);
}

std::string DirtyRingConfig::Describe() const {
  return absl::StrFormat("%s, %u entries/vCPU", CapName(acq_rel), entries);
}

absl::StatusOr<DirtyRingSupport> ProbeDirtyRing(const KvmVm& vm) {
  DirtyRingSupport support;
  MMUVISOR_ASSIGN_OR_RETURN(int acq_rel, vm.CheckExtension(KVM_CAP_DIRTY_LOG_RING_ACQ_REL));
  MMUVISOR_ASSIGN_OR_RETURN(int plain, vm.CheckExtension(KVM_CAP_DIRTY_LOG_RING));
  // Each answers the maximum ring size in bytes (KVM_DIRTY_RING_MAX_ENTRIES * 16) or 0.
  support.acq_rel = acq_rel > 0;
  support.max_bytes = static_cast<uint64_t>(acq_rel > 0 ? acq_rel : (plain > 0 ? plain : 0));
  return support;
}

absl::StatusOr<DirtyRingConfig> EnableDirtyRing(const KvmVm& vm, const DirtyRingSupport& support,
                                                uint32_t entries) {
  if (!support.offered()) {
    return absl::FailedPreconditionError(absl::StrCat("dirty ring: ", support.Describe()));
  }
  const uint64_t max_entries = std::bit_floor(support.max_bytes / kGfnBytes);
  uint64_t want = std::bit_ceil(std::max<uint64_t>(entries, 1));
  want = std::min(want, max_entries);
  const uint32_t cap = support.acq_rel ? KVM_CAP_DIRTY_LOG_RING_ACQ_REL : KVM_CAP_DIRTY_LOG_RING;
  absl::Status last;
  // KVM refuses (EINVAL) a ring smaller than a page or than its reserved entries, which
  // userspace cannot query (64 + the CPU's dirty-log buffer): grow until accepted.
  for (; want <= max_entries; want *= 2) {
    last = vm.EnableCap(cap, want * kGfnBytes);
    if (last.ok()) return DirtyRingConfig{static_cast<uint32_t>(want), support.acq_rel};
    if (!absl::IsInvalidArgument(last)) break;
  }
  return last;
}

absl::StatusOr<VcpuDirtyRing> VcpuDirtyRing::Map(const KvmVcpu& vcpu, uint32_t entries) {
  if (entries == 0 || !std::has_single_bit(entries)) {
    return absl::InvalidArgumentError(
        absl::StrFormat("dirty ring of vcpu %d: %u entries is not a power of two", vcpu.id(),
                        entries));
  }
  const int64_t offset = int64_t{KVM_DIRTY_LOG_PAGE_OFFSET} * ::sysconf(_SC_PAGESIZE);
  MMUVISOR_ASSIGN_OR_RETURN(
      HostMapping mapping,
      HostMapping::Map(static_cast<size_t>(entries) * kGfnBytes, PROT_READ | PROT_WRITE,
                       MAP_SHARED, vcpu.fd(), offset,
                       absl::StrCat("dirty ring of vcpu ", vcpu.id())));
  return VcpuDirtyRing(vcpu.id(), entries, std::move(mapping));
}

uint32_t VcpuDirtyRing::Harvest(absl::FunctionRef<void(uint32_t slot, uint64_t offset)> fn) {
  uint32_t harvested = 0;
  // At most one lap: KVM never has more than `entries_` un-reset entries.
  while (harvested < entries_) {
    kvm_dirty_gfn& gfn = gfns()[fetch_index_ & (entries_ - 1)];
    std::atomic_ref<uint32_t> flags(gfn.flags);
    // Acquire: pairs with KVM's smp_store_release(&gfn->flags, DIRTY) in
    // kvm_dirty_gfn_set_dirtied(): slot and offset below are the ones KVM wrote.
    if ((flags.load(std::memory_order_acquire) & KVM_DIRTY_GFN_F_DIRTY) == 0) break;
    fn(gfn.slot, gfn.offset);
    // Release: pairs with KVM's smp_load_acquire(&gfn->flags) in kvm_dirty_gfn_harvested()
    // (KVM_RESET_DIRTY_RINGS): our reads of slot/offset happen before KVM reuses the entry.
    flags.store(KVM_DIRTY_GFN_F_RESET, std::memory_order_release);
    ++fetch_index_;
    ++harvested;
  }
  return harvested;
}

}  // namespace mmuvisor::vmm
