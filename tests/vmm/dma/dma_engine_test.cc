// The DMA engine against real memory (PagePoolSpace): each op through both paths (the
// SecondaryMmu and the interval Mirror), the doorbell and device thread, every error a
// hostile guest can provoke (status written back, counted, nothing outside the
// descriptor's own status touched), bad doorbells, loops, addresses in RAM's aliases, a
// fuzz sweep of garbage against a reference device, and the access hooks of both paths.
#include <array>
#include <cstring>
#include <vector>

#include "dma_test_rig.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "notifier/base/random.h"
#include "support/dma_reference.h"
#include "support/wait.h"
#include "vmm/dma/descriptor.h"

namespace mmuvisor::vmm::dma {
namespace {

using ::testing::HasSubstr;

constexpr uint64_t kDesc = 0x0;      // descriptors in page 0
constexpr uint64_t kSrc = 0x4000;    // 3 pages of source
constexpr uint64_t kDst = 0x10000;   // destination
constexpr uint64_t kLen = 0x3000;

uint64_t Pattern(uint64_t gpa) { return Mix64(gpa * 31 + 7); }

void FillSource(DmaRig& rig) {
  for (uint64_t a = kSrc; a < kSrc + kLen; a += 8) rig.PutWord(a, Pattern(a));
}

class DmaPathTest : public ::testing::TestWithParam<bool> {};  // param: mirror path

TEST_P(DmaPathTest, CopyFillAndChecksumMoveTheRightBytes) {
  DmaRig rig({.pages = 64, .mirror = GetParam()});
  FillSource(rig);
  // Unaligned-to-page offsets: the copy crosses page boundaries at different points.
  const mmv_dma_desc copy = rig.RunOne(kDesc, MakeDescriptor(MMV_DMA_OP_COPY, kSrc + 0x18, kDst + 0x800, kLen - 0x40));
  ASSERT_EQ(copy.status, MMV_DMA_STATUS_OK) << DmaStatusName(copy.status);
  for (uint64_t off = 0; off < kLen - 0x40; off += 8) {
    ASSERT_EQ(rig.GetWord(kDst + 0x800 + off), Pattern(kSrc + 0x18 + off)) << off;
  }
  EXPECT_EQ(rig.GetWord(kDst + 0x7f8), 0u) << "byte before the destination untouched";
  EXPECT_EQ(rig.GetWord(kDst + 0x800 + kLen - 0x40), 0u) << "byte after untouched";

  const mmv_dma_desc fill = rig.RunOne(kDesc + 64, MakeDescriptor(MMV_DMA_OP_FILL, 0, kDst, 0x2000, 0xabcdef));
  ASSERT_EQ(fill.status, MMV_DMA_STATUS_OK);
  for (uint64_t off = 0; off < 0x2000; off += 8) ASSERT_EQ(rig.GetWord(kDst + off), 0xabcdefu);

  const mmv_dma_desc sum = rig.RunOne(kDesc + 128, MakeDescriptor(MMV_DMA_OP_CHECKSUM, kSrc, 0, kLen));
  ASSERT_EQ(sum.status, MMV_DMA_STATUS_OK);
  // guest_abi.h's formula spelled out, not DmaChecksumStep (the code under test):
  // sum = 0; for each word i: sum = (sum ^ w[i]) * 0x100000001b3 + i (mod 2^64).
  uint64_t want = 0, i = 0;
  for (uint64_t a = kSrc; a < kSrc + kLen; a += 8) want = (want ^ Pattern(a)) * 0x100000001b3ull + i++;
  EXPECT_EQ(sum.result, want);

  const DmaStats stats = rig.engine().stats();
  EXPECT_EQ(stats.ops_ok, 3u);
  EXPECT_EQ(stats.copies, 1u);
  EXPECT_EQ(stats.fills, 1u);
  EXPECT_EQ(stats.checksums, 1u);
  EXPECT_EQ(stats.errors(), 0u);
}

TEST_P(DmaPathTest, ReclaimedSourcePagesAreFaultedBackWithTheirData) {
  DmaRig rig({.pages = 64, .mirror = GetParam()});
  FillSource(rig);
  ASSERT_TRUE(rig.space().Reclaim(kSrc, kLen).ok());
  ASSERT_EQ(rig.RunOne(kDesc, MakeDescriptor(MMV_DMA_OP_COPY, kSrc, kDst, kLen)).status, MMV_DMA_STATUS_OK);
  for (uint64_t off = 0; off < kLen; off += 8) ASSERT_EQ(rig.GetWord(kDst + off), Pattern(kSrc + off));
  EXPECT_EQ(rig.space().stats().swap_ins, 3u);
}

INSTANTIATE_TEST_SUITE_P(Paths, DmaPathTest, ::testing::Bool(),
                         [](const ::testing::TestParamInfo<bool>& p) { return p.param ? "Mirror" : "SecondaryMmu"; });

// Known answers for CHECKSUM, computed apart from the code (python, from guest_abi.h's
// formula): a wrong prime, a missing "+ i" or an index counted per page would change them.
TEST(DmaEngineTest, ChecksumGivesTheAbiKnownAnswers) {
  DmaRig rig;
  struct Vector {
    uint64_t words[3];
    uint64_t sum;
  };
  const Vector vectors[] = {
      {{1, 2, 3}, 0x08a2b30004e23f27ull},
      {{~uint64_t{0}, uint64_t{1} << 63, 0}, 0x775685fffb18030aull},
  };
  for (const Vector& v : vectors) {
    for (int w = 0; w < 3; ++w) rig.PutWord(kSrc + 8 * w, v.words[w]);
    const mmv_dma_desc back = rig.RunOne(kDesc, MakeDescriptor(MMV_DMA_OP_CHECKSUM, kSrc, 0, 24));
    ASSERT_EQ(back.status, MMV_DMA_STATUS_OK) << DmaStatusName(back.status);
    EXPECT_EQ(back.result, v.sum) << std::hex << back.result;
  }
}

TEST(DmaEngineTest, DoorbellRunsAChainOnTheDeviceThread) {
  DmaRig rig;
  FillSource(rig);
  rig.PutDesc(kDesc, MakeDescriptor(MMV_DMA_OP_COPY, kSrc, kDst, kLen, 0, kDesc + 64));
  rig.PutDesc(kDesc + 64, MakeDescriptor(MMV_DMA_OP_CHECKSUM, kDst, 0, kLen, 0, kDesc + 128));
  rig.PutDesc(kDesc + 128, MakeDescriptor(MMV_DMA_OP_FILL, 0, kSrc, 0x1000, 5));
  rig.engine().Start();
  const uint32_t gpa = kDesc;
  uint8_t bytes[4];
  std::memcpy(bytes, &gpa, 4);
  EXPECT_EQ(rig.engine().Write(0, 0, absl::MakeConstSpan(bytes, 4)), IoAction::kContinue);
  ASSERT_TRUE(rig.engine().WaitIdle(::mmuvisor::testing::kTestWaitLimit)) << "the engine hung";
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(rig.GetDesc(kDesc + 64 * i).status, MMV_DMA_STATUS_OK) << i;
  }
  EXPECT_EQ(rig.GetWord(kDst + kLen - 8), Pattern(kSrc + kLen - 8));
  EXPECT_EQ(rig.GetWord(kSrc), 5u);
  EXPECT_EQ(rig.engine().stats().ops_ok, 3u);
  EXPECT_EQ(rig.engine().stats().doorbells, 1u);
}

// Abort (a stress run's deadline): the chain in flight ends at its next page piece; the
// descriptor it cut and the rest of the chain get no status (they stay PENDING) and count
// as aborted, not as errors. Forced: the abort is requested from inside the first page
// piece's access (no device thread: ExecuteChain runs on this thread).
TEST(DmaEngineTest, AbortEndsTheChainAtTheNextPagePiece) {
  DmaRig rig;
  FillSource(rig);
  auto* memory = dynamic_cast<SecondaryMmuMemory*>(&rig.engine_memory());
  ASSERT_NE(memory, nullptr);
  int accesses = 0;
  memory->set_after_translate_for_testing([&](uint64_t /*gpa*/) {
    if (++accesses == 2) rig.engine().Abort();  // 1: the descriptor read; 2: first piece
  });
  rig.PutDesc(kDesc, MakeDescriptor(MMV_DMA_OP_COPY, kSrc, kDst, kLen, 0, kDesc + 64));
  rig.PutDesc(kDesc + 64, MakeDescriptor(MMV_DMA_OP_FILL, 0, kSrc, 0x1000, 5));
  rig.engine().ExecuteChain(kDesc);
  EXPECT_EQ(rig.GetDesc(kDesc).status, MMV_DMA_STATUS_PENDING);
  EXPECT_EQ(rig.GetDesc(kDesc + 64).status, MMV_DMA_STATUS_PENDING);
  EXPECT_EQ(rig.GetWord(kSrc), Pattern(kSrc)) << "the FILL after the abort must not run";
  EXPECT_EQ(rig.GetWord(kDst + kLen - 8), 0u) << "the copy's last page must not be written";
  const DmaStats stats = rig.engine().stats();
  EXPECT_EQ(stats.aborted_descriptors, 1u);
  EXPECT_EQ(stats.errors(), 0u);
  EXPECT_EQ(stats.ops_ok, 0u);
  // A doorbell after the abort (a vCPU that had not seen its stop yet) is dropped, but it
  // is no device failure.
  const uint32_t gpa = kDesc;
  uint8_t bytes[4];
  std::memcpy(bytes, &gpa, 4);
  EXPECT_EQ(rig.engine().Write(0, 0, absl::MakeConstSpan(bytes, 4)), IoAction::kContinue);
  EXPECT_EQ(rig.engine().stats().dropped_doorbells, 1u);
  EXPECT_EQ(rig.engine().stats().errors(), 0u);
}

// An engine stopped by Abort() and started again (a new run on the same device) runs
// chains again: the abort request belongs to the run it stopped.
TEST(DmaEngineTest, StartAfterAbortRunsChainsAgain) {
  DmaRig rig;
  FillSource(rig);
  rig.engine().Start();
  rig.engine().Abort();
  rig.engine().Start();
  rig.PutDesc(kDesc, MakeDescriptor(MMV_DMA_OP_COPY, kSrc, kDst, kLen));
  const uint32_t gpa = kDesc;
  uint8_t bytes[4];
  std::memcpy(bytes, &gpa, 4);
  EXPECT_EQ(rig.engine().Write(0, 0, absl::MakeConstSpan(bytes, 4)), IoAction::kContinue);
  ASSERT_TRUE(rig.engine().WaitIdle(::mmuvisor::testing::kTestWaitLimit)) << "the engine hung";
  EXPECT_EQ(rig.GetDesc(kDesc).status, MMV_DMA_STATUS_OK)
      << DmaStatusName(rig.GetDesc(kDesc).status);
  EXPECT_EQ(rig.GetWord(kDst + kLen - 8), Pattern(kSrc + kLen - 8));
  const DmaStats stats = rig.engine().stats();
  EXPECT_EQ(stats.ops_ok, 1u);
  EXPECT_EQ(stats.aborted_descriptors, 0u);
  EXPECT_EQ(stats.errors(), 0u);
}

// What a hostile guest can send: each gets its status, is counted (requested when
// flagged), leaves every byte it named untouched, and the device keeps working.
TEST(DmaEngineTest, HostileDescriptorsGetErrorStatusesAndTouchNothing) {
  DmaRig rig;
  const uint64_t ram = rig.ram_size();
  FillSource(rig);
  struct Case {
    mmv_dma_desc desc;
    uint32_t status;
  };
  const Case cases[] = {
      {MakeDescriptor(MMV_DMA_OP_COPY, kSrc, ram - 0x1000, 0x2000), MMV_DMA_STATUS_OUT_OF_RANGE},
      {MakeDescriptor(MMV_DMA_OP_FILL, 0, uint64_t{1} << 50, 0x1000), MMV_DMA_STATUS_OUT_OF_RANGE},
      {MakeDescriptor(MMV_DMA_OP_COPY, kSrc, kDst, uint64_t{1} << 32), MMV_DMA_STATUS_BAD_LENGTH},
      {MakeDescriptor(MMV_DMA_OP_COPY, ~uint64_t{0} - 0xff7, kDst, 0x1000), MMV_DMA_STATUS_WRAP},
      {MakeDescriptor(MMV_DMA_OP_COPY, kSrc, kSrc + 0x800, 0x1000), MMV_DMA_STATUS_OVERLAP},
      {MakeDescriptor(MMV_DMA_OP_CHECKSUM, kSrc + 3, 0, 0x1000), MMV_DMA_STATUS_MISALIGNED},
      {MakeDescriptor(9, kSrc, kDst, 0x1000), MMV_DMA_STATUS_BAD_DESC},
      {MakeDescriptor(MMV_DMA_OP_COPY, kSrc, kDst, 0x1000, 0, /*next=*/ram + 64), MMV_DMA_STATUS_BAD_CHAIN},
      {MakeDescriptor(MMV_DMA_OP_COPY, kSrc, kDst, 0x1000, 0, /*next=*/kDesc + 8), MMV_DMA_STATUS_BAD_CHAIN},
  };
  uint64_t n = 0;
  for (const Case& c : cases) {
    for (const uint32_t flags : {0u, MMV_DMA_FLAG_EXPECT_ERROR}) {
      mmv_dma_desc d = c.desc;
      d.flags = flags;
      const mmv_dma_desc back = rig.RunOne(kDesc + 64 * (++n % 32), d);
      EXPECT_EQ(back.status, c.status) << "case " << n << ": " << DmaStatusName(back.status);
      EXPECT_EQ(back.flags, flags);
    }
  }
  for (uint64_t off = 0; off < kLen; off += 8) {
    ASSERT_EQ(rig.GetWord(kDst + off), 0u) << "a rejected descriptor wrote its destination";
    ASSERT_EQ(rig.GetWord(kSrc + off), Pattern(kSrc + off));
  }
  const DmaStats stats = rig.engine().stats();
  EXPECT_EQ(stats.errors_requested, std::size(cases));
  EXPECT_EQ(stats.errors_unrequested, std::size(cases));
  EXPECT_EQ(stats.ops_ok, 0u);
  EXPECT_EQ(stats.by_status[MMV_DMA_STATUS_OUT_OF_RANGE], 4u);
  EXPECT_EQ(rig.engine().warnings_total(), 2 * std::size(cases));
  EXPECT_THAT(rig.engine().warnings().front(), HasSubstr("out-of-range"));
  // Still working.
  EXPECT_EQ(rig.RunOne(kDesc, MakeDescriptor(MMV_DMA_OP_COPY, kSrc, kDst, kLen)).status, MMV_DMA_STATUS_OK);
}

// --aliases: the same RAM again at k * stride (k = 1..K). A chain rung at an alias
// address, a COPY out of one alias and a FILL into another all reach RAM; an address
// between RAM and the first alias, or past the last, is out of range.
TEST(DmaEngineTest, AliasAddressesReachRam) {
  constexpr uint64_t kStride = 0x100000;  // RAM is 64 pages: 256 KiB
  DmaRig rig({.pages = 64, .ram_aliases = 2, .alias_stride = kStride});
  FillSource(rig);
  rig.PutDesc(kDesc, MakeDescriptor(MMV_DMA_OP_COPY, kStride + kSrc, kDst, kLen, 0,
                                    /*next=*/2 * kStride + kDesc + 64));
  rig.PutDesc(kDesc + 64, MakeDescriptor(MMV_DMA_OP_FILL, 0, 2 * kStride + kSrc, 0x1000, 0x77));
  rig.engine().ExecuteChain(2 * kStride + kDesc);
  EXPECT_EQ(rig.GetDesc(kDesc).status, MMV_DMA_STATUS_OK) << DmaStatusName(rig.GetDesc(kDesc).status);
  EXPECT_EQ(rig.GetDesc(kDesc + 64).status, MMV_DMA_STATUS_OK);
  for (uint64_t off = 0; off < kLen; off += 8) {
    ASSERT_EQ(rig.GetWord(kDst + off), Pattern(kSrc + off)) << "copied through alias 1: " << off;
  }
  for (uint64_t off = 0; off < 0x1000; off += 8) {
    ASSERT_EQ(rig.GetWord(kSrc + off), 0x77u) << "filled through alias 2: " << off;
  }
  EXPECT_EQ(rig.GetWord(kSrc + 0x1000), Pattern(kSrc + 0x1000)) << "past the fill";
  EXPECT_EQ(rig.RunOne(kDesc + 128, MakeDescriptor(MMV_DMA_OP_COPY, kSrc, rig.ram_size(), 0x1000)).status,
            MMV_DMA_STATUS_OUT_OF_RANGE);
  EXPECT_EQ(rig.RunOne(kDesc + 192, MakeDescriptor(MMV_DMA_OP_FILL, 0, 3 * kStride, 0x1000)).status,
            MMV_DMA_STATUS_OUT_OF_RANGE);
  const DmaStats stats = rig.engine().stats();
  EXPECT_EQ(stats.ops_ok, 2u);
  EXPECT_EQ(stats.errors_unrequested, 2u);
}

TEST(DmaEngineTest, BadDoorbellsAreCountedAndIgnored) {
  DmaRig rig;
  rig.engine().ExecuteChain(rig.ram_size());       // outside RAM
  rig.engine().ExecuteChain(0x1008);               // misaligned
  rig.engine().ExecuteChain(~uint64_t{0} - 63);    // wraps
  uint8_t two[2] = {0, 0};
  rig.engine().Write(1, 0, absl::MakeConstSpan(two, 2));  // wrong width
  const DmaStats stats = rig.engine().stats();
  EXPECT_EQ(stats.bad_doorbells, 4u);
  EXPECT_EQ(stats.errors_unrequested, 4u);
  EXPECT_EQ(stats.descriptors, 0u);
}

TEST(DmaEngineTest, ASelfLinkedChainStopsAtTheLimit) {
  DmaRig rig;
  FillSource(rig);
  const uint64_t self = kDesc + 64;  // (a next of 0 would end the chain)
  rig.PutDesc(self, MakeDescriptor(MMV_DMA_OP_CHECKSUM, kSrc, 0, 0x1000, 0, /*next=*/self));
  rig.engine().ExecuteChain(self);
  const DmaStats stats = rig.engine().stats();
  EXPECT_EQ(stats.descriptors, MMV_DMA_MAX_CHAIN);
  EXPECT_EQ(stats.by_status[MMV_DMA_STATUS_BAD_CHAIN], 1u);
  EXPECT_EQ(rig.GetDesc(self).status, MMV_DMA_STATUS_BAD_CHAIN);
}

TEST(DmaEngineTest, DoorbellsAfterStopAreDroppedAndCounted) {
  DmaRig rig;
  const uint32_t gpa = kDesc;
  uint8_t bytes[4];
  std::memcpy(bytes, &gpa, 4);
  rig.engine().Write(0, 0, absl::MakeConstSpan(bytes, 4));  // never started
  EXPECT_EQ(rig.engine().stats().dropped_doorbells, 1u);
}

// Garbage everywhere: random words in all of RAM, chains started at random aligned
// addresses. The engine must never crash or write outside RAM (ASan watches the pool's
// neighbours), and it must do what the reference device (support/dma_reference.h, written
// from guest_abi.h apart from vmm/dma) does on a shadow copy of RAM: the same statuses, the
// same bytes in RAM at the end.
TEST(DmaEngineTest, FuzzGarbageChainsMatchTheReferenceDevice) {
  DmaRig rig({.pages = 16});
  const uint64_t ram = rig.ram_size();
  std::vector<uint64_t> shadow(ram / 8);
  for (uint64_t a = 0; a < ram; a += 8) {
    const uint64_t r = Mix64(a);
    // Bias some words towards plausible values so validation passes now and then.
    uint64_t v = r;
    switch ((a / 8) % 8) {
      case 0: v = (r & 1) ? (uint64_t{MMV_DMA_OP_COPY + r % 3} << 32) | MMV_DMA_DESC_MAGIC : r; break;
      case 1: case 2: v = (r % ram) & ~uint64_t{7}; break;
      case 3: v = (r % 0x3000) & ~uint64_t{7}; break;
      case 6: v = (r & 3) == 0 ? (r % ram) & ~uint64_t{63} : 0; break;
      case 7: v = (r & 7) == 0 ? r : (r & 1); break;  // flags: mostly valid
      default: break;
    }
    rig.PutWord(a, v);
    shadow[a / 8] = v;
  }
  std::array<uint64_t, kDmaStatusCount> want{};
  constexpr uint64_t kNoFailingPage = ~uint64_t{0};
  for (uint64_t n = 0; n < 3000; ++n) {
    const uint64_t doorbell = (Mix64(n) % ram) & ~uint64_t{63};
    rig.engine().ExecuteChain(doorbell);
    const ::mmuvisor::testing::RefChain chain =
        ::mmuvisor::testing::RefRunChain(shadow, doorbell, kNoFailingPage);
    for (const ::mmuvisor::testing::RefVisit& v : chain.visits) ++want[v.status];
    ASSERT_EQ(rig.engine().stats().by_status, want) << "after the chain at 0x" << std::hex << doorbell;
  }
  for (uint64_t a = 0; a < ram; a += 8) {
    ASSERT_EQ(rig.GetWord(a), shadow[a / 8]) << "gpa 0x" << std::hex << a;
  }
  const DmaStats stats = rig.engine().stats();
  EXPECT_EQ(stats.by_status[MMV_DMA_STATUS_FAULT], 0u);
  EXPECT_GT(stats.ops_ok, 0u) << "the sweep must also run some descriptors";
  EXPECT_GT(stats.errors_unrequested, 0u);
}

// What the stress rig relies on: each write is announced first with the host address of
// its page (inside the access: the DeviceMmu's drain section, so a window's start waits
// for the note and the write together), and DeviceAddress() decides where the bytes go.
class RecordingHooks : public DeviceAccessHooks {
 public:
  void BeforeWrite(uint64_t host) override { writes.push_back(host); }
  uint64_t DeviceAddress(uint64_t host) override {
    if (redirect == nullptr) return host;
    return reinterpret_cast<uint64_t>(redirect) + (host & 4095);
  }
  std::vector<uint64_t> writes;
  uint64_t* redirect = nullptr;  // one page
};

// Both memories the design allows take the hooks (param: the mirror path).
class DmaMemoryHooksTest : public ::testing::TestWithParam<bool> {
 protected:
  void Install(DmaRig& rig, RecordingHooks* hooks) {
    if (GetParam()) {
      auto* memory = dynamic_cast<MirrorMemory*>(&rig.engine_memory());
      ASSERT_NE(memory, nullptr);
      memory->set_hooks(hooks);
    } else {
      auto* memory = dynamic_cast<SecondaryMmuMemory*>(&rig.engine_memory());
      ASSERT_NE(memory, nullptr);
      memory->set_hooks(hooks);
    }
  }
};

TEST_P(DmaMemoryHooksTest, WritesAreAnnouncedWithTheHostAddressOfTheirPage) {
  DmaRig rig({.pages = 16, .mirror = GetParam()});
  RecordingHooks hooks;
  ASSERT_NO_FATAL_FAILURE(Install(rig, &hooks));
  DmaMemory& memory = rig.engine_memory();
  ASSERT_TRUE(memory.WriteWords(0x3008, std::vector<uint64_t>{7, 8}).ok());
  ASSERT_TRUE(memory.FillWords(0x3100, 9, 4).ok());
  std::vector<uint64_t> back(2);
  ASSERT_TRUE(memory.ReadWords(0x3008, absl::MakeSpan(back)).ok());
  EXPECT_THAT(back, ::testing::ElementsAre(7u, 8u));
  EXPECT_EQ(rig.GetWord(0x3108), 9u);
  ASSERT_EQ(hooks.writes.size(), 2u) << "one note per write, none for the read";
  EXPECT_NE(hooks.writes[0], 0u);
  EXPECT_EQ(hooks.writes[0] % 4096, 0u) << "the page's address";
  EXPECT_EQ(hooks.writes[0], hooks.writes[1]) << "both writes went to the page of gpa 0x3000";
}

TEST_P(DmaMemoryHooksTest, DeviceAddressDecidesWhereTheBytesGo) {
  DmaRig rig({.pages = 16, .mirror = GetParam()});
  RecordingHooks hooks;
  std::vector<uint64_t> other(512, 0);
  hooks.redirect = other.data();
  ASSERT_NO_FATAL_FAILURE(Install(rig, &hooks));
  ASSERT_TRUE(rig.engine_memory().WriteWords(0x2010, std::vector<uint64_t>{0x5a5a}).ok());
  EXPECT_EQ(other[2], 0x5a5au);
  EXPECT_EQ(rig.GetWord(0x2010), 0u) << "the VMM's view of the page is untouched";
  std::vector<uint64_t> back(1);
  ASSERT_TRUE(rig.engine_memory().ReadWords(0x2010, absl::MakeSpan(back)).ok());
  EXPECT_EQ(back[0], 0x5a5au) << "reads go through the device's view too";
}

INSTANTIATE_TEST_SUITE_P(Paths, DmaMemoryHooksTest, ::testing::Bool(),
                         [](const ::testing::TestParamInfo<bool>& p) { return p.param ? "Mirror" : "SecondaryMmu"; });

}  // namespace
}  // namespace mmuvisor::vmm::dma
