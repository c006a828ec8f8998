#include "vmm/stress/hostile_run.h"

#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/match.h"
#include "vmm/vcpu/exit_handler.h"

namespace mmuvisor::vmm::stress {
namespace {

struct TerminalInfo {
  const char* name;
  const char* expected;  // in DescribeVcpuEnd's line
};

// Indexed by enum hostile_terminal. The expected texts are the VMM's own wording
// (vmm/devices/ucall.cc, vmm/machine/exception_stubs.cc).
constexpr TerminalInfo kTerminals[HOSTILE_T_COUNT] = {
    {"return (DONE 0)", "DONE 0"},
    {"ucall with a bad magic", "bad magic"},
    {"ucall with an unknown command", "unknown command"},
    {"ucall block address not 8-byte aligned", "not 8-byte aligned"},
    {"ucall block address outside RAM", "ucall: block:"},
    {"1-byte OUT to the ucall port", "-byte OUT to port"},
    {"BALLOON of a range past the end of RAM", "ucall BALLOON range"},
    {"load outside RAM (#PF)", "vector 14"},
    {"load from page 0 (#PF)", "vector 14"},
    {"load from a non-canonical address (#GP)", "vector 13"},
    {"ud2 (#UD)", "vector 6"},
    {"hlt at CPL3 (#GP)", "vector 13"},
    {"OUT to the exception stubs' port", "guest exception"},
};

const char* OpName(uint32_t op) {
  switch (op) {
    case HOSTILE_OP_UCALL: return "ucall";
    case HOSTILE_OP_PORT_OUT: return "out";
    case HOSTILE_OP_PORT_IN: return "in";
    case HOSTILE_OP_DMA: return "dma";
    case HOSTILE_OP_DOORBELL: return "doorbell";
    case HOSTILE_OP_STORE: return "store";
    case HOSTILE_OP_BALLOON: return "balloon";
    default: return "?";
  }
}

std::string UcallLine(const hostile_record& r) {
  switch (r.variant) {
    case HOSTILE_U_PRINT: return absl::StrFormat("PRINT of %u text bytes (seed %#x)", r.a, r.b);
    case HOSTILE_U_SYNC: return absl::StrFormat("SYNC stage %#x (seed %#x)", r.a, r.b);
    case HOSTILE_U_REPORT: return absl::StrFormat("REPORT kind %#x (seed %#x)", r.a, r.b);
    default: return absl::StrFormat("PRINT through a block at %#x", r.a);
  }
}

}  // namespace

std::string HostileTerminalName(uint64_t terminal) {
  return terminal < HOSTILE_T_COUNT ? kTerminals[terminal].name : "?";
}

std::string HostileTerminalExpected(uint64_t terminal) {
  return terminal < HOSTILE_T_COUNT ? kTerminals[terminal].expected : "?";
}

std::string HostileRecordLine(uint64_t index, const hostile_record& r) {
  std::string what;
  switch (r.op) {
    case HOSTILE_OP_UCALL: what = UcallLine(r); break;
    case HOSTILE_OP_PORT_OUT:
      what = r.variant == HOSTILE_P_STRING
                 ? absl::StrFormat("rep outsb of %u bytes to port %#x", r.d, r.a)
                 : absl::StrFormat("%u-byte OUT %#x to port %#x", r.c, r.b, r.a);
      break;
    case HOSTILE_OP_PORT_IN:
      what = r.variant == HOSTILE_P_STRING
                 ? absl::StrFormat("rep insb of %u bytes from port %#x", r.d, r.a)
                 : absl::StrFormat("%u-byte IN from port %#x", r.c, r.a);
      break;
    case HOSTILE_OP_DMA:
      what = r.variant == HOSTILE_DMA_SELF_LOOP
                 ? absl::StrFormat("a descriptor linked to itself (seed %#x)", r.b)
                 : absl::StrFormat("a chain of %u descriptors (seed %#x)", r.a, r.b);
      break;
    case HOSTILE_OP_DOORBELL:
      what = absl::StrFormat("%u-byte doorbell %#x at port offset %u", r.c, r.a, r.b);
      break;
    case HOSTILE_OP_STORE:
      what = r.c == 64 ? absl::StrFormat("rep stosq of 64 words %#x at %#x", r.b, r.a)
                       : absl::StrFormat("%u-byte store %#x at %#x", r.c, r.b, r.a);
      break;
    case HOSTILE_OP_BALLOON: what = absl::StrFormat("BALLOON [%#x, +%#x)", r.a, r.b); break;
    default: what = "?";
  }
  return absl::StrCat(index, " ", OpName(r.op), " ", what);
}

std::string HostileRecordLog(uint64_t seed, const hostile_arena& arena, uint64_t first,
                             uint64_t count) {
  std::string out;
  for (uint64_t i = first; i < first + count; ++i) {
    hostile_record r;
    hostile_record_at(seed, &arena, i, &r);
    absl::StrAppend(&out, HostileRecordLine(i, r), "\n");
  }
  absl::StrAppend(&out, "terminal ", HostileTerminalName(hostile_terminal_of(seed)), "\n");
  return out;
}

std::string DescribeVcpuEnd(const VcpuReport& v) {
  if (v.done_code.has_value()) return absl::StrCat("DONE ", *v.done_code);
  if (!v.protocol_error.empty()) return absl::StrCat("malformed ucall: ", v.protocol_error);
  if (v.assertion.has_value()) return absl::StrCat("assertion: ", v.assertion->ToString());
  std::string line(StopKindName(v.stop.kind));
  if (!v.stop.detail.empty()) absl::StrAppend(&line, ": ", v.stop.detail);
  if (!v.stop.error.ok()) absl::StrAppend(&line, ": ", v.stop.error.message());
  return line;
}

std::string HostileRunProblem(const RunResult& run, uint32_t hostile_vcpu,
                              const GuestReports::HostileCounts& counts,
                              uint64_t expected_terminal) {
  std::vector<std::string> problems;
  if (run.verdict == Verdict::kHostError) {
    problems.push_back(absl::StrCat("the VMM failed: ", run.summary));
  }
  const bool host_stop = run.host_stop.has_value();
  for (const VcpuReport& v : run.vcpus) {
    const bool kicked = v.stop.kind == StopKind::kKicked && !v.done_code.has_value() &&
                        v.protocol_error.empty() && !v.assertion.has_value();
    if (v.index == hostile_vcpu) {
      if (kicked && host_stop) continue;  // stopped before its terminal record
      const std::string end = DescribeVcpuEnd(v);
      const std::string want = HostileTerminalExpected(expected_terminal);
      if (!counts.terminal_reached) {
        problems.push_back(absl::StrCat("hostile vCPU ", v.index,
                                        " ended before its terminal record: ", end));
      } else if (!absl::StrContains(end, want)) {
        problems.push_back(absl::StrCat(
            "hostile vCPU ", v.index, " ended '", end, "', but its terminal record (",
            HostileTerminalName(expected_terminal), ") must end it with '", want, "'"));
      }
      continue;
    }
    if (v.done_code == 0u) continue;
    const std::optional<uint64_t> finished =
        v.index < counts.verifier_done.size() ? counts.verifier_done[v.index] : std::nullopt;
    if (kicked && (host_stop || finished == 0u)) continue;
    problems.push_back(absl::StrCat("verifying vCPU ", v.index, " ended ", DescribeVcpuEnd(v),
                                    finished.has_value()
                                        ? absl::StrCat(" (memstress returned ", *finished, ")")
                                        : ""));
  }
  if (counts.self_check_failures > 0) {
    problems.push_back(absl::StrCat(
        "hostile vCPU's self-checks failed ", counts.self_check_failures, " time(s): ",
        absl::StrJoin(counts.check_failures, "; ")));
  }
  return absl::StrJoin(problems, "; ");
}

void AddHostileSummary(const StressOptions& options, uint64_t mem_bytes,
                       const hostile_arena& arena, const RunResult& run,
                       const GuestReports::HostileCounts& counts, StressResult& result,
                       std::string& problem) {
  const uint64_t terminal = hostile_terminal_of(options.seed);
  const std::string judged = HostileRunProblem(run, HOSTILE_VCPU, counts, terminal);
  if (!judged.empty()) problem = problem.empty() ? judged : absl::StrCat(problem, "; ", judged);
  HostileSummary& h = result.hostile;
  h.present = true;
  h.vcpu = HOSTILE_VCPU;
  h.records = counts.records;
  h.ucalls = counts.ucalls;
  h.port_outs = counts.port_outs;
  h.port_ins = counts.port_ins;
  h.dma_chains = counts.dma_chains;
  h.stores = counts.stores;
  h.balloons = counts.balloons;
  h.descriptors_checked = counts.descriptors_checked;
  h.sweeps = counts.sweeps;
  h.self_check_failures = counts.self_check_failures;
  h.announced_device_errors = counts.announced_device_errors;
  h.stray_reports = counts.stray_reports;
  h.terminal = HostileTerminalName(terminal);
  for (const VcpuReport& v : run.vcpus) {
    if (v.index == HOSTILE_VCPU) h.end = DescribeVcpuEnd(v);
  }
  h.replay = absl::StrCat("mmuvisor stress --guest hostile --seed ", options.seed, " --vcpus ",
                          options.vcpus, " --mem ", mem_bytes,
                          " --hostile-log FILE  (records 0..", counts.records,
                          " of this arena: [0x", absl::Hex(arena.start), ", 0x",
                          absl::Hex(arena.end), "))");
}

std::string HostileLogText(uint64_t seed, const hostile_arena& arena, uint64_t records) {
  return absl::StrCat(absl::StrFormat("# mmuvisor stress --guest hostile --seed %u: vCPU %u's "
                                      "records, arena [%#x, %#x)\n",
                                      seed, HOSTILE_VCPU, arena.start, arena.end),
                      HostileRecordLog(seed, arena, 0, records));
}

}  // namespace mmuvisor::vmm::stress
