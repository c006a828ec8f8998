// The typed KVM layer against the real /dev/kvm: capability probing, VM and memslot
// ioctls (including the errors KVM returns for overlap and misalignment), vCPU state.
// Skips without /dev/kvm.
#include <linux/kvm.h>
#include <memory>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "support/kvm_test_support.h"
#include "support/status_matchers.h"
#include "vmm/kvm/cpuid_prefetch.h"
#include "vmm/kvm/system.h"
#include "vmm/kvm/vcpu.h"
#include "vmm/kvm/vm.h"
#include "vmm/paging/guest_ram.h"

namespace mmuvisor::vmm {
namespace {

using ::mmuvisor::testing::IsOk;
using ::mmuvisor::testing::StatusIs;
using ::testing::HasSubstr;

TEST(KvmSystemTest, ProbesApiVersionAndLimits) {
  MMUVISOR_SKIP_WITHOUT_KVM();
  ASSERT_OK_AND_ASSIGN(KvmSystem kvm, KvmSystem::Open());
  EXPECT_EQ(*kvm.ApiVersion(), KVM_API_VERSION);
  ASSERT_OK_AND_ASSIGN(KvmLimits limits, kvm.ProbeLimits());
  EXPECT_GT(limits.nr_memslots, 0);
  EXPECT_GE(limits.max_vcpus, limits.recommended_vcpus);
  EXPECT_TRUE(limits.immediate_exit);
  EXPECT_GE(limits.vcpu_mmap_size, static_cast<int>(sizeof(kvm_run)));
  ASSERT_OK_AND_ASSIGN(std::vector<kvm_cpuid_entry2> cpuid, kvm.SupportedCpuid());
  EXPECT_FALSE(cpuid.empty());
}

TEST(KvmSystemTest, PrefetchedSupportedCpuidIsKvmsAnswer) {
  MMUVISOR_SKIP_WITHOUT_KVM();
  // The prefetch fills the process-wide cache (or holds its lock while it asks): the answer
  // afterwards is KVM's, with long mode (CPUID 0x80000001 EDX bit 29), which every
  // mmuvisor guest needs.
  SupportedCpuidPrefetch::Begin(kDefaultKvmPath).reset();  // joined
  ASSERT_OK_AND_ASSIGN(KvmSystem kvm, KvmSystem::Open());
  ASSERT_OK_AND_ASSIGN(std::vector<kvm_cpuid_entry2> cpuid, kvm.SupportedCpuid());
  bool long_mode = false;
  for (const kvm_cpuid_entry2& e : cpuid) {
    if (e.function == 0x80000001u) long_mode = (e.edx >> 29) & 1u;
  }
  EXPECT_TRUE(long_mode);
  // Answered once per process: a later prefetch (the next Machine's) starts no thread.
  EXPECT_TRUE(KvmSystem::SupportedCpuidCached(kDefaultKvmPath));
  EXPECT_FALSE(SupportedCpuidPrefetch::Begin(kDefaultKvmPath)->started());
}

TEST(KvmVmTest, MemslotErrorsNameTheIoctlAndArguments) {
  MMUVISOR_SKIP_WITHOUT_KVM();
  ASSERT_OK_AND_ASSIGN(KvmSystem kvm, KvmSystem::Open());
  ASSERT_OK_AND_ASSIGN(KvmVm vm, kvm.CreateVm());
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<GuestRam> ram, GuestRam::Create(4ull << 20));
  const uint64_t hva = reinterpret_cast<uint64_t>(ram->base());
  ASSERT_THAT(vm.SetUserMemoryRegion(0, 0, 0, ram->bytes(), hva), IsOk());
  // A second slot over the same guest range: KVM says EEXIST.
  EXPECT_THAT(vm.SetUserMemoryRegion(1, 0, 0x100000, 0x200000, hva),
              StatusIs(absl::StatusCode::kAlreadyExists,
                       HasSubstr("KVM_SET_USER_MEMORY_REGION slot=1 gpa=0x100000 size=0x200000")));
  // A misaligned guest address: EINVAL.
  EXPECT_THAT(vm.SetUserMemoryRegion(2, 0, 0x10000800, 0x1000, hva),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("slot=2 gpa=0x10000800 size=0x1000")));
  EXPECT_THAT(vm.SetUserMemoryRegion(2, 0, 0x10000800, 0x1000, hva),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(": Invalid argument")));
  // Deleting the slot (size 0) is fine.
  EXPECT_THAT(vm.SetUserMemoryRegion(0, 0, 0, 0, hva), IsOk());
}

TEST(KvmVcpuTest, CreatesVcpuAndRoundTripsRegisters) {
  MMUVISOR_SKIP_WITHOUT_KVM();
  ASSERT_OK_AND_ASSIGN(KvmSystem kvm, KvmSystem::Open());
  ASSERT_OK_AND_ASSIGN(KvmLimits limits, kvm.ProbeLimits());
  ASSERT_OK_AND_ASSIGN(KvmVm vm, kvm.CreateVm());
  ASSERT_OK_AND_ASSIGN(KvmVcpu vcpu, vm.CreateVcpu(0, limits.vcpu_mmap_size));
  ASSERT_OK_AND_ASSIGN(std::vector<kvm_cpuid_entry2> cpuid, kvm.SupportedCpuid());
  ASSERT_THAT(vcpu.SetCpuid(cpuid), IsOk());
  ASSERT_OK_AND_ASSIGN(kvm_regs regs, vcpu.GetRegs());
  regs.rip = 0x123456;
  regs.rbx = 0xfeedface;
  ASSERT_THAT(vcpu.SetRegs(regs), IsOk());
  ASSERT_OK_AND_ASSIGN(kvm_regs back, vcpu.GetRegs());
  EXPECT_EQ(back.rip, 0x123456u);
  EXPECT_EQ(back.rbx, 0xfeedfaceu);
  ASSERT_OK_AND_ASSIGN(kvm_sregs sregs, vcpu.GetSregs());
  EXPECT_THAT(vcpu.SetSregs(sregs), IsOk());
  // The same vCPU id twice: EEXIST.
  EXPECT_THAT(vm.CreateVcpu(0, limits.vcpu_mmap_size),
              StatusIs(absl::StatusCode::kAlreadyExists, HasSubstr("KVM_CREATE_VCPU id=0")));
}

TEST(KvmVcpuTest, InKernelLapicLeavesApplicationProcessorsWaitingUntilMadeRunnable) {
  MMUVISOR_SKIP_WITHOUT_KVM();
  ASSERT_OK_AND_ASSIGN(KvmSystem kvm, KvmSystem::Open());
  ASSERT_OK_AND_ASSIGN(KvmLimits limits, kvm.ProbeLimits());
  // Without an irqchip every vCPU is runnable from the start, and KVM accepts no other state.
  {
    ASSERT_OK_AND_ASSIGN(KvmVm vm, kvm.CreateVm());
    ASSERT_OK_AND_ASSIGN(KvmVcpu ap, vm.CreateVcpu(1, limits.vcpu_mmap_size));
    ASSERT_OK_AND_ASSIGN(uint32_t state, ap.GetMpState());
    EXPECT_EQ(state, uint32_t{KVM_MP_STATE_RUNNABLE});
    EXPECT_THAT(ap.SetMpState(KVM_MP_STATE_HALTED),
                StatusIs(absl::StatusCode::kInvalidArgument,
                         HasSubstr("KVM_SET_MP_STATE vcpu=1 mp_state=3")));
  }
  // With the LAPIC in KVM (the Machine's split irqchip), vCPU 0 runs and the others wait
  // for INIT/SIPI until made runnable.
  ASSERT_OK_AND_ASSIGN(KvmVm vm, kvm.CreateVm());
  ASSERT_THAT(vm.EnableCap(KVM_CAP_SPLIT_IRQCHIP, 0), IsOk());
  ASSERT_OK_AND_ASSIGN(KvmVcpu bsp, vm.CreateVcpu(0, limits.vcpu_mmap_size));
  ASSERT_OK_AND_ASSIGN(KvmVcpu ap, vm.CreateVcpu(1, limits.vcpu_mmap_size));
  ASSERT_OK_AND_ASSIGN(uint32_t bsp_state, bsp.GetMpState());
  ASSERT_OK_AND_ASSIGN(uint32_t ap_state, ap.GetMpState());
  EXPECT_EQ(bsp_state, uint32_t{KVM_MP_STATE_RUNNABLE});
  EXPECT_EQ(ap_state, uint32_t{KVM_MP_STATE_UNINITIALIZED});
  ASSERT_THAT(ap.SetMpState(KVM_MP_STATE_RUNNABLE), IsOk());
  ASSERT_OK_AND_ASSIGN(ap_state, ap.GetMpState());
  EXPECT_EQ(ap_state, uint32_t{KVM_MP_STATE_RUNNABLE});
  // Too late once a vCPU exists: KVM says EEXIST.
  EXPECT_THAT(vm.EnableCap(KVM_CAP_SPLIT_IRQCHIP, 0),
              StatusIs(absl::StatusCode::kAlreadyExists, HasSubstr("KVM_ENABLE_CAP")));
}

}  // namespace
}  // namespace mmuvisor::vmm
