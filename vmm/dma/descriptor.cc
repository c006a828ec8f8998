#include "vmm/dma/descriptor.h"

namespace mmuvisor::vmm::dma {
namespace {

// [addr, addr + len) inside [0, ram_size), without overflow. REQUIRES: no wrap (checked).
bool InRam(uint64_t addr, uint64_t len, uint64_t ram_size) {
  return addr <= ram_size && len <= ram_size - addr;
}

}  // namespace

bool DmaAddressSpace::Contains(uint64_t addr, uint64_t len) const {
  if (InRam(addr, len, ram_size)) return true;
  if (aliases == 0 || alias_stride == 0 || addr < alias_stride) return false;
  const uint64_t k = addr / alias_stride;
  return k <= aliases && InRam(addr - k * alias_stride, len, ram_size);
}

namespace {

bool Wraps(uint64_t addr, uint64_t len) { return addr > UINT64_MAX - len; }

}  // namespace

absl::string_view DmaStatusName(uint32_t status) {
  switch (status) {
    case MMV_DMA_STATUS_PENDING: return "pending";
    case MMV_DMA_STATUS_OK: return "ok";
    case MMV_DMA_STATUS_BAD_DESC: return "bad-descriptor";
    case MMV_DMA_STATUS_BAD_LENGTH: return "bad-length";
    case MMV_DMA_STATUS_MISALIGNED: return "misaligned";
    case MMV_DMA_STATUS_WRAP: return "wrap-around";
    case MMV_DMA_STATUS_OUT_OF_RANGE: return "out-of-range";
    case MMV_DMA_STATUS_OVERLAP: return "overlap";
    case MMV_DMA_STATUS_BAD_CHAIN: return "bad-chain";
    case MMV_DMA_STATUS_FAULT: return "fault";
    default: return "unknown";
  }
}

absl::string_view DmaOpName(uint32_t op) {
  switch (op) {
    case MMV_DMA_OP_COPY: return "copy";
    case MMV_DMA_OP_FILL: return "fill";
    case MMV_DMA_OP_CHECKSUM: return "checksum";
    default: return "unknown";
  }
}

uint32_t ValidateDescriptor(const mmv_dma_desc& desc, const DmaAddressSpace& memory) {
  if (desc.magic != MMV_DMA_DESC_MAGIC) return MMV_DMA_STATUS_BAD_DESC;
  if (desc.op != MMV_DMA_OP_COPY && desc.op != MMV_DMA_OP_FILL &&
      desc.op != MMV_DMA_OP_CHECKSUM) {
    return MMV_DMA_STATUS_BAD_DESC;
  }
  if ((desc.flags & ~MMV_DMA_FLAGS_KNOWN) != 0) return MMV_DMA_STATUS_BAD_DESC;
  if (desc.len == 0 || desc.len > MMV_DMA_MAX_LEN || desc.len % 8 != 0) {
    return MMV_DMA_STATUS_BAD_LENGTH;
  }
  const bool reads_src = desc.op == MMV_DMA_OP_COPY || desc.op == MMV_DMA_OP_CHECKSUM;
  const bool writes_dst = desc.op == MMV_DMA_OP_COPY || desc.op == MMV_DMA_OP_FILL;
  if ((reads_src && desc.src % 8 != 0) || (writes_dst && desc.dst % 8 != 0)) {
    return MMV_DMA_STATUS_MISALIGNED;
  }
  if ((reads_src && Wraps(desc.src, desc.len)) || (writes_dst && Wraps(desc.dst, desc.len))) {
    return MMV_DMA_STATUS_WRAP;
  }
  if ((reads_src && !memory.Contains(desc.src, desc.len)) ||
      (writes_dst && !memory.Contains(desc.dst, desc.len))) {
    return MMV_DMA_STATUS_OUT_OF_RANGE;
  }
  if (desc.op == MMV_DMA_OP_COPY && desc.src < desc.dst + desc.len &&
      desc.dst < desc.src + desc.len) {
    return MMV_DMA_STATUS_OVERLAP;
  }
  return MMV_DMA_STATUS_OK;
}

bool DescriptorAddressValid(uint64_t gpa, const DmaAddressSpace& memory) {
  return gpa % MMV_DMA_DESC_ALIGN == 0 && !Wraps(gpa, sizeof(mmv_dma_desc)) &&
         memory.Contains(gpa, sizeof(mmv_dma_desc));
}

mmv_dma_desc MakeDescriptor(uint32_t op, uint64_t src, uint64_t dst, uint64_t len,
                            uint64_t value, uint64_t next, uint32_t flags) {
  mmv_dma_desc d{};
  d.magic = MMV_DMA_DESC_MAGIC;
  d.op = op;
  d.src = src;
  d.dst = dst;
  d.len = len;
  d.value = value;
  d.next = next;
  d.flags = flags;
  d.status = MMV_DMA_STATUS_PENDING;
  return d;
}

}  // namespace mmuvisor::vmm::dma
