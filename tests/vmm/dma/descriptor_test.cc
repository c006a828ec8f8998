// Descriptor validation: one test per rule, the rule order (pairs of broken rules), and a
// fuzz-style sweep that checks the safety property on a million seeded random descriptors,
// in RAM alone and with aliases: whatever passes validation lies wholly inside guest RAM
// or one alias, does not wrap and (COPY) does not overlap.
#include <cstdint>
#include <iterator>

#include "gtest/gtest.h"
#include "mmuvisor/guest_abi.h"
#include "notifier/base/random.h"
#include "vmm/dma/descriptor.h"

namespace mmuvisor::vmm::dma {
namespace {

constexpr uint64_t kRam = 1ull << 20;

mmv_dma_desc Good(uint32_t op = MMV_DMA_OP_COPY) {
  mmv_dma_desc d{};
  d.magic = MMV_DMA_DESC_MAGIC;
  d.op = op;
  d.src = 0x10000;
  d.dst = 0x20000;
  d.len = 0x3000;
  return d;
}

TEST(DmaDescriptorTest, WellFormedDescriptorsOfEveryOpAreAccepted) {
  for (uint32_t op : {MMV_DMA_OP_COPY, MMV_DMA_OP_FILL, MMV_DMA_OP_CHECKSUM}) {
    EXPECT_EQ(ValidateDescriptor(Good(op), kRam), MMV_DMA_STATUS_OK) << DmaOpName(op);
  }
  mmv_dma_desc edge = Good();
  edge.dst = kRam - edge.len;  // ends exactly at the end of RAM
  EXPECT_EQ(ValidateDescriptor(edge, kRam), MMV_DMA_STATUS_OK);
  edge.len = MMV_DMA_MAX_LEN;
  edge.src = 0;
  edge.dst = MMV_DMA_MAX_LEN;
  EXPECT_EQ(ValidateDescriptor(edge, 2 * MMV_DMA_MAX_LEN), MMV_DMA_STATUS_OK);
}

TEST(DmaDescriptorTest, EachRuleGivesItsStatus) {
  struct Case {
    const char* what;
    void (*spoil)(mmv_dma_desc&);
    uint32_t status;
  };
  const Case cases[] = {
      {"magic", [](mmv_dma_desc& d) { d.magic = 0; }, MMV_DMA_STATUS_BAD_DESC},
      {"op", [](mmv_dma_desc& d) { d.op = 77; }, MMV_DMA_STATUS_BAD_DESC},
      {"flags", [](mmv_dma_desc& d) { d.flags = 0x80; }, MMV_DMA_STATUS_BAD_DESC},
      {"zero length", [](mmv_dma_desc& d) { d.len = 0; }, MMV_DMA_STATUS_BAD_LENGTH},
      {"huge length", [](mmv_dma_desc& d) { d.len = uint64_t{1} << 40; }, MMV_DMA_STATUS_BAD_LENGTH},
      {"odd length", [](mmv_dma_desc& d) { d.len = 12; }, MMV_DMA_STATUS_BAD_LENGTH},
      {"src align", [](mmv_dma_desc& d) { d.src += 4; }, MMV_DMA_STATUS_MISALIGNED},
      {"dst align", [](mmv_dma_desc& d) { d.dst += 1; }, MMV_DMA_STATUS_MISALIGNED},
      {"src wraps", [](mmv_dma_desc& d) { d.src = ~uint64_t{0} - 0xff7; }, MMV_DMA_STATUS_WRAP},
      {"dst wraps", [](mmv_dma_desc& d) { d.dst = ~uint64_t{0} - 7; }, MMV_DMA_STATUS_WRAP},
      {"src outside", [](mmv_dma_desc& d) { d.src = kRam; }, MMV_DMA_STATUS_OUT_OF_RANGE},
      {"dst straddles end", [](mmv_dma_desc& d) { d.dst = kRam - 0x1000; }, MMV_DMA_STATUS_OUT_OF_RANGE},
      {"far outside", [](mmv_dma_desc& d) { d.dst = uint64_t{1} << 62; }, MMV_DMA_STATUS_OUT_OF_RANGE},
      {"overlap ahead", [](mmv_dma_desc& d) { d.dst = d.src + 8; }, MMV_DMA_STATUS_OVERLAP},
      {"overlap behind", [](mmv_dma_desc& d) { d.dst = d.src - 0x1000; }, MMV_DMA_STATUS_OVERLAP},
      {"same range", [](mmv_dma_desc& d) { d.dst = d.src; }, MMV_DMA_STATUS_OVERLAP},
  };
  for (const Case& c : cases) {
    mmv_dma_desc d = Good();
    c.spoil(d);
    EXPECT_EQ(ValidateDescriptor(d, kRam), c.status)
        << c.what << ": got " << DmaStatusName(ValidateDescriptor(d, kRam));
  }
}

// Two rules broken at once: the status is the first in descriptor.h's order (BAD_DESC,
// BAD_LENGTH, MISALIGNED, WRAP, OUT_OF_RANGE, OVERLAP), whichever field breaks which.
TEST(DmaDescriptorTest, TheFirstBrokenRuleInTheDocumentedOrderWins) {
  struct Case {
    const char* what;
    void (*spoil)(mmv_dma_desc&);
    uint32_t status;
  };
  const Case cases[] = {
      {"magic + zero length", [](mmv_dma_desc& d) { d.magic = 0; d.len = 0; }, MMV_DMA_STATUS_BAD_DESC},
      {"op + out of range", [](mmv_dma_desc& d) { d.op = 9; d.dst = kRam; }, MMV_DMA_STATUS_BAD_DESC},
      {"flags + misaligned", [](mmv_dma_desc& d) { d.flags = 2; d.src += 4; }, MMV_DMA_STATUS_BAD_DESC},
      {"odd length + misaligned", [](mmv_dma_desc& d) { d.len = 12; d.dst += 4; }, MMV_DMA_STATUS_BAD_LENGTH},
      {"huge length + wrap", [](mmv_dma_desc& d) { d.len = uint64_t{1} << 40; d.src = ~uint64_t{0} - 7; },
       MMV_DMA_STATUS_BAD_LENGTH},
      {"bad length + out of range", [](mmv_dma_desc& d) { d.len = 12; d.dst = kRam; }, MMV_DMA_STATUS_BAD_LENGTH},
      {"misaligned + wrap", [](mmv_dma_desc& d) { d.src = ~uint64_t{0} - 0xff3; }, MMV_DMA_STATUS_MISALIGNED},
      {"dst wraps + src misaligned", [](mmv_dma_desc& d) { d.dst = ~uint64_t{0} - 7; d.src += 1; },
       MMV_DMA_STATUS_MISALIGNED},
      {"misaligned + out of range", [](mmv_dma_desc& d) { d.dst = kRam + 4; }, MMV_DMA_STATUS_MISALIGNED},
      {"src out of range + dst wraps", [](mmv_dma_desc& d) { d.src = kRam; d.dst = ~uint64_t{0} - 7; },
       MMV_DMA_STATUS_WRAP},
      {"out of range + overlap", [](mmv_dma_desc& d) { d.src = kRam - 0x1000; d.dst = d.src + 8; },
       MMV_DMA_STATUS_OUT_OF_RANGE},
      {"wrap + overlap", [](mmv_dma_desc& d) { d.src = ~uint64_t{0} - 0xfff; d.dst = d.src - 8; },
       MMV_DMA_STATUS_WRAP},
  };
  for (const Case& c : cases) {
    mmv_dma_desc d = Good();
    c.spoil(d);
    EXPECT_EQ(ValidateDescriptor(d, kRam), c.status)
        << c.what << ": got " << DmaStatusName(ValidateDescriptor(d, kRam));
  }
}

TEST(DmaDescriptorTest, AdjacentCopyRangesDoNotOverlap) {
  mmv_dma_desc d = Good();
  d.dst = d.src + d.len;
  EXPECT_EQ(ValidateDescriptor(d, kRam), MMV_DMA_STATUS_OK);
  d.dst = d.src - d.len;
  EXPECT_EQ(ValidateDescriptor(d, kRam), MMV_DMA_STATUS_OK);
}

TEST(DmaDescriptorTest, UnusedAddressesAreNotChecked) {
  mmv_dma_desc fill = Good(MMV_DMA_OP_FILL);
  fill.src = ~uint64_t{0};  // FILL reads no source
  EXPECT_EQ(ValidateDescriptor(fill, kRam), MMV_DMA_STATUS_OK);
  mmv_dma_desc sum = Good(MMV_DMA_OP_CHECKSUM);
  sum.dst = 3;  // CHECKSUM writes no destination
  EXPECT_EQ(ValidateDescriptor(sum, kRam), MMV_DMA_STATUS_OK);
}

TEST(DmaDescriptorTest, DescriptorAddresses) {
  EXPECT_TRUE(DescriptorAddressValid(0, kRam));
  EXPECT_TRUE(DescriptorAddressValid(kRam - 64, kRam));
  EXPECT_FALSE(DescriptorAddressValid(kRam, kRam));
  EXPECT_FALSE(DescriptorAddressValid(32, kRam));
  EXPECT_FALSE(DescriptorAddressValid(~uint64_t{63}, kRam));
}

// With aliases (`--aliases K`) the device may name RAM at k * stride for k = 1..K, and
// nothing between or beyond.
TEST(DmaDescriptorTest, AliasesOfRamAreGuestMemory) {
  constexpr uint64_t kStride = uint64_t{1} << 30;
  const DmaAddressSpace memory(kRam, 2, kStride);
  EXPECT_TRUE(DescriptorAddressValid(kStride, memory));
  EXPECT_TRUE(DescriptorAddressValid(2 * kStride + kRam - 64, memory));
  EXPECT_FALSE(DescriptorAddressValid(2 * kStride + kRam, memory));
  EXPECT_FALSE(DescriptorAddressValid(3 * kStride, memory));
  EXPECT_FALSE(DescriptorAddressValid(kRam + 64, memory));
  mmv_dma_desc d = MakeDescriptor(MMV_DMA_OP_COPY, kStride + 0x1000, 2 * kStride, 0x1000);
  EXPECT_EQ(ValidateDescriptor(d, memory), MMV_DMA_STATUS_OK);
  EXPECT_EQ(ValidateDescriptor(d, kRam), MMV_DMA_STATUS_OUT_OF_RANGE);
  d.src = kStride + kRam - 8;  // runs off the end of alias 1
  EXPECT_EQ(ValidateDescriptor(d, memory), MMV_DMA_STATUS_OUT_OF_RANGE);
}

// [addr, addr + len) inside RAM or one alias, worked out apart from DmaAddressSpace.
bool InsideOneRange(uint64_t addr, uint64_t len, const DmaAddressSpace& memory) {
  using U128 = unsigned __int128;
  for (uint64_t k = 0; k <= memory.aliases; ++k) {
    const U128 base = U128{k} * memory.alias_stride;
    if (addr >= base && U128{addr} + len <= base + memory.ram_size) return true;
  }
  return false;
}

// Fuzz-style: seeded random descriptors biased towards the edges (near 0, near the end of
// RAM and of each alias, near 2^64, lengths around the limits), in RAM alone and in RAM with
// two aliases (`--aliases 2`). Whatever validates must be safe to execute.
void SweepAcceptedDescriptorsStayInsideMemory(const DmaAddressSpace& memory) {
  const uint64_t stride = memory.aliases > 0 ? memory.alias_stride : kRam;
  const uint64_t end = memory.aliases * stride;  // start of the last range
  const uint64_t edges[] = {0, 8, 0x1000, kRam - 0x1000, kRam - 8, kRam, kRam + 8,
                            ~uint64_t{0} - 0xfff, ~uint64_t{0} - 7, uint64_t{1} << 63,
                            stride - 8, stride, stride + kRam - 0x1000, end + kRam - 8,
                            end + kRam, end + stride};  // the last: where one more would be
  constexpr uint64_t kEdges = std::size(edges);
  const uint64_t lens[] = {0, 8, 12, 0x1000, MMV_DMA_MAX_LEN, MMV_DMA_MAX_LEN + 8,
                           ~uint64_t{0} - 7, kRam};
  const uint64_t span = end + stride + kRam;  // random addresses: all ranges and beyond
  uint64_t accepted = 0, in_aliases = 0;
  for (uint64_t n = 0; n < 1000000; ++n) {
    const uint64_t r = Mix64(n);
    const uint64_t r2 = Mix64(r);
    mmv_dma_desc d{};
    d.magic = (r & 0xff) == 0 ? static_cast<uint32_t>(r2) : MMV_DMA_DESC_MAGIC;
    d.op = static_cast<uint32_t>((r >> 8) % 5);
    d.flags = (r >> 11) % 16 == 0 ? static_cast<uint32_t>(r2 >> 32) : 0;
    d.src = (r >> 16) % 3 == 0 ? edges[(r >> 20) % kEdges] + ((r2 & 7) << 3)
                               : (r2 % span) & ~static_cast<uint64_t>((r >> 24) % 2 == 0 ? 7 : 0);
    d.dst = (r >> 28) % 3 == 0 ? edges[(r >> 32) % kEdges] : Mix64(r2) % span & ~uint64_t{7};
    d.len = (r >> 36) % 2 == 0 ? lens[(r >> 40) % 8] : ((r2 >> 20) % (kRam / 2)) & ~uint64_t{7};
    if (ValidateDescriptor(d, memory) != MMV_DMA_STATUS_OK) continue;
    ++accepted;
    ASSERT_GT(d.len, 0u);
    ASSERT_LE(d.len, MMV_DMA_MAX_LEN);
    if (d.op != MMV_DMA_OP_FILL) {
      ASSERT_TRUE(InsideOneRange(d.src, d.len, memory)) << n;
    }
    if (d.op != MMV_DMA_OP_CHECKSUM) {
      ASSERT_TRUE(InsideOneRange(d.dst, d.len, memory)) << n;
    }
    if (d.op == MMV_DMA_OP_COPY) {
      ASSERT_TRUE(d.src + d.len <= d.dst || d.dst + d.len <= d.src) << n;
    }
    in_aliases += (d.op != MMV_DMA_OP_FILL && d.src >= kRam) ||
                  (d.op != MMV_DMA_OP_CHECKSUM && d.dst >= kRam);
  }
  EXPECT_GT(accepted, 1000u) << "the sweep must exercise the accepting side too";
  if (memory.aliases > 0) {
    EXPECT_GT(in_aliases, 1000u) << "the sweep must accept addresses in the aliases too";
  }
}

TEST(DmaDescriptorTest, FuzzAcceptedDescriptorsStayInsideRam) {
  SweepAcceptedDescriptorsStayInsideMemory(kRam);
}

TEST(DmaDescriptorTest, FuzzAcceptedDescriptorsStayInsideRamAndItsAliases) {
  SweepAcceptedDescriptorsStayInsideMemory(DmaAddressSpace(kRam, 2, 2 * kRam));
}

}  // namespace
}  // namespace mmuvisor::vmm::dma
