#include "vmm/machine/guest_console.h"

#include <algorithm>

namespace mmuvisor::vmm {

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
    std::fwrite(line.data(), 1, line.size(), echo_);
    std::fflush(echo_);
  }
}

}  // namespace mmuvisor::vmm
