#include "dma_test_rig.h"

#include <cstring>
#include <utility>
#include <vector>

#include "gtest/gtest.h"

namespace mmuvisor::vmm::dma {

DmaRig::DmaRig(DmaRigOptions options) : options_(std::move(options)) {
  testing::PagePoolSpaceOptions space_options;
  space_options.pages = options_.pages;
  space_ = std::make_unique<testing::PagePoolSpace>(space_options);
  mmu::FaultHooks hooks = options_.hooks;
  hooks.retry_checks = !options_.skip_retry_check;
  if (!options_.mirror) {
    mmu::SecondaryMmuOptions mmu_options;
    mmu_options.name = "dma-mmu";
    mmu_options.retry_timeout = absl::Seconds(2);
    mmu_ = std::make_unique<DeviceMmu>(*space_, mmu_options);
    std::vector<mmu::MemorySlot> slots = {{0, options_.pages, space_->base()}};
    for (uint32_t k = 1; k <= options_.ram_aliases; ++k) {
      slots.push_back({k * options_.alias_stride / 4096, options_.pages, space_->base()});
    }
    EXPECT_TRUE(mmu_->SetLayout(std::move(slots)).ok());
    mmu_->SetFaultHooksForTesting(hooks);
    EXPECT_TRUE(space_->hub().Register(*mmu_).ok());
    memory_ = std::make_unique<SecondaryMmuMemory>(*mmu_, nullptr, options_.skip_retry_check);
  } else {
    EXPECT_EQ(options_.ram_aliases, 0u) << "the rig's mirror path has no aliases";
    mmu::MirrorOptions mirror_options;
    mirror_options.retry_timeout = absl::Seconds(2);
    mirror_ = std::make_unique<mmu::Mirror>(*space_, mirror_options);
    mirror_->SetFaultHooksForTesting(hooks);
    EXPECT_TRUE(mirror_->Attach(space_->hub(), space_->base(), ram_size()).ok());
    memory_ = std::make_unique<MirrorMemory>(*mirror_, space_->base());
  }
  DmaEngineOptions engine_options;
  engine_options.ram_size = ram_size();
  engine_options.ram_aliases = options_.ram_aliases;
  engine_options.alias_stride = options_.alias_stride;
  engine_ = std::make_unique<DmaEngine>(*memory_, engine_options);
}

DmaRig::~DmaRig() {
  engine_->Stop();
  if (mirror_) {
    EXPECT_TRUE(mirror_->Detach().ok());
  }
  space_->Teardown();
}

void DmaRig::PutWord(uint64_t gpa, uint64_t value) {
  // A vCPU store, made under the space's lock so it cannot race a migrate or reclaim.
  const absl::Status s = space_->WriteWordForTesting(gpa, value);
  ASSERT_TRUE(s.ok()) << s;
}

uint64_t DmaRig::GetWord(uint64_t gpa) {
  absl::StatusOr<uint64_t> v = space_->ReadWordForTesting(gpa);
  EXPECT_TRUE(v.ok()) << v.status();
  return v.ok() ? *v : 0;
}

void DmaRig::PutDesc(uint64_t gpa, const mmv_dma_desc& desc) {
  uint64_t w[8];
  std::memcpy(w, &desc, sizeof(w));
  for (int i = 0; i < 8; ++i) PutWord(gpa + 8 * i, w[i]);
}

mmv_dma_desc DmaRig::GetDesc(uint64_t gpa) {
  uint64_t w[8];
  for (int i = 0; i < 8; ++i) w[i] = GetWord(gpa + 8 * i);
  mmv_dma_desc d;
  std::memcpy(&d, w, sizeof(d));
  return d;
}

mmv_dma_desc DmaRig::RunOne(uint64_t gpa, const mmv_dma_desc& desc) {
  PutDesc(gpa, desc);
  engine_->ExecuteChain(gpa);
  return GetDesc(gpa);
}

}  // namespace mmuvisor::vmm::dma
