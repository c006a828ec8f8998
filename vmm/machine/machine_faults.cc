// Machine as the vCPUs' GuestFaultHandler: guest memory faults caused by host operations
// on the HostAddressSpace, judged with guest_fault_verdict.h (see machine.h for the rules).
#include <cstring>

#include "absl/strings/str_format.h"
#include "vmm/machine/machine.h"

namespace mmuvisor::vmm {
namespace {

// How long one wait for a window lasts before the stop flag is looked at again.
constexpr absl::Duration kWindowWaitSlice = absl::Milliseconds(20);

}  // namespace

MachineFaultStats Machine::fault_stats() const {
  return MachineFaultStats{faults_.load(std::memory_order_relaxed),
                           fault_retries_.load(std::memory_order_relaxed),
                           protected_writes_.load(std::memory_order_relaxed),
                           absent_accesses_.load(std::memory_order_relaxed)};
}

WindowToken Machine::BeforeEntry() {
  const PageRangeLock::Counts counts = space_->windows().counts();
  return WindowToken{counts.opened, counts.closed};
}

bool Machine::WaitForWindows(uint64_t opened, const std::atomic<bool>& stop_requested) {
  // relaxed: only a hint to give up waiting; the runner re-checks with acquire.
  while (!stop_requested.load(std::memory_order_relaxed)) {
    if (space_->windows().WaitForClosed(opened, kWindowWaitSlice)) return true;
  }
  return false;
}

GuestFaultAction Machine::ActionFor(uint32_t vcpu, const GuestFaultVerdict& verdict,
                                    std::optional<uint64_t> gpa) {
  GuestFaultAction action;
  action.gpa = gpa;
  switch (verdict.kind) {
    case GuestFaultKind::kRetry:
      action.kind = GuestFaultAction::kReenter;
      return action;
    case GuestFaultKind::kProtected: {
      protected_writes_.fetch_add(1, std::memory_order_relaxed);
      const std::string detail =
          gpa.has_value()
              ? absl::StrFormat("guest write to write-protected memory at gpa %#x (%s)", *gpa,
                                verdict.detail)
              : verdict.detail;
      const std::optional<Gpa> at = gpa.has_value() ? std::optional<Gpa>(Gpa{*gpa}) : std::nullopt;
      if (config_.observer != nullptr && config_.observer->OnProtectedWrite(vcpu, at, detail)) {
        action.kind = GuestFaultAction::kReenter;
        return action;
      }
      action.kind = GuestFaultAction::kStop;
      action.stop_kind = StopKind::kCrashed;
      action.protected_write = true;
      action.detail = detail;
      return action;
    }
    case GuestFaultKind::kPoisoned:
      action.kind = GuestFaultAction::kStop;
      action.stop_kind = StopKind::kHostError;
      action.detail = absl::StrFormat("guest memory unavailable: %s", verdict.detail);
      return action;
    case GuestFaultKind::kNotMapped:
      action.kind = GuestFaultAction::kStop;
      action.stop_kind = StopKind::kCrashed;
      action.detail = absl::StrFormat("guest memory fault: %s", verdict.detail);
      return action;
  }
  action.kind = GuestFaultAction::kStop;
  return action;
}

GuestFaultAction Machine::OnGuestFault(uint32_t vcpu, const GuestFault& fault, kvm_run& run,
                                       const std::atomic<bool>& stop_requested) {
  if (fault.source == GuestFaultSource::kMmio) return OnMmioFault(vcpu, fault, run, stop_requested);
  faults_.fetch_add(1, std::memory_order_relaxed);
  GuestFaultAction action;
  if (fault.gpa.has_value()) {
    // KVM_EXIT_MEMORY_FAULT: the address is known. Reads never fault on a readable page,
    // so a fault on a read-only page is a write: classify it as one.
    const Gpa gpa{*fault.gpa};
    GuestFaultVerdict verdict = ClassifyMemoryFault(*space_, gpa, InSlotWindow(gpa, 1));
    action = ActionFor(vcpu, verdict, fault.gpa);
    if (verdict.kind == GuestFaultKind::kRetry &&
        !WaitForPage(*space_, gpa, stop_requested, kWindowWaitSlice)) {
      return action;  // kicked while waiting: the runner sees the stop at the top
    }
  } else {
    const PageRangeLock::Counts at_entry{fault.entry.opened, fault.entry.closed};
    GuestFaultVerdict verdict = ClassifyAddresslessGuestFault(*space_, at_entry);
    if (verdict.kind == GuestFaultKind::kRetry &&
        fault.identical_repeats >= kMaxIdenticalEfaults) {
      // No progress at all across many windows: a protected page, if there is one.
      uint64_t first = 0;
      const uint64_t pages = space_->ProtectedPages(&first);
      if (pages > 0) {
        verdict = {GuestFaultKind::kProtected,
                   absl::StrFormat("guest write to write-protected memory (%u identical "
                                   "EFAULTs in a row; the kernel reports no address; %u "
                                   "page(s) protected)",
                                   fault.identical_repeats, pages)};
      }
    }
    action = ActionFor(vcpu, verdict, std::nullopt);
    if (verdict.kind == GuestFaultKind::kRetry &&
        !WaitForWindows(space_->windows().counts().opened, stop_requested)) {
      return action;  // kicked while waiting: the runner sees the stop at the top
    }
  }
  if (action.kind == GuestFaultAction::kReenter) {
    fault_retries_.fetch_add(1, std::memory_order_relaxed);
  }
  return action;
}

bool Machine::InSlotWindow(Gpa gpa, uint32_t len) const {
  for (const IdentityWindow& w : config_.slot_windows) {
    if (gpa.value >= w.gpa && gpa.value - w.gpa < w.size && len <= w.size - (gpa.value - w.gpa)) {
      return true;
    }
  }
  return false;
}

GuestFaultAction Machine::OnMmioFault(uint32_t vcpu, const GuestFault& fault, kvm_run& run,
                                      const std::atomic<bool>& /*stop_requested*/) {
  const uint32_t len = run.mmio.len;
  const Gpa gpa{run.mmio.phys_addr};
  if (len != 0 && len <= sizeof(run.mmio.data) && InSlotWindow(gpa, len)) {
    // A churned slot's window: the slot may have come or gone since KVM's exit, and again
    // while we read, so try it; where no slot holds the range (now), answer what a bus
    // answers for nothing there.
    const bool write = run.mmio.is_write != 0;
    absl::Status s = absl::OutOfRangeError("no memslot");
    if (space_->ContainsGuestRange(gpa, ByteSize{len})) {
      s = write ? space_->WriteGuest(gpa, absl::Span<const uint8_t>(run.mmio.data, len))
                : space_->ReadGuest(gpa, absl::Span<uint8_t>(run.mmio.data, len));
    }
    if (s.ok() || absl::IsOutOfRange(s)) {
      if (!s.ok()) {
        absent_accesses_.fetch_add(1, std::memory_order_relaxed);
        if (!write) std::memset(run.mmio.data, 0xff, len);
      }
      GuestFaultAction reenter;
      reenter.kind = GuestFaultAction::kReenter;
      return reenter;
    }
    // Any other error (a protected or poisoned page): judged as any RAM access below.
  }
  if (len == 0 || len > sizeof(run.mmio.data) || !space_->ContainsGuestRange(gpa, ByteSize{len})) {
    GuestFaultAction not_mine;
    not_mine.kind = GuestFaultAction::kNotMine;  // a real stray MMIO: the ExitHandler's
    return not_mine;
  }
  faults_.fetch_add(1, std::memory_order_relaxed);
  const bool write = run.mmio.is_write != 0;
  // An emulated access that could not use the host mapping. Complete it through the
  // space (which waits out windows) so KVM can retire the instruction on re-entry.
  GuestFaultVerdict verdict = ClassifyGuestFault(*space_, gpa, write);
  if (verdict.kind == GuestFaultKind::kRetry) {
    absl::Status s = write ? space_->WriteGuest(gpa, absl::Span<const uint8_t>(run.mmio.data, len))
                           : space_->ReadGuest(gpa, absl::Span<uint8_t>(run.mmio.data, len));
    if (absl::IsPermissionDenied(s)) {
      verdict = ClassifyGuestFault(*space_, gpa, write);  // protected in between
      if (verdict.kind == GuestFaultKind::kRetry) {
        verdict = {GuestFaultKind::kProtected, std::string(s.message())};
      }
    } else if (!s.ok()) {
      verdict = {GuestFaultKind::kPoisoned, std::string(s.message())};
    }
  }
  GuestFaultAction action = ActionFor(vcpu, verdict, fault.gpa);
  if (verdict.kind == GuestFaultKind::kRetry) {
    fault_retries_.fetch_add(1, std::memory_order_relaxed);
  } else if (verdict.kind == GuestFaultKind::kProtected &&
             action.kind == GuestFaultAction::kReenter) {
    // The observer lifted the protection: complete the access now, or KVM drops it.
    absl::Status s = write ? space_->WriteGuest(gpa, absl::Span<const uint8_t>(run.mmio.data, len))
                           : space_->ReadGuest(gpa, absl::Span<uint8_t>(run.mmio.data, len));
    if (!s.ok()) {
      protected_writes_.fetch_add(1, std::memory_order_relaxed);
      action.kind = GuestFaultAction::kStop;
      action.stop_kind = StopKind::kCrashed;
      action.protected_write = true;
      action.detail = absl::StrFormat(
          "guest write to write-protected memory at gpa %#x (still protected after the "
          "observer's retry: %s)", gpa.value, s.message());
    }
  }
  return action;
}

}  // namespace mmuvisor::vmm
