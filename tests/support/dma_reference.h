// A reference DMA device for test oracles, written apart from vmm/dma straight from the
// rules in guests/include/mmuvisor/guest_abi.h (and the rule order vmm/dma/descriptor.h
// documents), so that a test checks the engine against the ABI and not against itself.
// It shares no code with vmm/dma: the validator below uses 128-bit arithmetic where the
// engine uses overflow-checked 64-bit arithmetic, and its model of execution is a plain
// word loop over a shadow copy of RAM.
//
// Model: guest RAM is [0, ram_size) (no aliases), a vector of 64-bit words. A chain starts
// at the doorbell address; each descriptor is copied once, judged (RefValidateDescriptor,
// then the `next` rule), run if OK, and given its status (CHECKSUM's result first, then the
// flags/status word). One page may be "failing" (every access to it fails, as a fault the
// MMU could not resolve): a descriptor there cannot be read (the chain ends, no status); an
// op that reaches it ends FAULT with the bytes before the first unreachable page done and
// the rest untouched (the device works in address order, a page piece at a time:
// vmm/dma/dma_engine.h).
//
// Test-only, header-only; no state beyond the caller's shadow RAM.
#ifndef MMUVISOR_TESTS_SUPPORT_DMA_REFERENCE_H_
#define MMUVISOR_TESTS_SUPPORT_DMA_REFERENCE_H_

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "mmuvisor/guest_abi.h"

namespace mmuvisor::testing {

using RefU128 = unsigned __int128;

inline bool RefOpReadsSrc(uint32_t op) {
  return op == MMV_DMA_OP_COPY || op == MMV_DMA_OP_CHECKSUM;
}
inline bool RefOpWritesDst(uint32_t op) {
  return op == MMV_DMA_OP_COPY || op == MMV_DMA_OP_FILL;
}

// guest_abi.h's data rules, first broken rule wins, in this order: BAD_DESC (magic, op,
// unknown flags), BAD_LENGTH (0, > MMV_DMA_MAX_LEN, not a multiple of 8), MISALIGNED (src
// or dst, where the op uses it, not 8-byte aligned), WRAP (addr + len not representable in
// 64 bits), OUT_OF_RANGE (leaves [0, ram_size)), OVERLAP (COPY ranges share a byte).
inline uint32_t RefValidateDescriptor(const mmv_dma_desc& d, uint64_t ram_size) {
  if (d.magic != MMV_DMA_DESC_MAGIC) return MMV_DMA_STATUS_BAD_DESC;
  if (d.op != MMV_DMA_OP_COPY && d.op != MMV_DMA_OP_FILL && d.op != MMV_DMA_OP_CHECKSUM) {
    return MMV_DMA_STATUS_BAD_DESC;
  }
  if ((d.flags & ~uint32_t{MMV_DMA_FLAGS_KNOWN}) != 0) return MMV_DMA_STATUS_BAD_DESC;
  if (d.len == 0 || d.len > MMV_DMA_MAX_LEN || d.len % 8 != 0) return MMV_DMA_STATUS_BAD_LENGTH;
  const bool src = RefOpReadsSrc(d.op), dst = RefOpWritesDst(d.op);
  if ((src && d.src % 8 != 0) || (dst && d.dst % 8 != 0)) return MMV_DMA_STATUS_MISALIGNED;
  const RefU128 src_end = RefU128{d.src} + d.len, dst_end = RefU128{d.dst} + d.len;
  const RefU128 two64 = RefU128{1} << 64;
  if ((src && src_end >= two64) || (dst && dst_end >= two64)) return MMV_DMA_STATUS_WRAP;
  if ((src && src_end > ram_size) || (dst && dst_end > ram_size)) {
    return MMV_DMA_STATUS_OUT_OF_RANGE;
  }
  if (d.op == MMV_DMA_OP_COPY && d.src < dst_end && d.dst < src_end) {
    return MMV_DMA_STATUS_OVERLAP;
  }
  return MMV_DMA_STATUS_OK;
}

// A descriptor may live at `gpa`: MMV_DMA_DESC_ALIGN-aligned, all of it inside RAM.
inline bool RefDescriptorAddressOk(uint64_t gpa, uint64_t ram_size) {
  return gpa % MMV_DMA_DESC_ALIGN == 0 && RefU128{gpa} + sizeof(mmv_dma_desc) <= ram_size;
}

// One descriptor the reference read and judged.
struct RefVisit {
  uint64_t at = 0;        // its gpa
  mmv_dma_desc desc{};    // the copy it judged
  uint32_t status = 0;    // the status it wrote
  uint64_t result = 0;    // CHECKSUM's result (written when status is OK)
  uint64_t done = 0;      // bytes of the op's range done (len if OK; the prefix if FAULT)
  uint64_t status_word() const { return uint64_t{desc.flags} | uint64_t{status} << 32; }
};

struct RefChain {
  bool bad_doorbell = false;   // no descriptor address: nothing read
  std::vector<RefVisit> visits;
  bool read_failed = false;    // the chain ended at a descriptor it could not read
  uint64_t failed_read_at = 0;
};

// Runs the chain at `doorbell` on `ram` (words of guest RAM, changed as the device would).
// `failing_page`: page number whose accesses fail (>= the RAM's pages: none).
inline RefChain RefRunChain(std::vector<uint64_t>& ram, uint64_t doorbell,
                            uint64_t failing_page) {
  constexpr uint64_t kPage = 4096;
  const uint64_t ram_size = ram.size() * 8;
  RefChain chain;
  if (!RefDescriptorAddressOk(doorbell, ram_size)) {
    chain.bad_doorbell = true;
    return chain;
  }
  // Bytes of [addr, addr + len) before the first one in the failing page.
  auto reachable = [&](uint64_t addr, uint64_t len) -> uint64_t {
    const RefU128 fs = RefU128{failing_page} * kPage, fe = fs + kPage;
    if (RefU128{addr} + len <= fs || RefU128{addr} >= fe) return len;
    return addr >= fs ? 0 : static_cast<uint64_t>(fs - addr);
  };
  uint64_t cur = doorbell;
  for (uint32_t index = 0;; ++index) {
    if (cur / kPage == failing_page) {
      chain.read_failed = true;
      chain.failed_read_at = cur;
      return chain;
    }
    RefVisit v;
    v.at = cur;
    std::memcpy(&v.desc, &ram[cur / 8], sizeof(v.desc));
    const mmv_dma_desc& d = v.desc;
    v.status = RefValidateDescriptor(d, ram_size);
    const bool next_ok = d.next == 0 || (index + 1 < MMV_DMA_MAX_CHAIN &&
                                         RefDescriptorAddressOk(d.next, ram_size));
    if (v.status == MMV_DMA_STATUS_OK && !next_ok) v.status = MMV_DMA_STATUS_BAD_CHAIN;
    if (v.status == MMV_DMA_STATUS_OK) {
      uint64_t done = d.len;
      if (RefOpReadsSrc(d.op)) done = std::min(done, reachable(d.src, d.len));
      if (RefOpWritesDst(d.op)) done = std::min(done, reachable(d.dst, d.len));
      for (uint64_t off = 0; off < done; off += 8) {
        // COPY ranges do not overlap (validated): the order of the words does not matter.
        if (d.op == MMV_DMA_OP_COPY) ram[(d.dst + off) / 8] = ram[(d.src + off) / 8];
        if (d.op == MMV_DMA_OP_FILL) ram[(d.dst + off) / 8] = d.value;
        if (d.op == MMV_DMA_OP_CHECKSUM) {
          // guest_abi.h: sum = (sum ^ w[i]) * 0x100000001b3 + i (mod 2^64).
          v.result = (v.result ^ ram[(d.src + off) / 8]) * MMV_DMA_CHECKSUM_PRIME + off / 8;
        }
      }
      v.done = done;
      if (done < d.len) {
        v.status = MMV_DMA_STATUS_FAULT;
        v.result = 0;
      }
    }
    if (v.status == MMV_DMA_STATUS_OK && d.op == MMV_DMA_OP_CHECKSUM) {
      ram[(cur + offsetof(mmv_dma_desc, result)) / 8] = v.result;
    }
    ram[(cur + offsetof(mmv_dma_desc, flags)) / 8] = v.status_word();
    chain.visits.push_back(v);
    if (!next_ok || d.next == 0) return chain;
    cur = d.next;
  }
}

}  // namespace mmuvisor::testing

#endif  // MMUVISOR_TESTS_SUPPORT_DMA_REFERENCE_H_
