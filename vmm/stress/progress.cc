#include "vmm/stress/progress.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace mmuvisor::vmm::stress {
namespace {

double Rate(uint64_t now, uint64_t prev, double seconds) {
  if (seconds <= 0 || now < prev) return 0;
  return static_cast<double>(now - prev) / seconds;
}

}  // namespace

std::string HumanCount(double value) {
  if (value < 10000) return absl::StrFormat("%.0f", value);
  if (value < 1e6) return absl::StrFormat("%.1fk", value / 1e3);
  if (value < 1e9) return absl::StrFormat("%.1fM", value / 1e6);
  return absl::StrFormat("%.1fG", value / 1e9);
}

std::string FormatProgress(const ProgressSample& now, const ProgressSample& prev) {
  const double dt = now.elapsed_s - prev.elapsed_s;
  std::string line = absl::StrFormat(
      "[%6.1fs] verified %s pages/s | inval %s/s | faults %s/s | retries %s | swap-ins %s",
      now.elapsed_s, HumanCount(Rate(now.pages_verified, prev.pages_verified, dt)),
      HumanCount(Rate(now.invalidations, prev.invalidations, dt)),
      HumanCount(Rate(now.faults, prev.faults, dt)), HumanCount(static_cast<double>(now.retries)),
      HumanCount(static_cast<double>(now.swap_ins)));
  if (now.resident_fraction >= 0) {
    absl::StrAppend(&line, absl::StrFormat(" | resident %.0f%%", now.resident_fraction * 100));
  }
  absl::StrAppend(&line, " | mismatches ", now.mismatches);
  return line;
}

ProgressPrinter::ProgressPrinter(std::FILE* out, bool tty,
                                 std::function<ProgressSample()> sample,
                                 absl::Duration tty_period, absl::Duration plain_period)
    : out_(out), tty_(tty), sample_(std::move(sample)),
      period_(tty ? tty_period : plain_period) {}

ProgressPrinter::~ProgressPrinter() { Stop(); }

void ProgressPrinter::Start() {
  MutexLock lock(&mu_);
  if (started_) return;
  started_ = true;
  thread_ = std::thread([this] { Loop(); });
}

void ProgressPrinter::Stop() {
  {
    MutexLock lock(&mu_);
    if (!started_ || stop_) return;
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

uint64_t ProgressPrinter::lines_printed() const {
  MutexLock lock(&mu_);
  return lines_;
}

void ProgressPrinter::PrintOnce(ProgressSample& prev) {
  const ProgressSample now = sample_();
  const std::string line = FormatProgress(now, prev);
  if (tty_) {
    std::fprintf(out_, "\r%s\x1b[K", line.c_str());
  } else {
    std::fprintf(out_, "%s\n", line.c_str());
  }
  std::fflush(out_);
  prev = now;
  MutexLock lock(&mu_);
  ++lines_;
}

void ProgressPrinter::Loop() {
  ProgressSample prev;
  for (;;) {
    {
      MutexLock lock(&mu_);
      if (mu_.AwaitFor(cv_, period_, [this]() ABSL_NO_THREAD_SAFETY_ANALYSIS { return stop_; })) {
        break;
      }
    }
    PrintOnce(prev);
  }
  PrintOnce(prev);
  if (tty_) {
    std::fputc('\n', out_);
    std::fflush(out_);
  }
}

}  // namespace mmuvisor::vmm::stress
