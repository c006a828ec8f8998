// RealModeHelperGpa: KVM's real-mode TSS and identity-map pages never land in guest memory
// (RAM, aliases, memslot-churn windows) or on the APIC page, and stay below 4 GiB. Pure: no
// KVM.
#include "vmm/machine/real_mode_helpers.h"

#include <vector>

#include "gtest/gtest.h"
#include "vmm/machine/local_apic.h"

namespace mmuvisor::vmm {
namespace {

constexpr uint64_t k1GiB = 1ull << 30;
constexpr uint64_t k4GiB = 4 * k1GiB;

TEST(RealModeHelpersTest, SmallRamKeepsKvmsUsualAddresses) {
  EXPECT_EQ(RealModeHelperGpa(64ull << 20, {}), kDefaultIdentityMapGpa);
  // The TSS then sits at 0xfffbd000, where QEMU and Firecracker put it.
  EXPECT_EQ(kDefaultIdentityMapGpa + 4096, 0xfffbd000u);
}

TEST(RealModeHelpersTest, AWindowOverTheUsualAddressMovesThemBelowIt) {
  // 512 MiB of RAM, a memslot-churn window [3.75 GiB, 4 GiB) over 0xfffbc000: the block
  // goes right under the window.
  const std::vector<IdentityWindow> windows{{k1GiB, 512u << 20},
                                            {3 * k1GiB + (768u << 20), 256u << 20}};
  EXPECT_EQ(RealModeHelperGpa(512u << 20, windows),
            3 * k1GiB + (768u << 20) - kRealModeHelperBytes);
}

TEST(RealModeHelpersTest, NeverOnTheApicPage) {
  // RAM ends 1 MiB below the APIC page, a window covers the rest up to 4 GiB: the only
  // holes are the 1 MiB under the page and nothing above it.
  EXPECT_EQ(RealModeHelperGpa(kLocalApicGpa - (1u << 20), {{kLocalApicGpa + 4096, k4GiB}}),
            kLocalApicGpa - kRealModeHelperBytes);
}

TEST(RealModeHelpersTest, NoFreeBlockBelow4GiBGivesNone) {
  // 1 GiB of RAM and three aliases: every byte below 4 GiB is guest memory.
  const std::vector<IdentityWindow> aliases{{k1GiB, k1GiB}, {2 * k1GiB, k1GiB},
                                            {3 * k1GiB, k1GiB}};
  EXPECT_EQ(RealModeHelperGpa(k1GiB, aliases), std::nullopt);
  // RAM past 4 GiB alone covers it all too.
  EXPECT_EQ(RealModeHelperGpa(8 * k1GiB, {}), std::nullopt);
}

TEST(RealModeHelpersTest, WindowsAbove4GiBOrWithWrappingSizesAreClipped) {
  // Above 4 GiB: no matter. A size that would wrap ends at 4 GiB, clear of 0xfffbc000.
  EXPECT_EQ(RealModeHelperGpa(64ull << 20, {{8 * k1GiB, k1GiB}, {k4GiB - 4096, ~0ull}}),
            kDefaultIdentityMapGpa);
  // Unaligned edges count whole pages: a window ending one byte into the block's page.
  EXPECT_NE(RealModeHelperGpa(64ull << 20, {{kDefaultIdentityMapGpa - 100, 101}}),
            kDefaultIdentityMapGpa);
}

}  // namespace
}  // namespace mmuvisor::vmm
