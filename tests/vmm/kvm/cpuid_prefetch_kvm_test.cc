// SupportedCpuidPrefetch on the real device: the thread asks KVM and sets the answer on the
// vCPUs handed to it. A binary of its own, so that the process-wide cache is cold when the
// test starts and the thread, not the caller, does the work. Skips without /dev/kvm.
#include <linux/kvm.h>
#include <sched.h>
#include <sys/ioctl.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>
#include <vector>

#include "gtest/gtest.h"
#include "support/kvm_test_support.h"
#include "support/status_matchers.h"
#include "vmm/kvm/cpuid_prefetch.h"
#include "vmm/kvm/kvm_constants.h"
#include "vmm/kvm/system.h"
#include "vmm/kvm/vcpu.h"
#include "vmm/kvm/vm.h"

namespace mmuvisor::vmm {
namespace {

using ::mmuvisor::testing::IsOk;

// KVM_GET_CPUID2 on `vcpu`: the entries it was given (struct kvm_cpuid2 laid out by hand,
// as kvm_constants.h explains). Linux 6.1 never reports the count back (a success leaves
// the caller's nent; an E2BIG's count is not copied out), later kernels set it on success.
// So the buffer is zeroed and trailing all-zero entries are dropped: no real entry is all
// zero (only leaf 0 has function 0, and its registers hold the vendor string).
std::vector<kvm_cpuid_entry2> VcpuCpuid(const KvmVcpu& vcpu) {
  constexpr uint32_t kMax = 256;
  std::vector<uint8_t> buffer(kvm_abi::kCpuid2HeaderBytes + kMax * sizeof(kvm_cpuid_entry2), 0);
  std::memcpy(buffer.data(), &kMax, sizeof(kMax));
  const unsigned long get_cpuid2 =
      _IOC(_IOC_READ | _IOC_WRITE, KVMIO, 0x91, kvm_abi::kCpuid2HeaderBytes);
  if (ioctl(vcpu.fd(), get_cpuid2, buffer.data()) != 0) {
    ADD_FAILURE() << "KVM_GET_CPUID2: " << std::strerror(errno);
    return {};
  }
  uint32_t nent = 0;
  std::memcpy(&nent, buffer.data(), sizeof(nent));
  std::vector<kvm_cpuid_entry2> entries(std::min(nent, kMax));
  if (entries.empty()) return entries;
  std::memcpy(entries.data(), buffer.data() + kvm_abi::kCpuid2HeaderBytes,
              entries.size() * sizeof(kvm_cpuid_entry2));
  const kvm_cpuid_entry2 zero{};
  while (!entries.empty() && std::memcmp(&entries.back(), &zero, sizeof(zero)) == 0) {
    entries.pop_back();
  }
  return entries;
}

bool HasLongMode(const std::vector<kvm_cpuid_entry2>& entries) {
  for (const kvm_cpuid_entry2& e : entries) {
    if (e.function == 0x80000001u) return ((e.edx >> 29) & 1u) != 0;
  }
  return false;
}

TEST(SupportedCpuidPrefetchKvmTest, TheThreadSetsKvmsSupportedCpuidOnTheHandedVcpus) {
  MMUVISOR_SKIP_WITHOUT_KVM();
  ASSERT_FALSE(KvmSystem::SupportedCpuidCached(kDefaultKvmPath))
      << "this binary's first query: the cache must be cold";
  std::unique_ptr<SupportedCpuidPrefetch> prefetch =
      SupportedCpuidPrefetch::Begin(kDefaultKvmPath);
  cpu_set_t usable;
  ASSERT_EQ(sched_getaffinity(0, sizeof(usable), &usable), 0);
  // With another CPU to run on the query goes to a thread; with one (the nested runner's
  // default VM) there is no thread and the caller asks KVM itself, later: both are checked.
  EXPECT_EQ(prefetch->started(), CPU_COUNT(&usable) >= 2) << CPU_COUNT(&usable) << " CPU(s)";
  if (!prefetch->started()) {
    std::printf("one usable CPU: no prefetch thread, the vCPUs get the caller's query\n");
  }

  ASSERT_OK_AND_ASSIGN(KvmSystem kvm, KvmSystem::Open());
  ASSERT_OK_AND_ASSIGN(KvmLimits limits, kvm.ProbeLimits());
  ASSERT_OK_AND_ASSIGN(KvmVm vm, kvm.CreateVm());
  const int n = limits.max_vcpus >= 2 ? 2 : 1;
  std::vector<std::unique_ptr<KvmVcpu>> vcpus;
  std::vector<KvmVcpu*> handed;
  for (int i = 0; i < n; ++i) {
    ASSERT_OK_AND_ASSIGN(KvmVcpu vcpu, vm.CreateVcpu(i, limits.vcpu_mmap_size));
    vcpus.push_back(std::make_unique<KvmVcpu>(std::move(vcpu)));
    handed.push_back(vcpus.back().get());
    EXPECT_TRUE(VcpuCpuid(*vcpus.back()).empty()) << "a new vCPU has no CPUID yet";
  }
  prefetch->SetOn(handed, &kvm);
  ASSERT_THAT(prefetch->Finish(), IsOk());
  prefetch->Stop();

  ASSERT_TRUE(KvmSystem::SupportedCpuidCached(kDefaultKvmPath));
  ASSERT_OK_AND_ASSIGN(std::vector<kvm_cpuid_entry2> supported, kvm.SupportedCpuid());
  ASSERT_TRUE(HasLongMode(supported));
  for (const auto& vcpu : vcpus) {
    // KVM keeps what it was given, give or take leaves it drops (kvm_pvm keeps 56 of 59):
    // not empty any more, and with long mode, as every mmuvisor guest needs.
    const std::vector<kvm_cpuid_entry2> set = VcpuCpuid(*vcpu);
    EXPECT_FALSE(set.empty()) << "vCPU " << vcpu->id();
    EXPECT_LE(set.size(), supported.size()) << "vCPU " << vcpu->id();
    EXPECT_TRUE(HasLongMode(set)) << "vCPU " << vcpu->id();
  }
}

}  // namespace
}  // namespace mmuvisor::vmm
