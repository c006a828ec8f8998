// GuestConsole: where guest text goes. Collects serial bytes (line-buffered per vCPU, so
// concurrent vCPUs never interleave inside a line) and ucall PRINT lines into one ordered
// transcript, and echoes each completed line to a FILE* (stdout for the CLI, none in tests).
// Bounded whatever the guest prints: the transcript keeps the run's first kTranscriptLimit
// bytes (the echo gets everything; transcript_dropped() counts the rest), and a serial line
// that reaches kMaxLineBytes without a newline is emitted as a line of its own. The echo
// shows control bytes (ESC, BEL, CR, ...; all of C0 but newline and tab, and DEL) as \xNN,
// so a guest cannot drive the operator's terminal; the transcript keeps them raw.
//
// Thread-safety: every method may be called from any vCPU thread; mu_ guards the buffers
// and the echo, so lines come out whole.
#ifndef MMUVISOR_VMM_MACHINE_GUEST_CONSOLE_H_
#define MMUVISOR_VMM_MACHINE_GUEST_CONSOLE_H_

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <map>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/strings/string_view.h"
#include "notifier/base/mutex.h"
#include "vmm/devices/serial_console.h"

namespace mmuvisor::vmm {

class GuestConsole : public SerialSink {
 public:
  // echo may be null (collect only). Not owned.
  explicit GuestConsole(std::FILE* echo) : echo_(echo) {}

  void SerialByte(uint32_t vcpu, uint8_t byte) override ABSL_LOCKS_EXCLUDED(mu_);
  // A ucall PRINT: one line (a trailing newline is added if missing).
  void PrintLine(uint32_t vcpu, absl::string_view text) ABSL_LOCKS_EXCLUDED(mu_);
  // Emits any partial serial lines (at the end of a run).
  void Flush() ABSL_LOCKS_EXCLUDED(mu_);

  std::string transcript() const ABSL_LOCKS_EXCLUDED(mu_);
  // Bytes the transcript did not keep (past kTranscriptLimit).
  uint64_t transcript_dropped() const ABSL_LOCKS_EXCLUDED(mu_);

  static constexpr size_t kTranscriptLimit = size_t{4} << 20;
  static constexpr size_t kMaxLineBytes = 4096;

 private:
  void EmitLocked(absl::string_view line) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  std::FILE* const echo_;
  mutable Mutex mu_;
  std::map<uint32_t, std::string> partial_ ABSL_GUARDED_BY(mu_);  // per-vCPU serial line
  std::string transcript_ ABSL_GUARDED_BY(mu_);
  uint64_t transcript_dropped_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace mmuvisor::vmm

#endif  // MMUVISOR_VMM_MACHINE_GUEST_CONSOLE_H_
