// libFuzzer target `ucall`: a guest's ucall (vmm/devices/ucall.h) as the VMM receives it: the
// value and width of the OUT to MMV_PORT_UCALL, and the guest RAM the block is copied from.
//
// Input: [0] OUT width (low 3 bits: 0..7 bytes, 4 is valid) | [1] port offset (low 2 bits)
//        | [2..6) the OUT's value (little endian: the block's gpa) | [6..) bytes placed in
//        guest RAM at that gpa (cut at the end of RAM; the rest of RAM is zero).
// Guest RAM is two adjacent 16 KiB memslots, so a block or balloon range straddling them is
// "not inside one memslot". The fake memory rewrites the block in RAM right after the
// device copied it (a guest racing its own ucall): every handler call must follow from the
// copy, never from a second read.
//
// Checked: at most one handler call per OUT; DONE and ASSERT and protocol errors stop the
// vCPU, the rest continue; a decoded call came from a copy with the right magic and a known
// command; PRINT text is the copy's text up to its NUL or MMV_UCALL_TEXT_MAX; a BALLOON
// range is page aligned, non-empty and inside one memslot.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include "vmm/devices/ucall.h"

namespace mmuvisor::vmm {
namespace {

constexpr uint64_t kSlot = 16 << 10;
constexpr uint64_t kRam = 2 * kSlot;

[[noreturn]] void Fail(const char* what) {
  std::fprintf(stderr, "ucall fuzz: %s\n", what);
  std::abort();
}

class FakeGuestMemory : public GuestMemoryAccess {
 public:
  std::vector<uint8_t> ram = std::vector<uint8_t>(kRam);
  std::optional<mmv_ucall> last_copy;  // what the device read, as a block (if it was one)

  absl::Status ReadGuest(Gpa gpa, absl::Span<uint8_t> out) override {
    if (!ContainsGuestRange(gpa, ByteSize{out.size()})) {
      return absl::OutOfRangeError("not inside one memslot");
    }
    std::memcpy(out.data(), ram.data() + gpa.value, out.size());
    if (out.size() == sizeof(mmv_ucall)) {
      mmv_ucall copy;
      std::memcpy(&copy, out.data(), sizeof(copy));
      last_copy = copy;
    }
    // The guest rewrites the block after the copy.
    for (size_t i = 0; i < out.size(); ++i) ram[gpa.value + i] ^= 0x5a;
    return absl::OkStatus();
  }
  absl::Status WriteGuest(Gpa, absl::Span<const uint8_t>) override {
    Fail("the ucall device wrote guest memory");
  }
  bool ContainsGuestRange(Gpa gpa, ByteSize len) const override {
    for (uint64_t base : {uint64_t{0}, kSlot}) {
      if (gpa.value >= base && gpa.value - base <= kSlot && len.value <= kSlot - (gpa.value - base)) {
        return true;
      }
    }
    return false;
  }
};

class CheckingHandler : public UcallHandler {
 public:
  explicit CheckingHandler(FakeGuestMemory* memory) : memory_(memory) {}
  int calls = 0;
  bool expect_stop = false;

  void OnPrint(uint32_t, absl::string_view text) override {
    const mmv_ucall& c = Decoded(MMV_UCALL_PRINT);
    if (text.size() > MMV_UCALL_TEXT_MAX ||
        text != absl::string_view(c.text, strnlen(c.text, MMV_UCALL_TEXT_MAX))) {
      Fail("PRINT text differs from the copied block's text");
    }
  }
  void OnSync(uint32_t, uint64_t stage, absl::Span<const uint64_t> values) override {
    const mmv_ucall& c = Decoded(MMV_UCALL_SYNC);
    if (stage != c.args[0] || values.size() != 5 || values[4] != c.args[5]) Fail("SYNC args");
  }
  void OnAssert(uint32_t, const GuestAssertion& a) override {
    Decoded(MMV_UCALL_ASSERT);
    expect_stop = true;
    if (a.ToString().empty()) Fail("empty assertion text");
  }
  void OnDone(uint32_t, uint64_t code) override {
    if (code != Decoded(MMV_UCALL_DONE).args[0]) Fail("DONE code");
    expect_stop = true;
  }
  void OnBalloon(uint32_t, Gpa gpa, ByteSize len) override {
    const mmv_ucall& c = Decoded(MMV_UCALL_BALLOON);
    if (gpa.value != c.args[0] || len.value != c.args[1]) Fail("BALLOON args");
    if (len.value == 0 || gpa.value % kPageSize != 0 || len.value % kPageSize != 0 ||
        !memory_->ContainsGuestRange(gpa, len)) {
      Fail("BALLOON range passed on unvalidated");
    }
  }
  void OnReport(uint32_t, uint64_t kind, absl::Span<const uint64_t> values) override {
    const mmv_ucall& c = Decoded(MMV_UCALL_REPORT);
    if (kind != c.args[0] || values.size() != 5 || values[0] != c.args[1]) Fail("REPORT args");
  }
  void OnSerial(uint32_t, absl::string_view bytes) override {
    const mmv_ucall& c = Decoded(MMV_UCALL_SERIAL);
    if (c.args[0] > MMV_UCALL_TEXT_MAX || bytes != absl::string_view(c.text, c.args[0])) {
      Fail("SERIAL bytes differ from the copied block's counted text");
    }
  }
  void OnProtocolError(uint32_t, absl::string_view what) override {
    ++calls;
    expect_stop = true;
    if (what.empty()) Fail("protocol error without a message");
  }

 private:
  const mmv_ucall& Decoded(uint32_t cmd) {
    ++calls;
    if (!memory_->last_copy) Fail("a call decoded without a copy of the block");
    const mmv_ucall& c = *memory_->last_copy;
    if (c.magic != MMV_UCALL_MAGIC || c.cmd != cmd) Fail("call does not match the copy");
    return c;
  }
  FakeGuestMemory* memory_;
};

}  // namespace
}  // namespace mmuvisor::vmm

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace mmuvisor::vmm;
  if (size < 6) return 0;
  const size_t width = data[0] & 7;
  const uint16_t offset = data[1] & 3;
  uint8_t out[8] = {};
  std::memcpy(out, data + 2, 4);
  uint32_t gpa = 0;
  std::memcpy(&gpa, data + 2, 4);

  FakeGuestMemory memory;
  if (gpa < kRam) {
    const size_t n = std::min<size_t>(size - 6, kRam - gpa);
    std::memcpy(memory.ram.data() + gpa, data + 6, n);
  }
  CheckingHandler handler(&memory);
  UcallDevice device(&memory, &handler);
  const IoAction action = device.Write(0, offset, absl::MakeConstSpan(out, width));
  if (handler.calls != 1) Fail("not exactly one handler call for one OUT");
  if ((action == IoAction::kStopVcpu) != handler.expect_stop) {
    Fail("stop/continue does not match the command");
  }
  uint8_t in[4] = {1, 1, 1, 1};
  device.Read(0, 0, absl::MakeSpan(in, 4));
  if (in[0] != 0 || in[3] != 0) Fail("a read of the port returned non-zero");
  return 0;
}
