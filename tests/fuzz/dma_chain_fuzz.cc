// libFuzzer target `dma_chain`: a guest's DMA request (vmm/dma/dma_engine.h) as the device
// receives it: the doorbell's gpa and the guest RAM holding the descriptor chain and data.
// DmaEngine::ExecuteChain (what the device thread runs per doorbell) walks the chain over a
// fake DmaMemory on a 16 KiB RAM buffer.
//
// Input: [0..4) doorbell gpa (little endian, as the 32-bit OUT carries it) | [4] the page
//        whose accesses fail (a fault the MMU could not resolve; >= 4: none) | [5..) guest
//        RAM from gpa 0 (the rest is zero).
//
// Checked (abort on violation): every access honours DmaMemory's REQUIRES (8-byte aligned,
// inside one page, inside RAM); every write lands either inside the destination range of a
// descriptor the device read and found valid (ValidateDescriptor == OK) or on the
// result/status words of a descriptor it read; no more than MMV_DMA_MAX_CHAIN descriptors
// per doorbell; every descriptor judged gets exactly one final status.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "notifier/base/page.h"
#include "vmm/dma/descriptor.h"
#include "vmm/dma/dma_engine.h"
#include "vmm/dma/dma_memory.h"

namespace mmuvisor::vmm::dma {
namespace {

constexpr uint64_t kPages = 4;
constexpr uint64_t kRam = kPages * kPageSize;
constexpr uint64_t kDescWords = sizeof(mmv_dma_desc) / 8;

[[noreturn]] void Fail(const char* what, uint64_t gpa, uint64_t words) {
  std::fprintf(stderr, "dma_chain fuzz: %s (gpa=0x%llx words=%llu)\n", what,
               static_cast<unsigned long long>(gpa), static_cast<unsigned long long>(words));
  std::abort();
}

class BufferMemory : public DmaMemory {
 public:
  std::vector<uint64_t> ram = std::vector<uint64_t>(kRam / 8);
  uint64_t failing_page = kPages;
  std::vector<mmv_dma_desc> descriptors_read;  // reads shaped like a descriptor

  absl::Status ReadWords(uint64_t gpa, absl::Span<uint64_t> out) override {
    if (absl::Status s = Check(gpa, out.size()); !s.ok()) return s;
    std::memcpy(out.data(), &ram[gpa / 8], out.size() * 8);
    if (out.size() == kDescWords && gpa % MMV_DMA_DESC_ALIGN == 0) {
      mmv_dma_desc d;
      std::memcpy(&d, out.data(), sizeof(d));
      descriptors_read.push_back(d);
      desc_gpas_.push_back(gpa);
    }
    return absl::OkStatus();
  }
  absl::Status WriteWords(uint64_t gpa, absl::Span<const uint64_t> in) override {
    if (absl::Status s = Check(gpa, in.size()); !s.ok()) return s;
    CheckWriteAllowed(gpa, in.size());
    std::memcpy(&ram[gpa / 8], in.data(), in.size() * 8);
    return absl::OkStatus();
  }
  absl::Status FillWords(uint64_t gpa, uint64_t value, uint64_t words) override {
    if (absl::Status s = Check(gpa, words); !s.ok()) return s;
    CheckWriteAllowed(gpa, words);
    for (uint64_t i = 0; i < words; ++i) ram[gpa / 8 + i] = value;
    return absl::OkStatus();
  }
  DmaMemoryStats stats() const override { return {}; }

 private:
  absl::Status Check(uint64_t gpa, uint64_t words) {
    if (gpa % 8 != 0) Fail("unaligned access", gpa, words);
    if (words == 0 || words > kPageSize / 8) Fail("access of no words or more than a page", gpa, words);
    if (gpa >= kRam || words * 8 > kRam - gpa) Fail("access outside guest RAM", gpa, words);
    if (gpa / kPageSize != (gpa + words * 8 - 1) / kPageSize) Fail("access crosses a page", gpa, words);
    if (gpa / kPageSize == failing_page) return absl::NotFoundError("injected: page not present");
    return absl::OkStatus();
  }
  // Allowed: a valid COPY/FILL's destination, or a judged descriptor's result/status words.
  void CheckWriteAllowed(uint64_t gpa, uint64_t words) {
    const uint64_t end = gpa + words * 8;
    for (size_t i = 0; i < descriptors_read.size(); ++i) {
      const mmv_dma_desc& d = descriptors_read[i];
      const uint64_t at = desc_gpas_[i];
      if (words == 1 && (gpa == at + offsetof(mmv_dma_desc, result) ||
                         gpa == at + offsetof(mmv_dma_desc, flags))) {
        return;
      }
      if (ValidateDescriptor(d, kRam) == MMV_DMA_STATUS_OK && d.op != MMV_DMA_OP_CHECKSUM &&
          gpa >= d.dst && end <= d.dst + d.len) {
        return;
      }
    }
    Fail("write outside every destination and descriptor the device read", gpa, words);
  }
  std::vector<uint64_t> desc_gpas_;
};

}  // namespace
}  // namespace mmuvisor::vmm::dma

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace mmuvisor::vmm::dma;
  if (size < 5) return 0;
  uint32_t doorbell = 0;
  std::memcpy(&doorbell, data, 4);
  BufferMemory memory;
  memory.failing_page = data[4];
  std::memcpy(memory.ram.data(), data + 5, std::min<size_t>(size - 5, kRam));

  DmaEngineOptions options;
  options.ram_size = kRam;
  DmaEngine engine(memory, options);
  engine.ExecuteChain(doorbell);

  const DmaStats stats = engine.stats();
  if (stats.descriptors > MMV_DMA_MAX_CHAIN) Fail("chain longer than MMV_DMA_MAX_CHAIN", doorbell, stats.descriptors);
  uint64_t statuses = 0;
  for (uint64_t n : stats.by_status) statuses += n;
  if (statuses != stats.descriptors) Fail("descriptors judged != final statuses", doorbell, statuses);
  if (stats.ops_ok + stats.errors() < stats.descriptors) Fail("a descriptor neither ok nor an error", doorbell, stats.ops_ok);
  return 0;
}
