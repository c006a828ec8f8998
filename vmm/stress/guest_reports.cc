#include "vmm/stress/guest_reports.h"

#include "absl/strings/str_cat.h"
#include "mmuvisor/guest_abi.h"

namespace mmuvisor::vmm::stress {
namespace {

constexpr size_t kMismatchesKept = 32;
constexpr size_t kDigestsKept = size_t{1} << 16;  // per vCPU: 512 KiB at most

uint64_t At(absl::Span<const uint64_t> values, size_t i) {
  return i < values.size() ? values[i] : 0;
}

}  // namespace

GuestReports::GuestReports(uint32_t vcpus) {
  MutexLock lock(&mu_);
  vcpus_.resize(vcpus);
}

void GuestReports::OnReport(uint32_t vcpu, uint64_t kind, absl::Span<const uint64_t> values) {
  // values = ucall args[1..5] (guest_abi.h, REPORT kinds).
  MutexLock lock(&mu_);
  switch (kind) {
    case MMV_REPORT_PROGRESS: {
      if (vcpu >= vcpus_.size()) return;
      PerVcpu& v = vcpus_[vcpu];
      const uint64_t verified = At(values, 1);
      if (verified > v.verified) {
        verified_.fetch_add(verified - v.verified, std::memory_order_relaxed);
      }
      v.rounds = At(values, 0);
      v.verified = verified;
      // Bounded: a guest that reports progress without end cannot grow the VMM's memory
      // (found by tests/fuzz); replay checks compare far fewer rounds than this.
      if (v.digests.size() < kDigestsKept) v.digests.push_back(At(values, 2));
      return;
    }
    case MMV_REPORT_MISMATCH:
      mismatches_.fetch_add(1, std::memory_order_relaxed);
      if (first_mismatches_.size() < kMismatchesKept) {
        first_mismatches_.push_back(Mismatch{At(values, 0), At(values, 1), At(values, 2),
                                             At(values, 3), vcpu,
                                             static_cast<uint32_t>(At(values, 4))});
      }
      return;
    case MMV_REPORT_MISMATCH_SUMMARY:
      mismatches_.fetch_add(At(values, 0), std::memory_order_relaxed);
      return;
    case MMV_REPORT_DMA_ERROR:
      ++dma_errors_;
      return;
    case MMV_REPORT_DMA_HOSTILE: {
      hostile_reported_ = true;
      const uint64_t sent = At(values, 0), as_expected = At(values, 2), copy_ok = At(values, 3);
      if (as_expected != sent || copy_ok == 0) {
        hostile_problem_ = absl::StrCat("dmahostile: ", as_expected, " of ", sent,
                                        " malformed descriptors got the expected error; "
                                        "valid copy afterwards ",
                                        copy_ok != 0 ? "ok" : "FAILED");
      }
      return;
    }
    default:
      return;
  }
}

void GuestReports::OnBalloon(uint32_t /*vcpu*/, Gpa gpa, ByteSize len) {
  const absl::Status s = balloon_ ? balloon_(gpa.value, len.value) : absl::OkStatus();
  if (!s.ok()) {
    MutexLock lock(&mu_);
    ++balloon_errors_;
  }
}

uint64_t GuestReports::rounds_done() const {
  MutexLock lock(&mu_);
  uint64_t n = 0;
  for (const PerVcpu& v : vcpus_) n += v.rounds;
  return n;
}

bool GuestReports::AllReachedRound(uint64_t round) const {
  MutexLock lock(&mu_);
  for (const PerVcpu& v : vcpus_) {
    if (v.rounds < round) return false;
  }
  return true;
}

uint64_t GuestReports::guest_dma_errors() const {
  MutexLock lock(&mu_);
  return dma_errors_;
}

uint64_t GuestReports::balloon_errors() const {
  MutexLock lock(&mu_);
  return balloon_errors_;
}

std::vector<Mismatch> GuestReports::first_mismatches() const {
  MutexLock lock(&mu_);
  return first_mismatches_;
}

std::vector<std::vector<uint64_t>> GuestReports::digests() const {
  MutexLock lock(&mu_);
  std::vector<std::vector<uint64_t>> out;
  for (const PerVcpu& v : vcpus_) out.push_back(v.digests);
  return out;
}

std::string GuestReports::hostile_problem() const {
  MutexLock lock(&mu_);
  return hostile_problem_;
}

bool GuestReports::hostile_reported() const {
  MutexLock lock(&mu_);
  return hostile_reported_;
}

}  // namespace mmuvisor::vmm::stress
