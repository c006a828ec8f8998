// Progress while a stress run goes on: a sample of the counters, the line made from two
// samples (rates over the interval between them), and a printer thread that rewrites one
// line on a terminal ("\r...\x1b[K" every tty_period) or prints plain lines (every
// plain_period) when the output is not a terminal (CI logs, pipes).
//
// Threads: the printer's own thread calls `sample` and writes `out`; Start/Stop from the
// owner. FormatProgress is pure.
#ifndef MMUVISOR_VMM_STRESS_PROGRESS_H_
#define MMUVISOR_VMM_STRESS_PROGRESS_H_

#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/time/time.h"
#include "notifier/base/mutex.h"

namespace mmuvisor::vmm::stress {

struct ProgressSample {
  double elapsed_s = 0;
  uint64_t pages_verified = 0;
  uint64_t invalidations = 0;
  uint64_t faults = 0;
  uint64_t retries = 0;
  uint64_t swap_ins = 0;
  uint64_t mismatches = 0;
  double resident_fraction = -1;  // < 0: unknown
};

// "[  3.0s] verified 12.3k pages/s | inval 850/s | faults 1.2k/s | retries 37 | swap-ins
// 4.1k | resident 24% | mismatches 0". Rates use now - prev (prev may be all zeros).
std::string FormatProgress(const ProgressSample& now, const ProgressSample& prev);
// 1234 -> "1234", 12345 -> "12.3k", 1.5e6 -> "1.5M".
std::string HumanCount(double value);

class ProgressPrinter {
 public:
  ProgressPrinter(std::FILE* out, bool tty, std::function<ProgressSample()> sample,
                  absl::Duration tty_period = absl::Milliseconds(250),
                  absl::Duration plain_period = absl::Seconds(1));
  ~ProgressPrinter();  // Stop()
  void Start() ABSL_LOCKS_EXCLUDED(mu_);
  // Prints a last line (ending the rewritten line with a newline on a terminal), joins.
  void Stop() ABSL_LOCKS_EXCLUDED(mu_);
  uint64_t lines_printed() const ABSL_LOCKS_EXCLUDED(mu_);

 private:
  void Loop() ABSL_LOCKS_EXCLUDED(mu_);
  void PrintOnce(ProgressSample& prev) ABSL_LOCKS_EXCLUDED(mu_);

  std::FILE* const out_;
  const bool tty_;
  const std::function<ProgressSample()> sample_;
  const absl::Duration period_;
  mutable Mutex mu_;
  std::condition_variable cv_;  // stop_ set
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  bool started_ ABSL_GUARDED_BY(mu_) = false;
  uint64_t lines_ ABSL_GUARDED_BY(mu_) = 0;
  std::thread thread_;
};

}  // namespace mmuvisor::vmm::stress

#endif  // MMUVISOR_VMM_STRESS_PROGRESS_H_
