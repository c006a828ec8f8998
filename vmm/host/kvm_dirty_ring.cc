#include "vmm/host/kvm_dirty_ring.h"

#include <linux/kvm.h>
#include <sys/mman.h>

#include <utility>

#include "absl/strings/str_cat.h"
#include "notifier/base/status_macros.h"
#include "vmm/host/kvm_bindings.h"
#include "notifier/base/host_mapping.h"
#include "vmm/memory/memslot_table.h"

namespace mmuvisor::vmm {

absl::StatusOr<std::unique_ptr<KvmDirtyRingLog>> KvmDirtyRingLog::Enable(const KvmVm& vm,
                                                                         uint32_t entries) {
  MMUVISOR_ASSIGN_OR_RETURN(DirtyRingSupport support, ProbeDirtyRing(vm));
  MMUVISOR_ASSIGN_OR_RETURN(DirtyRingConfig config, EnableDirtyRing(vm, support, entries));
  return std::unique_ptr<KvmDirtyRingLog>(new KvmDirtyRingLog(vm, config));
}

absl::Status KvmDirtyRingLog::AddVcpu(const KvmVcpu& vcpu) {
  MMUVISOR_ASSIGN_OR_RETURN(VcpuDirtyRing ring, VcpuDirtyRing::Map(vcpu, config_.entries));
  MutexLock lock(&mu_);
  rings_.push_back(std::move(ring));
  return absl::OkStatus();
}

std::string KvmDirtyRingLog::Describe() const {
  return absl::StrCat("kvm-dirty-ring (", config_.Describe(), ")");
}

absl::Status KvmDirtyRingLog::CollectLocked() {
  collects_.fetch_add(1, std::memory_order_relaxed);
  uint64_t harvested = 0;
  for (VcpuDirtyRing& ring : rings_) {
    harvested += ring.Harvest([this](uint32_t slot, uint64_t offset)
                                  ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      std::vector<uint64_t>& bits = pending_[slot];
      const uint64_t word = offset / 64;
      if (word >= bits.size()) bits.resize(word + 1, 0);
      bits[word] |= uint64_t{1} << (offset % 64);
    });
  }
  entries_.fetch_add(harvested, std::memory_order_relaxed);
  // A pass that harvested nothing skips the reset, unless the last one failed: the
  // entries it marked would otherwise never be given back to KVM, and a full ring would
  // exit its vCPU again and again with nothing to harvest (VcpuRunner re-enters after
  // each OnDirtyRingFull): a hang.
  if (harvested == 0 && !reset_owed_) return absl::OkStatus();
  resets_.fetch_add(1, std::memory_order_relaxed);
  // Under mu_: every RESET mark of this harvest is stored (release) before KVM walks them.
  absl::StatusOr<uint32_t> reset = vm_.ResetDirtyRings();
  reset_owed_ = !reset.ok();
  return reset.status();
}

absl::Status KvmDirtyRingLog::Collect() {
  MutexLock lock(&mu_);
  return CollectLocked();
}

absl::Status KvmDirtyRingLog::OnDirtyRingFull(uint32_t /*vcpu*/) {
  full_exits_.fetch_add(1, std::memory_order_relaxed);
  return Collect();
}

absl::StatusOr<std::vector<uint64_t>> KvmDirtyRingLog::Fetch(const GuestMemorySlot& slot) {
  const uint64_t pages = slot.size.value / kPageSize;
  std::vector<uint64_t> out((pages + 63) / 64, 0);
  MutexLock lock(&mu_);
  MMUVISOR_RETURN_IF_ERROR(CollectLocked());
  auto it = pending_.find(slot.slot);
  if (it == pending_.end()) return out;
  std::vector<uint64_t> bits = std::move(it->second);
  pending_.erase(it);
  uint64_t fetched = 0, dropped = 0;
  for (uint64_t w = 0; w < bits.size(); ++w) {
    uint64_t keep = bits[w];
    if (w >= out.size()) {
      keep = 0;
    } else if (w == out.size() - 1 && pages % 64 != 0) {
      keep &= (uint64_t{1} << (pages % 64)) - 1;
    }
    dropped += static_cast<uint64_t>(__builtin_popcountll(bits[w] & ~keep));
    fetched += static_cast<uint64_t>(__builtin_popcountll(keep));
    if (w < out.size()) out[w] = keep;
  }
  bits_fetched_.fetch_add(fetched, std::memory_order_relaxed);
  bits_dropped_.fetch_add(dropped, std::memory_order_relaxed);
  return out;
}

DirtyRingStats KvmDirtyRingLog::stats() const {
  DirtyRingStats s;
  s.collects = collects_.load(std::memory_order_relaxed);
  s.entries = entries_.load(std::memory_order_relaxed);
  s.resets = resets_.load(std::memory_order_relaxed);
  s.full_exits = full_exits_.load(std::memory_order_relaxed);
  s.bits_fetched = bits_fetched_.load(std::memory_order_relaxed);
  s.bits_dropped = bits_dropped_.load(std::memory_order_relaxed);
  return s;
}

absl::StatusOr<DirtyTrackingChoice> SelfCheckDirtyRing(const KvmSystem& system,
                                                       uint32_t entries) {
  constexpr uint64_t kScratchBytes = 4 * kPageSize;
  MMUVISOR_ASSIGN_OR_RETURN(KvmVm vm, system.CreateVm());
  MMUVISOR_ASSIGN_OR_RETURN(std::unique_ptr<KvmDirtyRingLog> log,
                            KvmDirtyRingLog::Enable(vm, entries));
  MMUVISOR_ASSIGN_OR_RETURN(int mmap_size, system.VcpuMmapSize());
  MMUVISOR_ASSIGN_OR_RETURN(KvmVcpu vcpu, vm.CreateVcpu(0, mmap_size));
  MMUVISOR_RETURN_IF_ERROR(log->AddVcpu(vcpu));
  MMUVISOR_ASSIGN_OR_RETURN(
      HostMapping ram, HostMapping::Map(kScratchBytes, PROT_READ | PROT_WRITE,
                                        MAP_PRIVATE | MAP_ANONYMOUS, -1, 0,
                                        "dirty-ring self-check RAM"));
  const GuestMemorySlot slot{0, Gpa{0}, ByteSize{kScratchBytes},
                             Hva{reinterpret_cast<uint64_t>(ram.data())},
                             KVM_MEM_LOG_DIRTY_PAGES};
  MMUVISOR_ASSIGN_OR_RETURN(MemslotTable table, MemslotTable::Create({slot}));
  MMUVISOR_RETURN_IF_ERROR(vm.SetUserMemoryRegion(slot.slot, slot.flags, slot.gpa.value,
                                                  slot.size.value, slot.hva.value));
  // As Machine does: the real-mode TSS for Intel hosts without unrestricted guest, best
  // effort (hosts that do not need it may not implement it).
  (void)vm.SetTssAddr(0xfffbd000);
  return ChooseDirtyTracking(log.get(), table, [&vcpu](const GuestMemorySlot& s) {
    return RunRealModeWriteProbe(vcpu, s);
  });
}

}  // namespace mmuvisor::vmm
