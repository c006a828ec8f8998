#include "vmm/stress/stress_result.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "mmuvisor/guest_abi.h"
#include "vmm/stress/json_output.h"

namespace mmuvisor::vmm::stress {
namespace {

const char* MismatchSourceName(uint32_t source) {
  switch (source) {
    case MMV_MISMATCH_CPU: return "cpu";
    case MMV_MISMATCH_DMA_COPY: return "dma-copy";
    case MMV_MISMATCH_DMA_FILL: return "dma-fill";
    case MMV_MISMATCH_DMA_CHECKSUM: return "dma-checksum";
    case MMV_MISMATCH_SPARE: return "spare-slot";
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
  if (result.churn_failures > 0) {
    result.failures.push_back(absl::StrCat(result.churn_failures,
                                           " memslot change(s) of the churn failed, first: ",
                                           result.first_churn_failure));
  }
  if (result.host_op_failures > 0) {
    result.failures.push_back(absl::StrCat(result.host_op_failures,
                                           " host operation(s) failed, first: ",
                                           result.first_host_op_failure));
  }
  if (result.reclaim_errors > 0) {
    result.failures.push_back(absl::StrCat(
        "reclaim driver: ", result.reclaim_errors, " pass(es) failed",
        result.last_reclaim_error.empty() ? "" : absl::StrCat(", last: ", result.last_reclaim_error)));
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
                  " host ops, ", r.host_op_failures, " failed, ", r.host_op_skips,
                  " OOM reaps skipped; ", r.reclaim_errors, " reclaim errors), ", r.eagain,
                  " EAGAIN, ", r.pairing_violations, " pairing violations\n");
  absl::StrAppend(&out, "  mmu        ", r.faults, " faults, ", r.fault_retries, " retries, ",
                  r.fault_timeouts, " timeouts; fault latency p50 ",
                  r.fault_latency.p50_ns / 1000, "us p99 ", r.fault_latency.p99_ns / 1000,
                  "us max ", r.fault_latency.max_ns / 1000, "us\n");
  absl::StrAppend(&out, "  paging     ", r.swap_outs, " swap-outs, ", r.swap_ins,
                  " swap-ins over ", r.memslots, " memslot(s); dirty log: ", r.dirty_log);
  if (r.dirty_log == "ring") {
    absl::StrAppend(&out, " (", r.dirty_ring_entries, " entries harvested, ",
                    r.dirty_ring_full_exits, " ring-full exits)");
  }
  absl::StrAppend(&out, "\n");
  if (r.aliases > 0 || r.churn_adds + r.churn_moves + r.churn_deletes + r.churn_failures > 0) {
    absl::StrAppend(&out, "  memslots   ", r.aliases, " alias(es), ", r.alias_zaps,
                    " alias entries zapped; churn ", r.churn_adds, " adds, ", r.churn_moves,
                    " moves, ", r.churn_deletes, " deletes, ", r.churn_failures, " failed, ",
                    r.absent_slot_accesses, " guest accesses to an absent slot\n");
  }
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
  JsonDoc json;
  json["verdict"] = r.pass ? "PASS" : "FAIL";
  json["failures"] = r.failures;
  json["seed"] = r.seed;
  json["mode"] = r.mode;
  json["policy"] = r.policy;
  json["dma_path"] = r.dma_path;
  json["duration_s"] = ThreeDecimals(r.duration_s);
  json["bound_s"] = ThreeDecimals(r.bound_s);
  json["stopped_by_deadline"] = r.stopped_by_deadline;
  json["deadline_notes"] = r.deadline_notes;
  json["checks_skipped"] = r.checks_skipped;
  json["guest_rounds"] = r.guest_rounds;
  json["guest_pages_verified"] = r.guest_pages_verified;
  json["guest_mismatches"] = r.guest_mismatches;
  json["pairing_violations"] = r.pairing_violations;
  json["invalidations"] = r.invalidations;
  json["host_ops"] = r.host_ops;
  json["host_op_failures"] = r.host_op_failures;
  json["first_host_op_failure"] = r.first_host_op_failure;
  json["host_op_skips"] = r.host_op_skips;
  json["reclaim_errors"] = r.reclaim_errors;
  json["last_reclaim_error"] = r.last_reclaim_error;
  json["eagain"] = r.eagain;
  json["faults"] = r.faults;
  json["fault_retries"] = r.fault_retries;
  json["fault_timeouts"] = r.fault_timeouts;
  json["swap_ins"] = r.swap_ins;
  json["swap_outs"] = r.swap_outs;
  json["memslots"] = r.memslots;
  json["dirty_log"] = r.dirty_log;
  json["dirty_reason"] = r.dirty_reason;
  json["dirty_ring_entries"] = r.dirty_ring_entries;
  json["dirty_ring_full_exits"] = r.dirty_ring_full_exits;
  json["aliases"] = r.aliases;
  json["alias_zaps"] = r.alias_zaps;
  json["churn_adds"] = r.churn_adds;
  json["churn_moves"] = r.churn_moves;
  json["churn_deletes"] = r.churn_deletes;
  json["churn_failures"] = r.churn_failures;
  json["first_churn_failure"] = r.first_churn_failure;
  json["absent_slot_accesses"] = r.absent_slot_accesses;
  json["dma_ops"] = r.dma_ops;
  json["dma_errors"] = r.dma_errors;
  json["dma_errors_unrequested"] = r.dma_errors_unrequested;
  json["dma_retries"] = r.dma_retries;
  json["in_progress_final"] = InProgressTotal(r);
  JsonDoc& counts = json["in_progress_counts"] = JsonDoc::object();
  for (const InProgressCount& c : r.in_progress_final) counts[c.name] = c.value;
  const auto us = [](uint64_t ns) { return ThreeDecimals(static_cast<double>(ns) / 1000.0); };
  json["fault_latency_us"] = {{"count", r.fault_latency.count},
                              {"p50", us(r.fault_latency.p50_ns)},
                              {"p90", us(r.fault_latency.p90_ns)},
                              {"p99", us(r.fault_latency.p99_ns)},
                              {"max", us(r.fault_latency.max_ns)}};
  json["workload_ok"] = r.workload_ok;
  json["workload_problem"] = r.workload_problem;
  JsonDoc& mismatches = json["first_mismatches"] = JsonDoc::array();
  for (const Mismatch& m : r.first_mismatches) {
    mismatches.push_back({{"vcpu", m.vcpu},
                          {"round", m.round},
                          {"source", MismatchSourceName(m.source)},
                          {"gpa", HexString(m.gpa)},
                          {"expected", HexString(m.expected)},
                          {"found", HexString(m.found)}});
  }
  json["first_violation"] = r.first_violation;
  json["dma_warnings"] = r.dma_warnings;
  if (r.hostile.present) {
    const HostileSummary& h = r.hostile;
    json["hostile"] = {{"vcpu", h.vcpu},
                       {"records", h.records},
                       {"ucalls", h.ucalls},
                       {"port_outs", h.port_outs},
                       {"port_ins", h.port_ins},
                       {"dma_chains", h.dma_chains},
                       {"stores", h.stores},
                       {"balloons", h.balloons},
                       {"descriptors_checked", h.descriptors_checked},
                       {"sweeps", h.sweeps},
                       {"self_check_failures", h.self_check_failures},
                       {"announced_device_errors", h.announced_device_errors},
                       {"stray_reports", h.stray_reports},
                       {"terminal", h.terminal},
                       {"end", h.end},
                       {"replay", h.replay}};
  }
  return DumpJson(json);
}

}  // namespace mmuvisor::vmm::stress
