#include "vmm/machine/exception_stubs.h"

#include <cstring>
#include <vector>

#include "absl/strings/str_format.h"
#include "vmm/boot/x86_state.h"
#include "notifier/base/status_macros.h"

namespace mmuvisor::vmm {
namespace {

constexpr uint64_t kStubBytes = 8;
constexpr uint64_t kCommonGpa = kExceptionStubGpa + kExceptionVectors * kStubBytes;

absl::string_view kNames[kExceptionVectors] = {
    "divide error (#DE)",        "debug (#DB)",
    "NMI",                       "breakpoint (#BP)",
    "overflow (#OF)",            "bound range (#BR)",
    "invalid opcode (#UD)",      "device not available (#NM)",
    "double fault (#DF)",        "coprocessor segment overrun",
    "invalid TSS (#TS)",         "segment not present (#NP)",
    "stack fault (#SS)",         "general protection (#GP)",
    "page fault (#PF)",          "reserved (15)",
    "x87 error (#MF)",           "alignment check (#AC)",
    "machine check (#MC)",       "SIMD error (#XM)",
    "virtualization (#VE)",      "control protection (#CP)",
    "reserved (22)",             "reserved (23)",
    "reserved (24)",             "reserved (25)",
    "reserved (26)",             "reserved (27)",
    "hypervisor injection (#HV)", "VMM communication (#VC)",
    "security (#SX)",            "reserved (31)"};

}  // namespace

absl::string_view ExceptionName(uint32_t vector) {
  return vector < kExceptionVectors ? kNames[vector] : "not an exception";
}

bool ExceptionHasErrorCode(uint32_t vector) {
  switch (vector) {
    case 8: case 10: case 11: case 12: case 13: case 14: case 17: case 21: case 29: case 30:
      return true;
  }
  return false;
}

absl::Status InstallExceptionStubs(GuestMemoryAccess& memory) {
  // Stubs: push imm8 (6a ii); jmp rel32 (e9 ..) to the common tail; int3 pad.
  std::vector<uint8_t> code;
  for (uint32_t v = 0; v < kExceptionVectors; ++v) {
    const uint64_t at = kExceptionStubGpa + v * kStubBytes;
    const int32_t rel = static_cast<int32_t>(kCommonGpa - (at + 7));
    code.push_back(0x6a);
    code.push_back(static_cast<uint8_t>(v));
    code.push_back(0xe9);
    for (int i = 0; i < 4; ++i) code.push_back(static_cast<uint8_t>(rel >> (8 * i)));
    code.push_back(0xcc);
  }
  // Common tail: mov $kExceptionPort, %dx; out %al, %dx; jmp . (the VMM never resumes).
  const uint8_t tail[] = {0x66, 0xba, kExceptionPort & 0xff, kExceptionPort >> 8, 0xee,
                          0xeb, 0xfe};
  code.insert(code.end(), tail, tail + sizeof(tail));
  MMUVISOR_RETURN_IF_ERROR(memory.WriteGuest(Gpa{kExceptionStubGpa}, code));

  // 64-bit interrupt gates: offset[15:0], selector, ist=0, type 0xe | P, DPL 0,
  // offset[31:16], offset[63:32], reserved.
  uint8_t idt[kExceptionVectors * 16] = {};
  for (uint32_t v = 0; v < kExceptionVectors; ++v) {
    const uint64_t handler = kExceptionStubGpa + v * kStubBytes;
    uint8_t* g = idt + 16 * v;
    g[0] = handler & 0xff;
    g[1] = (handler >> 8) & 0xff;
    g[2] = kKernelCodeSelector & 0xff;
    g[3] = kKernelCodeSelector >> 8;
    g[4] = 0;     // IST 0
    g[5] = 0x8e;  // present, DPL 0, 64-bit interrupt gate
    g[6] = (handler >> 16) & 0xff;
    g[7] = (handler >> 24) & 0xff;
    const uint32_t high = static_cast<uint32_t>(handler >> 32);
    std::memcpy(g + 8, &high, 4);
  }
  return memory.WriteGuest(Gpa{MMV_IDT_GPA}, idt);
}

absl::StatusOr<ExceptionFrame> ReadExceptionFrame(GuestMemoryAccess& memory, uint64_t rsp) {
  uint64_t words[7] = {};
  MMUVISOR_RETURN_IF_ERROR(memory.ReadGuest(
      Gpa{rsp}, absl::Span<uint8_t>(reinterpret_cast<uint8_t*>(words), sizeof(words))));
  ExceptionFrame f;
  if (words[0] >= kExceptionVectors) {
    return absl::InvalidArgumentError(
        absl::StrFormat("exception frame at %#x names vector %u", rsp, words[0]));
  }
  f.vector = static_cast<uint32_t>(words[0]);
  f.has_error_code = ExceptionHasErrorCode(f.vector);
  const uint64_t* p = words + 1;
  if (f.has_error_code) f.error_code = *p++;
  f.rip = p[0];
  f.cs = p[1];
  f.rflags = p[2];
  f.rsp = p[3];
  f.ss = p[4];
  return f;
}

std::string ExceptionFrame::Describe() const {
  std::string s = absl::StrFormat("guest exception: %s, vector %u", ExceptionName(vector), vector);
  if (has_error_code) absl::StrAppendFormat(&s, ", error code %#x", error_code);
  return s;
}

}  // namespace mmuvisor::vmm
