// The hostile guest's side of a KVM stress run (`mmuvisor stress --guest hostile`): its
// record log, the outcome its terminal record must have, and the judgement of how every
// vCPU ended. The records themselves come from guests/hostile/hostile_shared.h, the same
// pure functions the guest runs, so the VMM prints exactly what the guest did for a seed.
//
// The judgement (HostileRunProblem) is "" when
//   - the VMM itself did not fail (no host error, no page-server failure);
//   - every verifying vCPU ended with DONE 0, or reported memstress's exit code 0
//     (HOSTILE_REPORT_VERIFIER_DONE) before the hostile vCPU's terminal record stopped it,
//     or was stopped by the host (Machine::RequestStop at the run's deadline);
//   - the hostile vCPU ended exactly as its terminal record says (a malformed ucall named
//     as such, an exception with its vector, DONE 0), or was stopped by the host before
//     it got there;
//   - the hostile vCPU's own self-checks all held.
// Its other misbehaviour (device errors it announced, stray reports) is not a failure.
// Pure functions; any thread.
#ifndef MMUVISOR_VMM_STRESS_HOSTILE_RUN_H_
#define MMUVISOR_VMM_STRESS_HOSTILE_RUN_H_

#include <cstdint>
#include <string>

#include "guests/hostile/hostile_shared.h"
#include "vmm/machine/run_result.h"
#include "vmm/stress/guest_reports.h"
#include "vmm/stress/stress_options.h"
#include "vmm/stress/stress_result.h"

namespace mmuvisor::vmm::stress {

// "ucall with a bad magic", "load outside RAM (#PF)", ... ("?" for an unknown value).
std::string HostileTerminalName(uint64_t terminal);
// What the VMM's account of the hostile vCPU's end must contain for `terminal`.
std::string HostileTerminalExpected(uint64_t terminal);

// One record, one line: "17 store 8 bytes 0x1234 at 0x1c3008".
std::string HostileRecordLine(uint64_t index, const hostile_record& record);
// Records [first, first + count) of `seed`, one line each, then the terminal record.
std::string HostileRecordLog(uint64_t seed, const hostile_arena& arena, uint64_t first,
                             uint64_t count);

// How a vCPU ended, one line: "DONE 0", "malformed ucall: ...", "crashed: guest
// exception: ...", "kicked", ...
std::string DescribeVcpuEnd(const VcpuReport& vcpu);

std::string HostileRunProblem(const RunResult& run, uint32_t hostile_vcpu,
                              const GuestReports::HostileCounts& counts,
                              uint64_t expected_terminal);

// The hostile vCPU's part of a run's result: `result.hostile` (its counts, terminal
// record, how it ended, the replay line) and the judgement (HostileRunProblem) appended to
// `problem`.
void AddHostileSummary(const StressOptions& options, uint64_t mem_bytes,
                       const hostile_arena& arena, const RunResult& run,
                       const GuestReports::HostileCounts& counts, StressResult& result,
                       std::string& problem);

// The record log (--hostile-log): a header line, records [0, records) of `seed`, one a
// line, then the terminal record.
std::string HostileLogText(uint64_t seed, const hostile_arena& arena, uint64_t records);

}  // namespace mmuvisor::vmm::stress

#endif  // MMUVISOR_VMM_STRESS_HOSTILE_RUN_H_
