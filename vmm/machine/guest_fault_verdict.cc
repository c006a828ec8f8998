// Guest-fault verdicts from the HostAddressSpace's facts (guest_fault_verdict.h).
#include "vmm/machine/guest_fault_verdict.h"

#include <optional>

#include "absl/strings/str_format.h"

namespace mmuvisor::vmm {
namespace {

// kPoisoned when the space cannot serve guest memory any more; nullopt otherwise.
std::optional<GuestFaultVerdict> Poisoned(const HostAddressSpace& space) {
  if (space.torn_down()) {
    return GuestFaultVerdict{GuestFaultKind::kPoisoned, "host address space torn down"};
  }
  if (absl::Status failure = space.PageServerFailure(); !failure.ok()) {
    return GuestFaultVerdict{GuestFaultKind::kPoisoned, failure.ToString()};
  }
  return std::nullopt;
}

}  // namespace

const char* GuestFaultKindName(GuestFaultKind kind) {
  switch (kind) {
    case GuestFaultKind::kRetry:
      return "retry";
    case GuestFaultKind::kProtected:
      return "protected";
    case GuestFaultKind::kPoisoned:
      return "poisoned";
    case GuestFaultKind::kNotMapped:
      return "not-mapped";
  }
  return "?";
}

GuestFaultVerdict ClassifyGuestFault(const HostAddressSpace& space, Gpa gpa, bool write) {
  const std::optional<uint64_t> page = space.PageOf(gpa);
  if (!page.has_value()) {
    return {GuestFaultKind::kNotMapped,
            absl::StrFormat("gpa 0x%x is in no memslot", gpa.value)};
  }
  if (std::optional<GuestFaultVerdict> poisoned = Poisoned(space)) return *poisoned;
  const PageProtection prot = space.protection(*page);
  if (prot == PageProtection::kNone || (write && prot != PageProtection::kReadWrite)) {
    return {GuestFaultKind::kProtected,
            absl::StrFormat("guest %s to gpa 0x%x: page protected %s",
                            write ? "write" : "read", gpa.value, PageProtectionName(prot))};
  }
  return {GuestFaultKind::kRetry,
          space.windows().IsLocked(*page)
              ? absl::StrFormat("gpa 0x%x is inside a reclaim/migrate window", gpa.value)
              : absl::StrFormat("gpa 0x%x: window already closed", gpa.value)};
}

GuestFaultVerdict ClassifyMemoryFault(const HostAddressSpace& space, Gpa gpa,
                                      bool in_slot_window) {
  GuestFaultVerdict verdict = ClassifyGuestFault(space, gpa, /*write=*/true);
  if (verdict.kind == GuestFaultKind::kNotMapped && in_slot_window) {
    verdict = {GuestFaultKind::kRetry,
               absl::StrFormat("gpa 0x%x: the churned slot that held it is gone", gpa.value)};
  }
  return verdict;
}

GuestFaultVerdict ClassifyAddresslessGuestFault(const HostAddressSpace& space,
                                                PageRangeLock::Counts at_entry) {
  if (std::optional<GuestFaultVerdict> poisoned = Poisoned(space)) return *poisoned;
  const PageRangeLock::Counts now = space.windows().counts();
  const bool window_during_entry = at_entry.opened != at_entry.closed ||
                                   now.opened != now.closed || now.opened != at_entry.opened;
  if (window_during_entry) {
    return {GuestFaultKind::kRetry, "a host window was open during the entry"};
  }
  uint64_t first = 0;
  const uint64_t protected_pages = space.ProtectedPages(&first);
  if (protected_pages > 0) {
    std::optional<Gpa> gpa = space.memslots()->Reverse(Hva{space.AddressOf(first)});
    return {GuestFaultKind::kProtected,
            absl::StrFormat("guest write to write-protected memory (this kernel does not "
                            "report the address; %d page(s) protected, the first at gpa %#x)",
                            protected_pages, gpa.has_value() ? gpa->value : 0)};
  }
  return {GuestFaultKind::kNotMapped,
          "KVM_RUN failed with EFAULT while no host window was open and no page was "
          "protected: not a host operation's doing"};
}

void WaitForPage(const HostAddressSpace& space, Gpa gpa) {
  if (std::optional<uint64_t> page = space.PageOf(gpa)) space.windows().WaitUntilUnlocked(*page);
}

bool WaitForPage(const HostAddressSpace& space, Gpa gpa, const std::atomic<bool>& stop_requested,
                 absl::Duration slice) {
  const std::optional<uint64_t> page = space.PageOf(gpa);
  if (!page.has_value()) return true;
  // relaxed: only a hint to give up waiting; the runner re-checks with acquire.
  while (!stop_requested.load(std::memory_order_relaxed)) {
    if (space.windows().WaitUntilUnlockedFor(*page, slice)) return true;
  }
  return false;
}

}  // namespace mmuvisor::vmm
