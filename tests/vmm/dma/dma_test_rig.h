// DmaRig: a DMA engine wired the way the stress runner wires it, over a PagePoolSpace
// (tests/support: freed pages poisoned) of
// real pages: hub -> SecondaryMmu "dma-mmu" (one slot: gfn 0 at the space's base) ->
// SecondaryMmuMemory -> DmaEngine (with aliases: one more slot per alias, same pages); or
// the interval Mirror path. Helpers write and read
// descriptors and data as a guest would (through the space, faulting pages in).
#ifndef MMUVISOR_TESTS_VMM_DMA_DMA_TEST_RIG_H_
#define MMUVISOR_TESTS_VMM_DMA_DMA_TEST_RIG_H_

#include <cstdint>
#include <memory>

#include "mmu/mirror.h"
#include "mmu/secondary_mmu.h"
#include "mmuvisor/guest_abi.h"
#include "vmm/dma/descriptor.h"
#include "vmm/dma/device_mmu.h"
#include "vmm/dma/dma_engine.h"
#include "vmm/dma/dma_memory.h"
#include "support/page_pool_space.h"

namespace mmuvisor::vmm::dma {

struct DmaRigOptions {
  uint64_t pages = 64;
  bool mirror = false;
  bool skip_retry_check = false;  // also turns the MMU's fault-path checks off
  mmu::FaultHooks hooks;          // installed on the MMU/mirror (retry_checks overridden)
  // `--aliases K` (SecondaryMmu path only): the MMU gets one more slot per alias, gfn
  // k * alias_stride / 4096 on the same pages, and the engine accepts those addresses.
  uint32_t ram_aliases = 0;
  uint64_t alias_stride = 0;
};

class DmaRig {
 public:
  explicit DmaRig(DmaRigOptions options = {});
  ~DmaRig();

  testing::PagePoolSpace& space() { return *space_; }
  DmaEngine& engine() { return *engine_; }
  DmaMemory& engine_memory() { return *memory_; }
  DeviceMmu* mmu() { return mmu_.get(); }
  uint64_t ram_size() const { return options_.pages * 4096; }

  // Guest-side access (through the space: what a vCPU would see).
  void PutWord(uint64_t gpa, uint64_t value);
  uint64_t GetWord(uint64_t gpa);
  void PutDesc(uint64_t gpa, const mmv_dma_desc& desc);
  mmv_dma_desc GetDesc(uint64_t gpa);
  // Writes desc with status PENDING, runs the chain synchronously, returns it back.
  mmv_dma_desc RunOne(uint64_t gpa, const mmv_dma_desc& desc);

 private:
  DmaRigOptions options_;
  std::unique_ptr<testing::PagePoolSpace> space_;
  std::unique_ptr<DeviceMmu> mmu_;
  std::unique_ptr<mmu::Mirror> mirror_;
  std::unique_ptr<DmaMemory> memory_;
  std::unique_ptr<DmaEngine> engine_;
};

}  // namespace mmuvisor::vmm::dma

#endif  // MMUVISOR_TESTS_VMM_DMA_DMA_TEST_RIG_H_
