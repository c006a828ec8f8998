// Shared by the KVM-backed tests: skip (visibly, with the reason) when /dev/kvm cannot be
// opened, and a spinning guest image for timeout tests.
#ifndef MMUVISOR_TESTS_SUPPORT_KVM_TEST_SUPPORT_H_
#define MMUVISOR_TESTS_SUPPORT_KVM_TEST_SUPPORT_H_

#include <cstdint>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "mmuvisor/guest_abi.h"
#include "vmm/boot/elf_builder.h"
#include "vmm/kvm/system.h"

// Use at the top of a TEST body (it returns from the test on skip).
#define MMUVISOR_SKIP_WITHOUT_KVM()                                                 \
  do {                                                                              \
    absl::StatusOr<::mmuvisor::vmm::KvmSystem> kvm_probe_ =                         \
        ::mmuvisor::vmm::KvmSystem::Open();                                         \
    if (!kvm_probe_.ok()) {                                                         \
      GTEST_SKIP() << "needs /dev/kvm: " << kvm_probe_.status().message();          \
    }                                                                               \
  } while (0)

namespace mmuvisor::vmm::testing {

// A long-mode image whose entry is `jmp .` at MMV_IMAGE_GPA: it never exits by itself.
inline std::vector<uint8_t> SpinningGuestElf() {
  return BuildElf(MMV_IMAGE_GPA,
                  {SegmentSpec{PT_LOAD, PF_R | PF_X, MMV_IMAGE_GPA, {0xeb, 0xfe}, 0}});
}

}  // namespace mmuvisor::vmm::testing

#endif  // MMUVISOR_TESTS_SUPPORT_KVM_TEST_SUPPORT_H_
