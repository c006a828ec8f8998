#include "vmm/stress/guest_reports.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "guests/hostile/hostile_shared.h"
#include "mmuvisor/guest_abi.h"
#include "vmm/dma/descriptor.h"

namespace mmuvisor::vmm::stress {
namespace {

constexpr size_t kMismatchesKept = 32;
constexpr size_t kDigestsKept = size_t{1} << 16;  // per vCPU: 512 KiB at most

uint64_t At(absl::Span<const uint64_t> values, size_t i) {
  return i < values.size() ? values[i] : 0;
}

const char* HostileCheckName(uint64_t check) {
  switch (check) {
    case HOSTILE_CHECK_STORE_READBACK: return "store read back at once";
    case HOSTILE_CHECK_STORE_KEPT: return "store read back at a later sweep";
    case HOSTILE_CHECK_BALLOON_ZERO: return "ballooned page reads zero";
    case HOSTILE_CHECK_PORT_ALL_ONES: return "port read (no device: all ones; ucall: 0)";
    case HOSTILE_CHECK_DMA_STATUS: return "DMA descriptor status";
    case HOSTILE_CHECK_DMA_DATA: return "DMA descriptor data";
    default: return "unknown check";
  }
}

}  // namespace

GuestReports::GuestReports(uint32_t vcpus) {
  MutexLock lock(&mu_);
  vcpus_.resize(vcpus);
  hostile_.verifier_done.resize(vcpus);
}

void GuestReports::set_hostile_vcpu(uint32_t vcpu) {
  MutexLock lock(&mu_);
  hostile_vcpu_ = vcpu;
}

void GuestReports::OnReport(uint32_t vcpu, uint64_t kind, absl::Span<const uint64_t> values) {
  // values = ucall args[1..5] (guest_abi.h, REPORT kinds).
  MutexLock lock(&mu_);
  if (hostile_vcpu_.has_value() && kind >= HOSTILE_REPORT_BASE && kind <= HOSTILE_REPORT_LAST) {
    OnHostileReport(vcpu, kind, values);
    return;
  }
  if (hostile_vcpu_ == vcpu) {  // a random record, not the workload's report
    ++hostile_.stray_reports;
    return;
  }
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
      // memstress: {descriptor gpa, status, op, round}; its chains are all valid, so
      // any status but OK is the device's failure.
      if (dma_errors_++ == 0) {
        const uint64_t status = At(values, 1), op = At(values, 2);
        first_dma_error_ = absl::StrCat(
            "vCPU ", vcpu, ": DMA descriptor gpa=0x", absl::Hex(At(values, 0)), " (",
            op > UINT32_MAX ? "unknown" : dma::DmaOpName(static_cast<uint32_t>(op)),
            ", round ", At(values, 3), ") ended with status ",
            status == MMV_DMA_STATUS_PENDING ? "pending: none by the guest's poll limit"
            : status > UINT32_MAX            ? absl::string_view("unknown")
                                             : dma::DmaStatusName(static_cast<uint32_t>(status)),
            " (", status, ")");
      }
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

void GuestReports::OnHostileReport(uint32_t vcpu, uint64_t kind,
                                   absl::Span<const uint64_t> values) {
  HostileCounts& h = hostile_;
  if (kind == HOSTILE_REPORT_VERIFIER_DONE) {
    if (vcpu < h.verifier_done.size() && hostile_vcpu_ != vcpu) {
      h.verifier_done[vcpu] = At(values, 0);
    }
    return;
  }
  if (hostile_vcpu_ != vcpu) {  // only the hostile vCPU sends the rest
    ++h.stray_reports;
    return;
  }
  switch (kind) {
    case HOSTILE_REPORT_COUNTS:
      h.records = At(values, 0);
      h.ucalls = At(values, 1);
      h.port_outs = At(values, 2);
      h.port_ins = At(values, 3);
      h.dma_chains = At(values, 4);
      return;
    case HOSTILE_REPORT_COUNTS2:
      h.stores = At(values, 0);
      h.balloons = At(values, 1);
      h.descriptors_checked = At(values, 2);
      h.sweeps = At(values, 3);
      h.self_check_failures = std::max(h.self_check_failures, At(values, 4));
      return;
    case HOSTILE_REPORT_ANNOUNCE:
      h.announced_device_errors += At(values, 0);
      return;
    case HOSTILE_REPORT_CHECK_FAILED:
      h.self_check_failures = std::max<uint64_t>(h.self_check_failures,
                                                 h.check_failures.size() + 1);
      if (h.check_failures.size() < HOSTILE_CHECKS_REPORTED) {
        h.check_failures.push_back(absl::StrFormat(
            "record %u: %s: at 0x%x expected 0x%x found 0x%x", At(values, 0),
            HostileCheckName(At(values, 1)), At(values, 2), At(values, 3), At(values, 4)));
      }
      return;
    case HOSTILE_REPORT_TERMINAL:
      h.terminal_reached = true;
      h.terminal_record = At(values, 0);
      h.terminal = At(values, 1);
      return;
    default:
      ++h.stray_reports;
      return;
  }
}

GuestReports::HostileCounts GuestReports::hostile_counts() const {
  MutexLock lock(&mu_);
  return hostile_;
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

std::string GuestReports::ReportedProblems() const {
  MutexLock lock(&mu_);
  std::string out;
  if (dma_errors_ != 0) {
    absl::StrAppend(&out, dma_errors_, " DMA chain(s) failed as the guest saw them (first: ",
                    first_dma_error_, ")");
  }
  if (balloon_errors_ != 0) {
    absl::StrAppend(&out, out.empty() ? "" : "; ", balloon_errors_,
                    " balloon discard(s) failed");
  }
  return out;
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
