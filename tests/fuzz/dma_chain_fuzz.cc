// libFuzzer target `dma_chain`: a guest's DMA request (vmm/dma/dma_engine.h) as the device
// receives it: the doorbell's gpa and the guest RAM holding the descriptor chain and data.
// DmaEngine::ExecuteChain (what the device thread runs per doorbell) walks the chain over a
// fake DmaMemory on a 16 KiB RAM buffer that logs every access.
//
// Input: [0..4) doorbell gpa (little endian, as the 32-bit OUT carries it) | [4] the page
//        whose accesses fail (a fault the MMU could not resolve; >= 4: none) | [5..) guest
//        RAM from gpa 0 (the rest is zero).
//
// Oracle (abort on violation): every access honours DmaMemory's REQUIRES (8-byte aligned,
// inside one page, inside RAM). A reference device written apart from vmm/dma from
// guest_abi.h's rules (tests/support/dma_reference.h) runs the same chain on a shadow copy
// of RAM, and the engine's access log must match it descriptor by descriptor, in order:
// one 8-word read at the chain address (the doorbell, then each `next`; no other read
// counts as a descriptor), then only reads inside the op's source and writes inside the
// part of its destination the reference wrote (exactly as many words), then for an OK
// CHECKSUM the result, then exactly one flags/status write with the reference's status
// (FAULT where the op reached the failing page); nothing after the last descriptor. RAM
// must end equal to the shadow, and the engine's counters must agree with the verdicts.
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "notifier/base/page.h"
#include "tests/support/dma_reference.h"
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

struct Access {
  enum Kind { kRead, kWrite, kFill } kind;
  uint64_t gpa;
  uint64_t words;
  uint64_t first;  // the first word written (kWrite, kFill)
  bool failed;     // the injected failing page refused it
};

class BufferMemory : public DmaMemory {
 public:
  std::vector<uint64_t> ram = std::vector<uint64_t>(kRam / 8);
  uint64_t failing_page = kPages;
  std::vector<Access> log;

  absl::Status ReadWords(uint64_t gpa, absl::Span<uint64_t> out) override {
    const absl::Status s = Check(gpa, out.size());
    log.push_back({Access::kRead, gpa, out.size(), 0, !s.ok()});
    if (s.ok()) std::memcpy(out.data(), &ram[gpa / 8], out.size() * 8);
    return s;
  }
  absl::Status WriteWords(uint64_t gpa, absl::Span<const uint64_t> in) override {
    const absl::Status s = Check(gpa, in.size());
    log.push_back({Access::kWrite, gpa, in.size(), in.empty() ? 0 : in[0], !s.ok()});
    if (s.ok()) std::memcpy(&ram[gpa / 8], in.data(), in.size() * 8);
    return s;
  }
  absl::Status FillWords(uint64_t gpa, uint64_t value, uint64_t words) override {
    const absl::Status s = Check(gpa, words);
    log.push_back({Access::kFill, gpa, words, value, !s.ok()});
    if (s.ok()) {
      for (uint64_t i = 0; i < words; ++i) ram[gpa / 8 + i] = value;
    }
    return s;
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
};

bool Inside(const Access& a, uint64_t start, uint64_t len) {
  return a.gpa >= start && a.gpa - start <= len && a.words * 8 <= len - (a.gpa - start);
}

// Matches the engine's access log against the reference chain (see the file comment).
void CheckLog(const std::vector<Access>& log, const testing::RefChain& ref) {
  size_t i = 0;
  auto next = [&](const char* what, uint64_t gpa) -> const Access& {
    if (i >= log.size()) Fail(what, gpa, 0);
    return log[i++];
  };
  for (const testing::RefVisit& v : ref.visits) {
    const mmv_dma_desc& d = v.desc;
    const Access& read = next("descriptor never read", v.at);
    if (read.kind != Access::kRead || read.gpa != v.at || read.words != kDescWords || read.failed) {
      Fail("expected the descriptor read at the chain address", v.at, read.gpa);
    }
    // The op's accesses: only when the reference ran it (OK, or FAULT part way).
    const bool ran = v.status == MMV_DMA_STATUS_OK || v.status == MMV_DMA_STATUS_FAULT;
    const uint64_t want_written = ran && testing::RefOpWritesDst(d.op) ? v.done / 8 : 0;
    uint64_t written = 0;
    bool refused = false;
    while (ran && i < log.size()) {
      const Access& a = log[i];
      const bool read_src = a.kind == Access::kRead && testing::RefOpReadsSrc(d.op) &&
                            Inside(a, d.src, d.len);
      const bool write_dst = a.kind != Access::kRead && testing::RefOpWritesDst(d.op) &&
                             Inside(a, d.dst, d.len);
      if (refused) break;  // the access that reached the failing page ended the op
      if (a.failed) {
        if (!(read_src || write_dst) || v.status != MMV_DMA_STATUS_FAULT) break;
        refused = true;
      } else if (write_dst) {
        if (written >= want_written || !Inside(a, d.dst, v.done)) break;
        written += a.words;
      } else if (!read_src) {
        break;
      }
      ++i;
    }
    if (written != want_written) Fail("data words written differ from the reference", v.at, written);
    if (v.status == MMV_DMA_STATUS_FAULT && !refused) Fail("FAULT expected, no access refused", v.at, 0);
    if (v.status == MMV_DMA_STATUS_OK && d.op == MMV_DMA_OP_CHECKSUM) {
      const Access& r = next("CHECKSUM result never written", v.at);
      if (r.kind != Access::kWrite || r.failed || r.words != 1 ||
          r.gpa != v.at + offsetof(mmv_dma_desc, result) || r.first != v.result) {
        Fail("expected the CHECKSUM result (the reference's value) next", v.at, r.gpa);
      }
    }
    const Access& st = next("status never written", v.at);
    if (st.kind != Access::kWrite || st.failed || st.words != 1 ||
        st.gpa != v.at + offsetof(mmv_dma_desc, flags)) {
      std::fprintf(stderr, "dma_chain fuzz: descriptor at 0x%llx, reference status %u: next "
                   "access is a %s of %llu words at 0x%llx\n",
                   static_cast<unsigned long long>(v.at), v.status,
                   st.kind == Access::kRead ? "read" : st.kind == Access::kWrite ? "write" : "fill",
                   static_cast<unsigned long long>(st.words), static_cast<unsigned long long>(st.gpa));
      Fail("expected the descriptor's one flags/status write next", v.at, st.gpa);
    }
    if (st.first != v.status_word()) {
      std::fprintf(stderr, "dma_chain fuzz: descriptor at 0x%llx: status %u, reference says %u\n",
                   static_cast<unsigned long long>(v.at), static_cast<unsigned>(st.first >> 32),
                   v.status);
      Fail("flags/status word differs from the reference verdict", v.at, st.first);
    }
  }
  if (ref.read_failed) {
    const Access& read = next("failing descriptor read never tried", ref.failed_read_at);
    if (read.kind != Access::kRead || read.gpa != ref.failed_read_at || !read.failed) {
      Fail("expected the refused descriptor read at the chain address", ref.failed_read_at, read.gpa);
    }
  }
  if (i != log.size()) Fail("accesses after the chain ended", log[i].gpa, log[i].words);
}

}  // namespace
}  // namespace mmuvisor::vmm::dma

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace mmuvisor::vmm::dma;
  namespace t = mmuvisor::testing;
  if (size < 5) return 0;
  uint32_t doorbell = 0;
  std::memcpy(&doorbell, data, 4);
  BufferMemory memory;
  memory.failing_page = data[4];
  std::memcpy(memory.ram.data(), data + 5, std::min<size_t>(size - 5, kRam));
  std::vector<uint64_t> shadow = memory.ram;

  DmaEngineOptions options;
  options.ram_size = kRam;
  DmaEngine engine(memory, options);
  engine.ExecuteChain(doorbell);
  const t::RefChain ref = t::RefRunChain(shadow, doorbell, memory.failing_page);

  CheckLog(memory.log, ref);
  if (memory.ram != shadow) {
    for (size_t w = 0; w < shadow.size(); ++w) {
      if (memory.ram[w] != shadow[w]) Fail("RAM differs from the reference's", w * 8, 1);
    }
  }
  const DmaStats stats = engine.stats();
  if (stats.descriptors > MMV_DMA_MAX_CHAIN) Fail("chain longer than MMV_DMA_MAX_CHAIN", doorbell, stats.descriptors);
  if (stats.descriptors != ref.visits.size()) Fail("descriptors judged != the reference's", doorbell, stats.descriptors);
  std::array<uint64_t, kDmaStatusCount> by_status{};
  uint64_t ok = 0, requested = 0, unrequested = ref.bad_doorbell || ref.read_failed ? 1 : 0;
  for (const t::RefVisit& v : ref.visits) {
    ++by_status[v.status];
    if (v.status == MMV_DMA_STATUS_OK) {
      ++ok;
    } else if (v.desc.flags & MMV_DMA_FLAG_EXPECT_ERROR) {
      ++requested;
    } else {
      ++unrequested;
    }
  }
  if (stats.by_status != by_status) Fail("per-status counts differ from the reference's", doorbell, 0);
  if (stats.ops_ok != ok || stats.errors_requested != requested ||
      stats.errors_unrequested != unrequested) {
    Fail("ok/requested/unrequested counts differ from the reference's", doorbell, stats.ops_ok);
  }
  return 0;
}
