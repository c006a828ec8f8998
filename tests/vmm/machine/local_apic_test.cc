// WantInKernelLapic: KVM gets the LAPIC only for a long-mode CPL3 guest whose mapped ranges
// avoid the APIC page, and never when the config says userspace. Pure: no KVM.
#include "vmm/machine/local_apic.h"

#include <vector>

#include "gtest/gtest.h"

namespace mmuvisor::vmm {
namespace {

constexpr uint64_t k64MiB = 64ull << 20;
constexpr uint64_t k1GiB = 1ull << 30;

bool Want(BootMode boot, GuestPrivilege privilege, uint64_t ram,
          std::vector<IdentityWindow> windows = {},
          LocalApicMode mode = LocalApicMode::kAuto) {
  return WantInKernelLapic(mode, boot, privilege, ram, windows);
}

TEST(LocalApicTest, OnlyLongModeAtCpl3) {
  EXPECT_TRUE(Want(BootMode::kLong64, GuestPrivilege::kUser, k64MiB));
  // A CPL0 or real-mode guest may HLT: that must stay KVM_EXIT_HLT.
  EXPECT_FALSE(Want(BootMode::kLong64, GuestPrivilege::kKernel, k64MiB));
  EXPECT_FALSE(Want(BootMode::kReal16, GuestPrivilege::kUser, k64MiB));
  EXPECT_FALSE(Want(BootMode::kReal16, GuestPrivilege::kKernel, k64MiB));
}

TEST(LocalApicTest, UserspaceModeNeverPutsItInKvm) {
  EXPECT_FALSE(Want(BootMode::kLong64, GuestPrivilege::kUser, k64MiB, {},
                    LocalApicMode::kUserspace));
}

TEST(LocalApicTest, RamReachingTheApicPageKeepsItOut) {
  // RAM ending at or below the page is fine (rounded up to 2 MiB as the page tables map
  // it, it still ends there: the page is 2 MiB aligned).
  EXPECT_TRUE(Want(BootMode::kLong64, GuestPrivilege::kUser, kLocalApicGpa - 4096));
  EXPECT_TRUE(Want(BootMode::kLong64, GuestPrivilege::kUser, kLocalApicGpa));
  EXPECT_FALSE(Want(BootMode::kLong64, GuestPrivilege::kUser, kLocalApicGpa + 4096));
  EXPECT_FALSE(Want(BootMode::kLong64, GuestPrivilege::kUser, 8 * k1GiB));
}

TEST(LocalApicTest, WindowsMeetingTheApicPageKeepItOut) {
  const auto want = [](IdentityWindow w) {
    return Want(BootMode::kLong64, GuestPrivilege::kUser, k64MiB, {{k1GiB, k64MiB}, w});
  };
  // Aliases of 64 MiB RAM at 1..4 GiB: none covers 0xfee00000.
  EXPECT_TRUE(want({3 * k1GiB, k64MiB}));
  EXPECT_TRUE(want({4 * k1GiB, k64MiB}));
  // A window over the page, one starting inside it, one ending inside it.
  EXPECT_FALSE(want({3 * k1GiB, k1GiB}));
  EXPECT_FALSE(want({kLocalApicGpa, 2ull << 20}));
  EXPECT_FALSE(want({kLocalApicGpa + 2048, 2ull << 20}));
  EXPECT_FALSE(want({kLocalApicGpa - (2ull << 20), (2ull << 20) + 1}));
  // Touching it on either side is not meeting it.
  EXPECT_TRUE(want({kLocalApicGpa - (2ull << 20), 2ull << 20}));
  EXPECT_TRUE(want({kLocalApicGpa + kLocalApicBytes, 2ull << 20}));
  // Empty windows meet nothing; huge ones do not wrap.
  EXPECT_TRUE(want({kLocalApicGpa, 0}));
  EXPECT_FALSE(want({0, UINT64_MAX}));
}

}  // namespace
}  // namespace mmuvisor::vmm
