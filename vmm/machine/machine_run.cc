// Machine: Run, stopping, and the vCPU-thread callbacks (ucall, vCPU stops).
#include <cassert>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "notifier/base/status_macros.h"
#include "vmm/machine/exception_stubs.h"
#include "vmm/machine/machine.h"

namespace mmuvisor::vmm {

absl::Status Machine::StartReclaimDriver(const ReclaimDriverOptions& options) {
  if (space_->torn_down()) return absl::FailedPreconditionError("StartReclaimDriver: torn down");
  // Before the driver is installed: with bad options no driver is left behind.
  MMUVISOR_RETURN_IF_ERROR(ValidateReclaimDriverOptions(options));
  ReclaimDriver* driver = nullptr;
  {
    MutexLock lock(&mu_);
    if (reclaimd_ != nullptr) {
      return absl::FailedPreconditionError("StartReclaimDriver: already running");
    }
    reclaimd_ = std::make_unique<ReclaimDriver>(*space_, options);
    driver = reclaimd_.get();
  }
  return driver->Start();
}

ReclaimDriver* Machine::reclaim_driver() {
  MutexLock lock(&mu_);
  return reclaimd_.get();
}

void Machine::StopReclaimDriver() {
  // Not under mu_ while joining: a window of the driver's may wait for a page-server
  // handler, whose failure callback takes mu_.
  if (ReclaimDriver* driver = reclaim_driver(); driver != nullptr) driver->Stop();
}

RunResult Machine::Run() {
  {
    MutexLock lock(&mu_);
    assert(!ran_ && "Machine::Run called twice");
    ran_ = true;
  }
  RunResult result;
  result.timeout = config_.timeout;
  if (config_.reclaim.has_value()) {
    if (absl::Status s = StartReclaimDriver(*config_.reclaim); !s.ok()) {
      for (const auto& r : runners_) r->Kick();  // nothing runs: report the error
      MutexLock lock(&mu_);
      for (VcpuReport& report : reports_) {
        report.stop = VcpuStop{StopKind::kHostError, 0, std::string(s.message()), {}, s};
      }
    }
  }
  {
    // Under join_mu_: host().Teardown() on another thread joins the runners (stop_guests)
    // and must not read a runner's thread handle while Start writes it. A Teardown that
    // comes first has kicked them already, so they stop before entering the guest.
    MutexLock lock(&join_mu_);
    for (auto& r : runners_) r->Start();
  }
  // The timeout, kept by this thread: it waits for every vCPU to stop (OnVcpuStop counts
  // them) and kicks them all if the timeout passes first. (A watchdog thread did this
  // before; creating, waking and joining it cost ~50 us of every `mmuvisor run`.)
  bool timed_out = false;
  {
    MutexLock lock(&mu_);
    timed_out = !mu_.AwaitFor(stopped_cv_, config_.timeout, [this]() ABSL_NO_THREAD_SAFETY_ANALYSIS {
      return stopped_ == runners_.size();
    });
  }
  if (timed_out) KickAll();
  JoinAll();
  console_.Flush();

  result.exit = absl::Now() - created_;
  {
    MutexLock lock(&mu_);
    result.vcpus = reports_;
    result.first_ucall = first_ucall_;
    result.host_stop = host_stop_;
    result.page_server_error = page_server_error_;
  }
  result.guest_fault_retries = fault_retries_.load(std::memory_order_relaxed);
  result.protected_write_events = protected_writes_.load(std::memory_order_relaxed);
  result.kvm_flavour = DetectKvmHost().flavour;  // a few stat()s, after the vCPUs stopped
  DecideVerdict(result, timed_out);
  return result;
}

void Machine::RequestStop(absl::string_view reason) {
  {
    MutexLock lock(&mu_);
    if (!host_stop_.has_value()) host_stop_ = std::string(reason);
  }
  KickAll();
}

void Machine::OnPageServerFailure(const absl::Status& status) {
  {
    MutexLock lock(&mu_);
    if (page_server_error_.ok()) page_server_error_ = status;
  }
  KickAll();  // a vCPU blocked on a poisoned page gets its fault; the rest stop
}

void Machine::OnVcpuStop(uint32_t vcpu, const VcpuStop& stop_in) {
  VcpuStop stop = stop_in;
  if (stop.guest_exception && stop.registers) {
    // The faulting state is the frame the stub left on the ring-0 stack.
    absl::StatusOr<ExceptionFrame> frame = ReadExceptionFrame(*space_, stop.registers->rsp);
    if (frame.ok()) {
      stop.detail = frame->Describe();
      stop.registers->rip = frame->rip;
      stop.registers->rsp = frame->rsp;
      stop.registers->rflags = frame->rflags;
      stop.registers->cs_selector = static_cast<uint16_t>(frame->cs);
      stop.registers->cs_dpl = static_cast<uint8_t>(frame->cs & 3);
    } else {
      absl::StrAppend(&stop.detail, " (frame unreadable: ", frame.status().message(), ")");
    }
  }
  if (stop.kind == StopKind::kCrashed && stop.registers) {
    // Where the guest was: its own code, or somewhere it jumped to.
    const uint64_t rip = stop.registers->rip;
    const LoadedImage& image = plan_.image;
    absl::StrAppend(&stop.detail,
                    absl::StrFormat(", rip %s the image [%#x, %#x)",
                                    rip >= image.lowest_gpa && rip < image.highest_gpa
                                        ? "inside"
                                        : "outside",
                                    image.lowest_gpa, image.highest_gpa));
  }
  bool broken = stop.kind == StopKind::kCrashed || stop.kind == StopKind::kHostError;
  {
    MutexLock lock(&mu_);
    VcpuReport& report = reports_[vcpu];
    // A kick after the Run's start-up error keeps that error.
    if (!(stop.kind == StopKind::kKicked && report.stop.kind == StopKind::kHostError &&
          !report.stop.error.ok())) {
      report.stop = stop;
    }
    broken = broken || report.assertion.has_value() || !report.protocol_error.empty();
    ++stopped_;
  }
  stopped_cv_.notify_all();
  if (broken) KickAll();
}

void Machine::MarkUcall() {
  MutexLock lock(&mu_);
  if (!first_ucall_) first_ucall_ = absl::Now() - created_;
}

void Machine::OnPrint(uint32_t vcpu, absl::string_view text) {
  MarkUcall();
  console_.PrintLine(vcpu, text);
}

void Machine::OnSerial(uint32_t vcpu, absl::string_view bytes) {
  MarkUcall();
  serial_.WriteBytes(vcpu, bytes);
}

void Machine::OnSync(uint32_t vcpu, uint64_t stage, absl::Span<const uint64_t> values) {
  MarkUcall();
  if (config_.observer != nullptr) config_.observer->OnSync(vcpu, stage, values);
}

void Machine::OnAssert(uint32_t vcpu, const GuestAssertion& assertion) {
  MarkUcall();
  MutexLock lock(&mu_);
  reports_[vcpu].assertion = assertion;
}

void Machine::OnDone(uint32_t vcpu, uint64_t exit_code) {
  MarkUcall();
  MutexLock lock(&mu_);
  reports_[vcpu].done_code = exit_code;
}

void Machine::OnBalloon(uint32_t vcpu, Gpa gpa, ByteSize len) {
  MarkUcall();
  if (config_.observer != nullptr) config_.observer->OnBalloon(vcpu, gpa, len);
}

void Machine::OnReport(uint32_t vcpu, uint64_t kind, absl::Span<const uint64_t> values) {
  MarkUcall();
  if (config_.observer != nullptr) config_.observer->OnReport(vcpu, kind, values);
}

void Machine::OnProtocolError(uint32_t vcpu, absl::string_view what) {
  MutexLock lock(&mu_);
  reports_[vcpu].protocol_error = std::string(what);
}

}  // namespace mmuvisor::vmm
