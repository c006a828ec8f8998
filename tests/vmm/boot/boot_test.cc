// PrepareGuest end to end on the built-in images (no KVM): layout, boot info, page tables
// and the per-vCPU register state it hands to the VMM.
#include "vmm/boot/boot.h"

#include <elf.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <vector>

#include "elf_builder.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "mmuvisor/guest_abi.h"
#include "support/status_matchers.h"
#include "vmm/boot/guest_images.h"
#include "vmm/boot/page_tables.h"
#include "vmm/boot/x86_state.h"

namespace mmuvisor::vmm {
namespace {

using ::mmuvisor::testing::StatusIs;
using ::mmuvisor::vmm::testing::BuildElf;
using ::mmuvisor::vmm::testing::SegmentSpec;
using ::testing::HasSubstr;

constexpr uint64_t kRamSize = 8ull << 20;

class BootTest : public ::testing::Test {
 protected:
  BootTest() : bytes_(kRamSize, 0x5a), ram_{bytes_.data(), kRamSize} {}
  absl::Span<const uint8_t> Image(const char* name) {
    absl::StatusOr<absl::Span<const uint8_t>> image = BuiltinGuestImage(name);
    EXPECT_TRUE(image.ok()) << image.status();
    return image.ok() ? *image : absl::Span<const uint8_t>();
  }
  std::vector<uint8_t> bytes_;
  GuestRamView ram_;
};

TEST_F(BootTest, PreparesLongModeGuest) {
  BootOptions options;
  options.nr_vcpus = 2;
  options.seed = 42;
  options.flags = 3;
  options.args[7] = 99;
  ASSERT_OK_AND_ASSIGN(BootPlan plan, PrepareGuest(ram_, Image("smp"), options));
  EXPECT_EQ(plan.image.mode, BootMode::kLong64);
  EXPECT_EQ(plan.cr3, MMV_PAGE_TABLE_GPA);
  EXPECT_EQ(plan.layout.free_start % 4096, 0u);
  EXPECT_GE(plan.layout.free_start, plan.image.highest_gpa);
  EXPECT_EQ(plan.layout.free_end, kRamSize - 2 * MMV_STACK_SIZE);

  mmv_boot_info info;
  std::memcpy(&info, bytes_.data() + MMV_BOOT_INFO_GPA, sizeof(info));
  EXPECT_EQ(info.magic, MMV_BOOT_INFO_MAGIC);
  EXPECT_EQ(info.ram_size, kRamSize);
  EXPECT_EQ(info.free_start, plan.layout.free_start);
  EXPECT_EQ(info.free_end, plan.layout.free_end);
  EXPECT_EQ(info.nr_vcpus, 2u);
  EXPECT_EQ(info.flags, 3u);
  EXPECT_EQ(info.seed, 42u);
  EXPECT_EQ(info.args[7], 99u);
  for (uint64_t i = 0; i < MMV_UCALL_STRIDE * MMV_UCALL_MAX_VCPUS; ++i) {
    ASSERT_EQ(bytes_[MMV_UCALL_GPA + i], 0) << "ucall byte " << i;
  }

  // The entry, the boot info, the ucall blocks and both stacks are reachable from CPL3.
  for (uint32_t vcpu = 0; vcpu < 2; ++vcpu) {
    const kvm_regs regs = InitialRegs(plan, vcpu, 7);
    const kvm_sregs sregs = InitialSregs(plan, vcpu, kvm_sregs{});
    EXPECT_EQ(regs.rip, plan.image.entry);
    EXPECT_EQ(regs.rdi, vcpu);
    EXPECT_EQ(regs.rsi, 7u);
    EXPECT_EQ(sregs.cr3, plan.cr3);
    EXPECT_EQ(sregs.cs.dpl, 3);
    EXPECT_EQ(regs.rflags & kRflagsIoplMask, 0u) << "ports via the TSS bitmap, never IOPL";
    // The I/O bitmap the TSS names is reachable through the guest's page tables (the CPU
    // reads it by linear address on every IN/OUT at CPL3).
    bool bitmap_user = false;
    ASSERT_OK_AND_ASSIGN(uint64_t bitmap_gpa, WalkPageTables(ram_, plan.cr3,
                                                             MMV_IO_BITMAP_GPA + 8192,
                                                             &bitmap_user));
    EXPECT_EQ(bitmap_gpa, MMV_IO_BITMAP_GPA + 8192u);
    // The runtime finds its vCPU index from RSP (boot_layout.h).
    EXPECT_EQ((kRamSize - regs.rsp) / MMV_STACK_SIZE, vcpu);
    for (uint64_t gva : {uint64_t{regs.rip}, uint64_t{regs.rsp}, uint64_t{MMV_BOOT_INFO_GPA},
                         plan.layout.UcallGpa(vcpu), plan.layout.StackBottom(vcpu)}) {
      bool user = false;
      ASSERT_OK_AND_ASSIGN(uint64_t gpa, WalkPageTables(ram_, plan.cr3, gva, &user));
      EXPECT_EQ(gpa, gva);
      EXPECT_TRUE(user);
    }
  }
}

// On RAM known to be zero the ucall blocks, the IDT and the I/O bitmap are not written
// (their pages are faulted in only when used); everything else is as on any RAM.
TEST_F(BootTest, FreshRamIsNotZeroedAgain) {
  BootOptions options;
  options.nr_vcpus = 2;
  options.ram_is_zero = true;  // a lie here (the RAM holds 0x5a): shows what is written
  ASSERT_OK_AND_ASSIGN(BootPlan plan, PrepareGuest(ram_, Image("smp"), options));
  for (uint64_t i = 0; i < MMV_UCALL_STRIDE * MMV_UCALL_MAX_VCPUS; ++i) {
    ASSERT_EQ(bytes_[MMV_UCALL_GPA + i], 0x5a) << "ucall byte " << i << " was written";
  }
  for (uint64_t i = 0; i < kIoBitmapBytes; ++i) {
    ASSERT_EQ(bytes_[kIoBitmapGpa + i], 0x5a) << "I/O bitmap byte " << i << " was written";
  }
  for (uint64_t i = 0; i < 4096; ++i) {
    ASSERT_EQ(bytes_[MMV_IDT_GPA + i], 0x5a) << "IDT byte " << i << " was written";
  }
  EXPECT_EQ(bytes_[kIoBitmapGpa + kIoBitmapBytes], 0xff) << "the byte past the bitmap";
  mmv_boot_info info;
  std::memcpy(&info, bytes_.data() + MMV_BOOT_INFO_GPA, sizeof(info));
  EXPECT_EQ(info.magic, MMV_BOOT_INFO_MAGIC);
  EXPECT_EQ(info.nr_vcpus, 2u);
  EXPECT_EQ(plan.cr3, MMV_PAGE_TABLE_GPA);

  // The same on RAM that is not zero: all three are cleared.
  std::fill(bytes_.begin(), bytes_.end(), 0x5a);
  options.ram_is_zero = false;
  ASSERT_OK(PrepareGuest(ram_, Image("smp"), options).status());
  EXPECT_EQ(bytes_[MMV_UCALL_GPA + MMV_UCALL_STRIDE * MMV_UCALL_MAX_VCPUS - 1], 0);
  EXPECT_EQ(bytes_[kIoBitmapGpa + kIoBitmapBytes - 1], 0);
  EXPECT_EQ(bytes_[MMV_IDT_GPA + 4095], 0);
}

// A 1-page image whose bss reaches the stacks, on fresh RAM whose pages above the image's
// file bytes cannot be touched at all: PrepareGuest must not write (or read) the bss. It
// used to memset it, faulting in nearly all of --mem before the guest ran.
TEST(BootFreshRamTest, ABssOfNearlyAllRamIsNotTouched) {
  constexpr uint64_t kSize = 64ull << 20;
  constexpr uint64_t kWritable = MMV_IMAGE_GPA + 4096;  // boot structures + the text page
  void* base = mmap(nullptr, kSize, PROT_READ | PROT_WRITE,
                    MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  ASSERT_NE(base, MAP_FAILED);
  ASSERT_EQ(mprotect(static_cast<uint8_t*>(base) + kWritable, kSize - kWritable, PROT_NONE), 0);
  const GuestRamView ram{static_cast<uint8_t*>(base), kSize};
  const uint64_t stacks_begin = kSize - MMV_STACK_SIZE;
  const std::vector<uint8_t> elf = BuildElf(
      MMV_IMAGE_GPA, {SegmentSpec{PT_LOAD, PF_R | PF_W | PF_X, MMV_IMAGE_GPA, {0xeb, 0xfe},
                                  stacks_begin - MMV_IMAGE_GPA}});
  BootOptions options;
  options.ram_is_zero = true;
  EXPECT_EXIT(
      {
        absl::StatusOr<BootPlan> plan = PrepareGuest(ram, absl::MakeConstSpan(elf), options);
        if (!plan.ok()) std::fprintf(stderr, "%s\n", plan.status().ToString().c_str());
        _exit(plan.ok() && plan->layout.free_start == stacks_begin ? 0 : 1);
      },
      ::testing::ExitedWithCode(0), "");
  munmap(base, kSize);
}

// A bss that runs into the stacks is an image error found before anything is written.
TEST_F(BootTest, ABssRunningIntoTheStacksLeavesRamUntouched) {
  BootOptions options;
  options.nr_vcpus = 2;
  // Ends one page inside vCPU 1's stack region.
  const uint64_t end = kRamSize - 2 * MMV_STACK_SIZE + 4096;
  const std::vector<uint8_t> elf = BuildElf(
      MMV_IMAGE_GPA, {SegmentSpec{PT_LOAD, PF_R | PF_X, MMV_IMAGE_GPA, {0xeb, 0xfe},
                                  end - MMV_IMAGE_GPA}});
  const std::vector<uint8_t> before = bytes_;
  EXPECT_THAT(PrepareGuest(ram_, absl::MakeConstSpan(elf), options),
              StatusIs(absl::StatusCode::kOutOfRange,
                       HasSubstr("ELF image: PT_LOAD [0x100000, 0x7e1000) runs into the vCPU "
                                 "stacks [0x7e0000, 0x800000)")));
  EXPECT_TRUE(bytes_ == before) << "a rejected image changed guest RAM";
  options.nr_vcpus = 1;  // the same image leaves room for one stack
  EXPECT_OK(PrepareGuest(ram_, absl::MakeConstSpan(elf), options).status());
}

TEST_F(BootTest, KernelPrivilegeEntersCpl0) {
  BootOptions options;
  options.privilege = GuestPrivilege::kKernel;
  ASSERT_OK_AND_ASSIGN(BootPlan plan, PrepareGuest(ram_, Image("hello64"), options));
  EXPECT_EQ(InitialSregs(plan, 0, kvm_sregs{}).cs.dpl, 0);
  EXPECT_EQ(InitialRegs(plan, 0, 0).rflags & kRflagsIoplMask, 0u) << "IOPL 0 at CPL0 too";
}

TEST_F(BootTest, TrTypeTravelsFromTheOptionsToTheSregs) {
  BootOptions options;
  EXPECT_EQ(options.tr_type, TrType::kBusy);
  options.tr_type = TrType::kAvailable;
  ASSERT_OK_AND_ASSIGN(BootPlan plan, PrepareGuest(ram_, Image("hello64"), options));
  EXPECT_EQ(InitialSregs(plan, 0, kvm_sregs{}).tr.type, 0x9);
}

TEST_F(BootTest, PreparesRealModeGuest) {
  ASSERT_OK_AND_ASSIGN(BootPlan plan, PrepareGuest(ram_, Image("hello16"), BootOptions{}));
  EXPECT_EQ(plan.image.mode, BootMode::kReal16);
  EXPECT_EQ(plan.cr3, 0u);
  const kvm_regs regs = InitialRegs(plan, 0, 5);
  EXPECT_EQ(regs.rflags & kRflagsIoplMask, 0u);
  EXPECT_EQ(regs.rip, MMV_REAL_MODE_LOAD_GPA);
  EXPECT_EQ(regs.rsp, MMV_REAL_MODE_STACK_TOP);
  const kvm_sregs sregs = InitialSregs(plan, 0, kvm_sregs{});
  EXPECT_EQ(sregs.cr0 & kCr0Pe, 0u);
  EXPECT_EQ(sregs.cs.base, 0u);
  EXPECT_EQ(bytes_[MMV_PAGE_TABLE_GPA], 0x5a);  // no page tables in real mode
  mmv_boot_info info;
  std::memcpy(&info, bytes_.data() + MMV_BOOT_INFO_GPA, sizeof(info));
  EXPECT_EQ(info.magic, MMV_BOOT_INFO_MAGIC);
  EXPECT_EQ(info.nr_vcpus, 1u);
}

// Refused before the image is copied: the boot mode comes from checking the image, not
// from loading it.
TEST_F(BootTest, RejectsRealModeWithSeveralVcpus) {
  BootOptions options;
  options.nr_vcpus = 2;
  EXPECT_THAT(PrepareGuest(ram_, Image("hello16"), options),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("real-mode images run on exactly one vCPU")));
  EXPECT_TRUE(std::all_of(bytes_.begin(), bytes_.end(), [](uint8_t b) { return b == 0x5a; }))
      << "a refused real-mode guest changed RAM";
}

// A vCPU count beyond the ucall blocks is named as such, before the loader sees stacks of
// 200 vCPUs covering all of RAM (which it would call an image that does not fit).
TEST_F(BootTest, RejectsTooManyVcpusBeforeLookingAtTheImage) {
  BootOptions options;
  options.nr_vcpus = 200;
  EXPECT_THAT(PrepareGuest(ram_, Image("hello64"), options),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("200 vCPUs, want 1..32")));
  options.nr_vcpus = 0;
  EXPECT_THAT(PrepareGuest(ram_, Image("hello64"), options),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("0 vCPUs, want 1..32")));
  EXPECT_TRUE(std::all_of(bytes_.begin(), bytes_.end(), [](uint8_t b) { return b == 0x5a; }))
      << "a refused vCPU count changed RAM";
}

TEST_F(BootTest, RejectsRamSizeNotPageMultipleBeforeCopying) {
  const GuestRamView odd{bytes_.data(), kRamSize - 1};
  EXPECT_THAT(PrepareGuest(odd, Image("hello64"), BootOptions{}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("multiple of 4 KiB")));
  EXPECT_TRUE(std::all_of(bytes_.begin(), bytes_.end(), [](uint8_t b) { return b == 0x5a; }))
      << "a refused RAM size changed RAM";
}

TEST_F(BootTest, PassesLoaderErrorsThrough) {
  const std::vector<uint8_t> junk = {'n', 'o', 't', ' ', 'e', 'l', 'f'};
  EXPECT_THAT(PrepareGuest(ram_, absl::MakeConstSpan(junk), BootOptions{}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("bad magic")));
}

TEST(BootLayoutTest, ChecksVcpuCountsAndSpace) {
  LoadedImage image;
  image.lowest_gpa = MMV_IMAGE_GPA;
  image.highest_gpa = MMV_IMAGE_GPA + 0x1801;
  ASSERT_OK_AND_ASSIGN(BootLayout layout, ComputeBootLayout(4ull << 20, 3, image));
  EXPECT_EQ(layout.free_start, MMV_IMAGE_GPA + 0x2000);
  EXPECT_EQ(layout.free_end, (4ull << 20) - 3 * MMV_STACK_SIZE);
  EXPECT_EQ(layout.StackTop(2), (4ull << 20) - 2 * MMV_STACK_SIZE);
  EXPECT_EQ(layout.UcallGpa(2), MMV_UCALL_GPA + 2 * MMV_UCALL_STRIDE);
  EXPECT_THAT(ComputeBootLayout(4ull << 20, 0, image),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("0 vCPUs")));
  EXPECT_THAT(ComputeBootLayout(4ull << 20, MMV_UCALL_MAX_VCPUS + 1, image),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("33 vCPUs")));
  EXPECT_THAT(ComputeBootLayout((4ull << 20) + 1, 1, image),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("multiple of 4 KiB")));
  // 1 MiB + 8 KiB of image, then 16 stacks of 64 KiB = 1 MiB: 2 MiB is 8 KiB short.
  EXPECT_THAT(ComputeBootLayout(2ull << 20, 16, image),
              StatusIs(absl::StatusCode::kOutOfRange, HasSubstr("cannot hold the image")));
  EXPECT_OK(ComputeBootLayout((2ull << 20) + 0x2000, 16, image));
}

}  // namespace
}  // namespace mmuvisor::vmm
