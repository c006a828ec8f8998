#include "vmm/stress/stress_result.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "mmuvisor/guest_abi.h"
#include "vmm/stress/json_writer.h"

namespace mmuvisor::vmm::stress {
namespace {

const char* MismatchSourceName(uint32_t source) {
  switch (source) {
    case MMV_MISMATCH_CPU: return "cpu";
    case MMV_MISMATCH_DMA_COPY: return "dma-copy";
    case MMV_MISMATCH_DMA_FILL: return "dma-fill";
    case MMV_MISMATCH_DMA_CHECKSUM: return "dma-checksum";
    default: return "unknown";
  }
}

std::string MismatchLine(const Mismatch& m) {
  return absl::StrFormat("vcpu %u round %u %s gpa=0x%x expected=0x%016x found=0x%016x", m.vcpu,
                         m.round, MismatchSourceName(m.source), m.gpa, m.expected, m.found);
}

}  // namespace

int64_t InProgressTotal(const StressResult& result) {
  int64_t total = 0;
  for (const InProgressCount& c : result.in_progress_final) total += c.value < 0 ? -c.value : c.value;
  return total;
}

void DecideVerdict(StressResult& result) {
  result.failures.clear();
  if (result.guest_mismatches > 0) {
    std::string caught;
    if (!result.first_mismatches.empty()) {
      const Mismatch& m = result.first_mismatches.front();
      caught = absl::StrFormat(", first caught by the %s check (vcpu %u round %u gpa=0x%x)",
                               MismatchSourceName(m.source), m.vcpu, m.round, m.gpa);
    }
    result.failures.push_back(absl::StrCat(result.guest_mismatches,
                                           " guest mismatch(es): stale or lost data", caught));
  }
  if (result.pairing_violations > 0) {
    result.failures.push_back(absl::StrCat(
        result.pairing_violations, " pairing violation(s)",
        result.first_violation.empty() ? "" : absl::StrCat(", first: ", result.first_violation)));
  }
  std::vector<std::string> stuck;
  for (const InProgressCount& c : result.in_progress_final) {
    if (c.value != 0) stuck.push_back(absl::StrCat(c.name, "=", c.value));
  }
  if (!stuck.empty()) {
    result.failures.push_back(
        absl::StrCat("in-progress count(s) not back at zero: ", absl::StrJoin(stuck, ", ")));
  }
  if (result.dma_errors_unrequested > 0) {
    result.failures.push_back(absl::StrCat(result.dma_errors_unrequested,
                                           " DMA error(s) the guest did not ask for"));
  }
  if (!result.workload_ok) {
    result.failures.push_back(absl::StrCat("workload failed: ", result.workload_problem));
  } else if (result.guest_pages_verified == 0) {
    result.failures.push_back(
        result.stopped_by_deadline
            ? "workload verified no page before the deadline (a vacuous run is not a pass): "
              "a round here takes longer than --duration; give it a longer --duration or "
              "--rounds"
            : "workload verified no page (a vacuous run is not a pass)");
  }
  result.pass = result.failures.empty();
}

std::string FormatReport(const StressResult& r) {
  std::string out;
  absl::StrAppend(&out, "verdict: ", r.pass ? "PASS" : "FAIL", "  (seed ", r.seed, ", ",
                  r.mode, ", policy ", r.policy, ", dma ", r.dma_path,
                  absl::StrFormat(", %.2fs)\n", r.duration_s));
  for (const std::string& f : r.failures) absl::StrAppend(&out, "  FAIL: ", f, "\n");
  if (!r.checks_skipped.empty()) {
    absl::StrAppend(&out, "  must-fail control, checks turned off: ",
                    absl::StrJoin(r.checks_skipped, "; "), "\n");
  }
  absl::StrAppend(&out, "  workload   ", r.guest_pages_verified, " pages verified in ",
                  r.guest_rounds, " rounds, ", r.guest_mismatches, " mismatches\n");
  absl::StrAppend(&out, "  notifier   ", r.invalidations, " invalidations (", r.host_ops,
                  " host ops), ", r.eagain, " EAGAIN, ", r.pairing_violations,
                  " pairing violations\n");
  absl::StrAppend(&out, "  mmu        ", r.faults, " faults, ", r.fault_retries, " retries, ",
                  r.fault_timeouts, " timeouts; fault latency p50 ",
                  r.fault_latency.p50_ns / 1000, "us p99 ", r.fault_latency.p99_ns / 1000,
                  "us max ", r.fault_latency.max_ns / 1000, "us\n");
  absl::StrAppend(&out, "  paging     ", r.swap_outs, " swap-outs, ", r.swap_ins,
                  " swap-ins\n");
  absl::StrAppend(&out, "  dma        ", r.dma_ops, " ops, ", r.dma_errors, " errors (",
                  r.dma_errors_unrequested, " unrequested), ", r.dma_retries,
                  " access retries\n");
  std::vector<std::string> counts;
  for (const InProgressCount& c : r.in_progress_final) {
    counts.push_back(absl::StrCat(c.name, "=", c.value));
  }
  absl::StrAppend(&out, "  in-progress at end: ",
                  counts.empty() ? "(none tracked)" : absl::StrJoin(counts, " "), "\n");
  if (r.bound_s > 0) {
    absl::StrAppend(&out, absl::StrFormat("  time       ended after %.2fs, bound %.2fs%s\n",
                                          r.duration_s, r.bound_s,
                                          r.stopped_by_deadline ? " (stopped by the deadline)" : ""));
  }
  for (const std::string& n : r.deadline_notes) absl::StrAppend(&out, "  deadline: ", n, "\n");
  for (const Mismatch& m : r.first_mismatches) {
    absl::StrAppend(&out, "  mismatch: ", MismatchLine(m), "\n");
  }
  for (const std::string& w : r.dma_warnings) absl::StrAppend(&out, "  dma warning: ", w, "\n");
  if (r.hostile.present) {
    const HostileSummary& h = r.hostile;
    absl::StrAppend(&out, "  hostile    vCPU ", h.vcpu, ": ", h.records, " records (", h.ucalls,
                    " ucalls, ", h.port_outs, " OUTs, ", h.port_ins, " INs, ", h.dma_chains,
                    " DMA chains, ", h.stores, " stores, ", h.balloons, " balloons), ",
                    h.descriptors_checked, " descriptors checked, ", h.sweeps, " sweeps, ",
                    h.self_check_failures, " self-check failures; ",
                    h.announced_device_errors, " device errors announced, ", h.stray_reports,
                    " stray reports\n");
    absl::StrAppend(&out, "  hostile    terminal: ", h.terminal, "; ended: ", h.end, "\n");
    absl::StrAppend(&out, "  replay:    ", h.replay, "\n");
  }
  return out;
}

std::string ReportToJson(const StressResult& r) {
  JsonWriter json;
  json.BeginObject();
  json.Key("verdict").String(r.pass ? "PASS" : "FAIL");
  json.Key("failures").BeginArray();
  for (const std::string& f : r.failures) json.String(f);
  json.EndArray();
  json.Key("seed").Uint(r.seed);
  json.Key("mode").String(r.mode);
  json.Key("policy").String(r.policy);
  json.Key("dma_path").String(r.dma_path);
  json.Key("duration_s").Double(r.duration_s);
  json.Key("bound_s").Double(r.bound_s);
  json.Key("stopped_by_deadline").Bool(r.stopped_by_deadline);
  json.Key("deadline_notes").BeginArray();
  for (const std::string& n : r.deadline_notes) json.String(n);
  json.EndArray();
  json.Key("checks_skipped").BeginArray();
  for (const std::string& c : r.checks_skipped) json.String(c);
  json.EndArray();
  json.Key("guest_rounds").Uint(r.guest_rounds);
  json.Key("guest_pages_verified").Uint(r.guest_pages_verified);
  json.Key("guest_mismatches").Uint(r.guest_mismatches);
  json.Key("pairing_violations").Uint(r.pairing_violations);
  json.Key("invalidations").Uint(r.invalidations);
  json.Key("host_ops").Uint(r.host_ops);
  json.Key("eagain").Uint(r.eagain);
  json.Key("faults").Uint(r.faults);
  json.Key("fault_retries").Uint(r.fault_retries);
  json.Key("fault_timeouts").Uint(r.fault_timeouts);
  json.Key("swap_ins").Uint(r.swap_ins);
  json.Key("swap_outs").Uint(r.swap_outs);
  json.Key("dma_ops").Uint(r.dma_ops);
  json.Key("dma_errors").Uint(r.dma_errors);
  json.Key("dma_errors_unrequested").Uint(r.dma_errors_unrequested);
  json.Key("dma_retries").Uint(r.dma_retries);
  json.Key("in_progress_final").Int(InProgressTotal(r));
  json.Key("in_progress_counts").BeginObject();
  for (const InProgressCount& c : r.in_progress_final) json.Key(c.name).Int(c.value);
  json.EndObject();
  json.Key("fault_latency_us").BeginObject();
  json.Key("count").Uint(r.fault_latency.count);
  json.Key("p50").Double(static_cast<double>(r.fault_latency.p50_ns) / 1000.0);
  json.Key("p90").Double(static_cast<double>(r.fault_latency.p90_ns) / 1000.0);
  json.Key("p99").Double(static_cast<double>(r.fault_latency.p99_ns) / 1000.0);
  json.Key("max").Double(static_cast<double>(r.fault_latency.max_ns) / 1000.0);
  json.EndObject();
  json.Key("workload_ok").Bool(r.workload_ok);
  json.Key("workload_problem").String(r.workload_problem);
  json.Key("first_mismatches").BeginArray();
  for (const Mismatch& m : r.first_mismatches) {
    json.BeginObject();
    json.Key("vcpu").Uint(m.vcpu);
    json.Key("round").Uint(m.round);
    json.Key("source").String(MismatchSourceName(m.source));
    json.Key("gpa").String(absl::StrCat("0x", absl::Hex(m.gpa)));
    json.Key("expected").String(absl::StrCat("0x", absl::Hex(m.expected)));
    json.Key("found").String(absl::StrCat("0x", absl::Hex(m.found)));
    json.EndObject();
  }
  json.EndArray();
  json.Key("first_violation").String(r.first_violation);
  json.Key("dma_warnings").BeginArray();
  for (const std::string& w : r.dma_warnings) json.String(w);
  json.EndArray();
  if (r.hostile.present) {
    const HostileSummary& h = r.hostile;
    json.Key("hostile").BeginObject();
    json.Key("vcpu").Uint(h.vcpu);
    json.Key("records").Uint(h.records);
    json.Key("ucalls").Uint(h.ucalls);
    json.Key("port_outs").Uint(h.port_outs);
    json.Key("port_ins").Uint(h.port_ins);
    json.Key("dma_chains").Uint(h.dma_chains);
    json.Key("stores").Uint(h.stores);
    json.Key("balloons").Uint(h.balloons);
    json.Key("descriptors_checked").Uint(h.descriptors_checked);
    json.Key("sweeps").Uint(h.sweeps);
    json.Key("self_check_failures").Uint(h.self_check_failures);
    json.Key("announced_device_errors").Uint(h.announced_device_errors);
    json.Key("stray_reports").Uint(h.stray_reports);
    json.Key("terminal").String(h.terminal);
    json.Key("end").String(h.end);
    json.Key("replay").String(h.replay);
    json.EndObject();
  }
  json.EndObject();
  return json.Take();
}

}  // namespace mmuvisor::vmm::stress
