#include "vmm/machine/guest_console.h"

#include <algorithm>
#include <string>

namespace mmuvisor::vmm {
namespace {

// The echo goes to the operator's terminal: a guest's control bytes there would act
// (ESC starts sequences that move the cursor, retitle the window or, on some terminals,
// write the clipboard; BEL, BS and a bare CR rewrite what is shown). Every C0 byte but
// newline and tab, and DEL, is echoed as \xNN instead; bytes from 0x80 up pass (UTF-8
// text). The transcript keeps the bytes as the guest wrote them.
void WriteEscaped(std::FILE* out, absl::string_view line) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string shown;
  shown.reserve(line.size());
  for (const char ch : line) {
    const auto c = static_cast<unsigned char>(ch);
    if ((c < 0x20 && c != '\n' && c != '\t') || c == 0x7f) {
      shown += "\\x";
      shown += kHex[c >> 4];
      shown += kHex[c & 0xf];
    } else {
      shown += ch;
    }
  }
  std::fwrite(shown.data(), 1, shown.size(), out);
}

}  // namespace

void GuestConsole::SerialByte(uint32_t vcpu, uint8_t byte) {
  MutexLock lock(&mu_);
  if (byte == '\r') return;  // CRLF from guests written for real terminals
  std::string& line = partial_[vcpu];
  line.push_back(static_cast<char>(byte));
  if (byte == '\n') {
    EmitLocked(line);
    line.clear();
  } else if (line.size() >= kMaxLineBytes) {  // a guest that never ends its line
    line.push_back('\n');
    EmitLocked(line);
    line.clear();
  }
}

void GuestConsole::PrintLine(uint32_t /*vcpu*/, absl::string_view text) {
  MutexLock lock(&mu_);
  std::string line(text);
  if (line.empty() || line.back() != '\n') line.push_back('\n');
  EmitLocked(line);
}

void GuestConsole::Flush() {
  MutexLock lock(&mu_);
  for (auto& [vcpu, line] : partial_) {
    if (!line.empty()) {
      line.push_back('\n');
      EmitLocked(line);
      line.clear();
    }
  }
  if (echo_ != nullptr) std::fflush(echo_);
}

std::string GuestConsole::transcript() const {
  MutexLock lock(&mu_);
  return transcript_;
}

uint64_t GuestConsole::transcript_dropped() const {
  MutexLock lock(&mu_);
  return transcript_dropped_;
}

void GuestConsole::EmitLocked(absl::string_view line) {
  const size_t kept = std::min(line.size(), kTranscriptLimit - transcript_.size());
  transcript_.append(line.data(), kept);
  transcript_dropped_ += line.size() - kept;
  if (echo_ != nullptr) {
    WriteEscaped(echo_, line);
    std::fflush(echo_);
  }
}

}  // namespace mmuvisor::vmm
