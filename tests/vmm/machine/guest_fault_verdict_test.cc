// How the Machine judges a guest memory fault the kernel reports with its address
// (KVM_EXIT_MEMORY_FAULT), without KVM: a HostAddressSpace and the verdict functions.
#include "gtest/gtest.h"
#include "support/status_matchers.h"
#include "vmm/host/host_address_space.h"
#include "vmm/machine/guest_fault_verdict.h"

namespace mmuvisor::vmm {
namespace {

constexpr uint64_t kPages = 16;

// A fault in a churned slot's window whose slot has gone since KVM's exit (the churn
// thread deleted or moved it before the vCPU thread looked) is retried: entered again,
// the access becomes an MMIO exit. Judged as outside every memslot, it stopped the guest
// as crashed ("gpa ... is in no memslot").
TEST(GuestFaultVerdictTest, AMemoryFaultWhoseChurnedSlotIsGoneIsRetriedNotACrash) {
  HostAddressSpaceOptions o;
  o.ram_bytes = kPages * kPageSize;
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<HostAddressSpace> space, HostAddressSpace::Create(o));
  const Gpa gone{kPages * kPageSize + 0x80};  // past RAM: no memslot holds it
  EXPECT_EQ(ClassifyMemoryFault(*space, gone, /*in_slot_window=*/true).kind,
            GuestFaultKind::kRetry);
  // Outside any window it is what it was: no memslot, a guest bug.
  const GuestFaultVerdict stray = ClassifyMemoryFault(*space, gone, /*in_slot_window=*/false);
  EXPECT_EQ(stray.kind, GuestFaultKind::kNotMapped);
  EXPECT_EQ(stray.detail, "gpa 0x10080 is in no memslot");
  // A gpa of RAM is judged as before, window or not.
  EXPECT_EQ(ClassifyMemoryFault(*space, Gpa{kPageSize}, true).kind, GuestFaultKind::kRetry);
}

}  // namespace
}  // namespace mmuvisor::vmm
