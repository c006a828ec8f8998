// The hostile guest (issue 15, "Proof, not probability"): vCPU 0 runs a seeded program of
// hostile records (guests/hostile) while vCPU 1 runs memstress and verifies its own data,
// under the default host storm (reclaim, migrate, protect, OOM reap, balloon discards).
// Each seed must PASS — the VMM neither crashed nor hung, vCPU 1's data is intact, the
// hostile vCPU's terminal record was reported as exactly what it was — with every kind of
// record counted; the must-fail control (its stores aimed at vCPU 1) must FAIL by vCPU 1's
// check. The KVM tests skip with "needs /dev/kvm: ..." where it cannot be opened
// (tests/nested/run-kvm-tests runs them under nested SVM). No timing assertions: the
// run's own bound is checked by what ended it (stopped_by_deadline, bound_s), and ctest's
// TIMEOUT is the backstop for a hang.
#include <unistd.h>

#include <cstdio>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "guests/hostile/hostile_shared.h"
#include "support/cli_run.h"
#include "support/kvm_stress_run.h"
#include "support/read_file.h"
#include "vmm/stress/hostile_run.h"
#include "vmm/stress/stress_kvm.h"
#include "vmm/stress/stress_result.h"

namespace mmuvisor::vmm::stress {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

StressOptions Hostile(uint64_t seed) {
  StressOptions o;
  o.mode = StressMode::kKvm;
  o.mem_bytes = kKvmDefaultMemBytes;
  o.mem_given = true;
  o.guest = "hostile";
  o.seed = seed;
  // vCPU 1 must verify (round 2+) on any host, also nested on TCG: a round count ends the
  // run, and the hostile vCPU then runs at least HOSTILE_MIN_RECORDS_WITH_ROUNDS records.
  o.rounds = 3;
  o.progress = false;
  return o;
}

class HostileSeedTest : public ::testing::TestWithParam<uint64_t> {};

// Seeds 1, 2, 3, 5, 7 end with a #GP, a #PF outside RAM, an OUT to the exception port, a
// ucall with a bad magic and a plain return (HostileRecordLogTest pins that).
TEST_P(HostileSeedTest, PassesWithEveryKindOfRecordCounted) {
  const StressOptions o = Hostile(GetParam());
  RUN_KVM_OR_SKIP(out, o);
  const StressResult& r = out->result;
  const std::string report = FormatReport(r);
  std::printf("%s", report.c_str());  // the counters, in the nested runner's log too
  EXPECT_TRUE(r.pass) << report;
  EXPECT_GT(r.guest_pages_verified, 0u) << "vCPU 1 verified its data";
  EXPECT_EQ(r.guest_mismatches, 0u);
  const HostileSummary& h = r.hostile;
  ASSERT_TRUE(h.present);
  EXPECT_GE(h.records, HOSTILE_MIN_RECORDS_WITH_ROUNDS);
  for (const auto& [name, count] : std::vector<std::pair<const char*, uint64_t>>{
           {"ucalls", h.ucalls}, {"port OUTs", h.port_outs}, {"port INs", h.port_ins},
           {"DMA chains", h.dma_chains}, {"stores", h.stores}, {"balloons", h.balloons},
           {"descriptors checked", h.descriptors_checked}, {"sweeps", h.sweeps},
           {"announced device errors", h.announced_device_errors}}) {
    EXPECT_GT(count, 0u) << name;
  }
  EXPECT_EQ(h.self_check_failures, 0u);
  EXPECT_EQ(h.terminal, HostileTerminalName(hostile_terminal_of(o.seed)));
  EXPECT_THAT(h.end, HasSubstr(HostileTerminalExpected(hostile_terminal_of(o.seed))));
  // Its malformed descriptors are flagged and its bad doorbells announced: what remains
  // unrequested would be the device's own failure.
  EXPECT_GT(r.dma_errors, 0u);
  EXPECT_EQ(r.dma_errors_unrequested, 0u);
  EXPECT_FALSE(r.stopped_by_deadline) << "ended by its rounds";
}

// A --duration run ends by its bound (the stop word, then RequestStop at half the slack):
// whatever the hostile vCPU is doing then, the run stops. Here vCPU 1 verifies for the
// whole second beside the hostile vCPU (natively: hundreds of rounds); whenever it
// verified anything the verdict must be PASS. On a slow (nested) host it may not reach a
// verifying round in 1 s: that vacuous FAIL is the only failure allowed.
TEST_P(HostileSeedTest, DurationRunStopsByTheDeadline) {
  StressOptions o = Hostile(GetParam());
  o.rounds = 0;
  o.duration = absl::Seconds(1);
  RUN_KVM_OR_SKIP(out, o);
  const StressResult& r = out->result;
  const std::string report = FormatReport(r);
  std::printf("%s", report.c_str());
  EXPECT_TRUE(r.stopped_by_deadline) << report;
  EXPECT_EQ(r.bound_s, 2.0);
  EXPECT_TRUE(r.hostile.present);
  EXPECT_GT(r.hostile.records, 0u);
  if (r.guest_pages_verified > 0) {
    EXPECT_TRUE(r.pass) << report;
  } else {
    for (const std::string& f : r.failures) {
      EXPECT_THAT(f, StartsWith("workload verified no page")) << report;
    }
  }
}

// The must-fail control: with its stores aimed at vCPU 1's work pages, vCPU 1's memstress
// catches them and the verdict FAILs naming that check and vCPU.
INSTANTIATE_TEST_SUITE_P(Seeds, HostileSeedTest, ::testing::Values(1, 2, 3, 5, 7));

TEST(HostileGuestTest, StoresIntoTheVerifierFailTheRun) {
  StressOptions o = Hostile(1);
  o.hostile_hits_verifier_for_testing = true;
  RUN_KVM_OR_SKIP(out, o);
  const StressResult& r = out->result;
  EXPECT_FALSE(r.pass);
  EXPECT_GT(r.guest_mismatches, 0u);
  ASSERT_FALSE(r.failures.empty());
  // vCPU 1's own checks catch it: the cpu check of its pages, or (when a store lands
  // between its write and its DMA of the same pages; seen under nested SVM) the DMA
  // checksum or copy check.
  EXPECT_THAT(r.failures.front(), HasSubstr("guest mismatch(es): stale or lost data, first "
                                            "caught by the"));
  EXPECT_THAT(r.failures.front(), HasSubstr("check (vcpu 1 "));
  EXPECT_THAT(r.checks_skipped, ::testing::Contains(HasSubstr("vCPU 1's work pages")));
}

TEST(HostileGuestTest, CliRunsItAndRefusesWhatCannotRun) {
  if (absl::Status kvm = ProbeKvm("/dev/kvm"); !kvm.ok()) GTEST_SKIP() << kvm.message();
  const std::string log = ::testing::TempDir() + "/hostile_cli.log";
  const std::string json = ::testing::TempDir() + "/hostile_cli.json";
  cli::CliRun run = cli::RunCli({"stress", "--guest", "hostile", "--seed", "5", "--rounds",
                                 "3", "--no-progress", "--hostile-log", log, "--json", json});
  EXPECT_EQ(run.code, 0) << run.out << run.err;
  EXPECT_THAT(run.out, HasSubstr("verdict: PASS"));
  EXPECT_THAT(run.out, HasSubstr("hostile    vCPU 0: "));
  EXPECT_THAT(run.out, HasSubstr("replay:    mmuvisor stress --guest hostile --seed 5"));
  const std::string text = ::mmuvisor::testing::ReadFileOrEmpty(log);
  EXPECT_THAT(text, StartsWith("# mmuvisor stress --guest hostile --seed 5"));
  EXPECT_THAT(text, HasSubstr("\n0 "));
  EXPECT_THAT(text, HasSubstr("\nterminal ucall with a bad magic\n"));
  const std::string report = ::mmuvisor::testing::ReadFileOrEmpty(json);
  EXPECT_THAT(report, HasSubstr("\"hostile\":{\"vcpu\":0,\"records\":"));
  EXPECT_THAT(report, HasSubstr("\"terminal\":\"ucall with a bad magic\""));

  cli::CliRun unknown = cli::RunCli({"stress", "--guest", "nosuch"});
  EXPECT_EQ(unknown.code, 2);
  EXPECT_EQ(unknown.err, "mmuvisor stress: --guest 'nosuch': stress guests are "
                         "memstress (the default) and hostile\n");
  cli::CliRun one = cli::RunCli({"stress", "--guest", "hostile", "--vcpus", "1"});
  EXPECT_EQ(one.code, 2);
  EXPECT_THAT(one.err, HasSubstr("--guest hostile needs at least 2 vCPUs"));
}

// A record log that cannot be written after the run (a full device) costs neither the
// verdict nor the other report files: the report is printed, then the error; a PASS then
// exits 5, and the JSON report is written.
TEST(HostileGuestTest, ARecordLogThatCannotBeWrittenKeepsTheVerdictAndTheReport) {
  if (absl::Status kvm = ProbeKvm("/dev/kvm"); !kvm.ok()) GTEST_SKIP() << kvm.message();
  if (access("/dev/full", W_OK) != 0) GTEST_SKIP() << "needs /dev/full";
  const std::string json = ::testing::TempDir() + "/hostile_full_log.json";
  std::remove(json.c_str());
  cli::CliRun run = cli::RunCli({"stress", "--guest", "hostile", "--seed", "5", "--rounds",
                                 "3", "--no-progress", "--hostile-log", "/dev/full", "--json",
                                 json});
  EXPECT_EQ(run.code, 5) << run.out << run.err;
  EXPECT_THAT(run.out, HasSubstr("verdict: PASS"));
  EXPECT_THAT(run.err, HasSubstr("writing /dev/full failed"));
  EXPECT_THAT(::mmuvisor::testing::ReadFileOrEmpty(json), HasSubstr("\"verdict\":\"PASS\""));
  std::remove(json.c_str());
}

// No KVM needed: the program is a pure function of the seed, and never aims a store,
// balloon or well-formed descriptor outside the hostile vCPU's arena (so any damage to
// vCPU 1's data is the VMM's doing, not the program's).
TEST(HostileRecordLogTest, SameSeedSameProgramInsideTheArena) {
  hostile_arena arena{};
  // 2 MiB, 2 vCPUs, the image's end and stacks as a KVM run of the default size has them.
  ASSERT_EQ(hostile_arena_of(2ull << 20, 0x109000, 0x1e0000, 2, 0, &arena), 0);
  EXPECT_EQ(HostileRecordLog(1, arena, 0, 500), HostileRecordLog(1, arena, 0, 500));
  EXPECT_NE(HostileRecordLog(1, arena, 0, 500), HostileRecordLog(2, arena, 0, 500));
  const uint64_t store_end = arena.start + arena.store_pages * HOSTILE_PAGE;
  std::vector<uint64_t> ops(HOSTILE_OP_COUNT, 0);
  for (uint64_t seed = 1; seed <= 8; ++seed) {
    for (uint64_t i = 0; i < 20000; ++i) {
      hostile_record r;
      hostile_record_at(seed, &arena, i, &r);
      ASSERT_LT(r.op, HOSTILE_OP_COUNT);
      ++ops[r.op];
      if (r.op == HOSTILE_OP_STORE) {
        const uint64_t span = r.c == 64 ? 512 : r.c;
        ASSERT_GE(r.a, arena.start) << HostileRecordLine(i, r);
        ASSERT_LE(r.a + span, store_end) << HostileRecordLine(i, r);
      } else if (r.op == HOSTILE_OP_BALLOON) {
        ASSERT_GE(r.a, arena.start) << HostileRecordLine(i, r);
        ASSERT_LE(r.a + r.b, store_end) << HostileRecordLine(i, r);
        ASSERT_EQ(r.a % HOSTILE_PAGE, 0u);
      } else if (r.op == HOSTILE_OP_DMA) {
        for (uint32_t j = 0; j < r.a; ++j) {
          hostile_desc_plan p;
          hostile_desc_at(&arena, r.b, j, j + 1 == r.a, &p);
          if (p.want != MMV_DMA_STATUS_OK) {
            ASSERT_EQ(p.flags & MMV_DMA_FLAG_EXPECT_ERROR, MMV_DMA_FLAG_EXPECT_ERROR);
            continue;
          }
          ASSERT_GE(p.src, arena.lanes_start);
          ASSERT_GE(p.dst, arena.lanes_start);
          ASSERT_LE(p.src + p.len, arena.desc_page);
          ASSERT_LE(p.dst + p.len, arena.desc_page);
        }
      } else if (r.op == HOSTILE_OP_UCALL && r.variant == HOSTILE_U_REPORT) {
        ASSERT_FALSE(r.a >= HOSTILE_REPORT_BASE && r.a <= HOSTILE_REPORT_LAST);
      }
    }
  }
  for (uint32_t op = 0; op < HOSTILE_OP_COUNT; ++op) EXPECT_GT(ops[op], 0u) << op;
  // The seeds of HostileSeedTest cover these terminal records.
  EXPECT_EQ(hostile_terminal_of(1), static_cast<uint32_t>(HOSTILE_T_NONCANONICAL));
  EXPECT_EQ(hostile_terminal_of(2), static_cast<uint32_t>(HOSTILE_T_TOUCH_OUTSIDE_RAM));
  EXPECT_EQ(hostile_terminal_of(3), static_cast<uint32_t>(HOSTILE_T_EXCEPTION_PORT));
  EXPECT_EQ(hostile_terminal_of(5), static_cast<uint32_t>(HOSTILE_T_UCALL_BAD_MAGIC));
  EXPECT_EQ(hostile_terminal_of(7), static_cast<uint32_t>(HOSTILE_T_NONE));
}

// Every geometry a KVM run can have (--mem up to 1 GiB, 2..32 vCPUs): the program stays in
// the arena, and the arena inside the hostile vCPU's own part of free memory.
TEST(HostileRecordLogTest, EveryGeometryKeepsTheProgramInItsArena) {
  int geometries = 0;
  for (uint64_t mem : {2ull << 20, 3ull << 20, 32ull << 20, 1ull << 30}) {
    for (uint32_t vcpus : {2u, 3u, 8u, 32u}) {
      const uint64_t free_start = 0x109000, free_end = mem - vcpus * MMV_STACK_SIZE;
      hostile_arena arena{};
      if (hostile_arena_of(mem, free_start, free_end, vcpus, 0, &arena) != 0) continue;
      ++geometries;
      struct memstress_layout verifier;
      ASSERT_EQ(memstress_layout_of(free_start, free_end, vcpus, 1, 0, &verifier), 0);
      ASSERT_LE(arena.end, verifier.part_start) << mem << " " << vcpus;
      for (uint64_t i = 0; i < 5000; ++i) {
        hostile_record r;
        hostile_record_at(mem ^ vcpus, &arena, i, &r);
        if (r.op == HOSTILE_OP_STORE || r.op == HOSTILE_OP_BALLOON) {
          const uint64_t end = r.a + (r.op == HOSTILE_OP_BALLOON ? r.b : r.c == 64 ? 512 : r.c);
          ASSERT_GE(r.a, arena.start) << HostileRecordLine(i, r);
          ASSERT_LE(end, arena.start + arena.store_pages * HOSTILE_PAGE) << HostileRecordLine(i, r);
        }
        if (r.op == HOSTILE_OP_UCALL && r.variant == HOSTILE_U_FOREIGN) {
          ASSERT_GE(r.a, arena.lanes_start);
          ASSERT_LE(r.a + MMV_UCALL_STRIDE, arena.desc_page);
          ASSERT_EQ(r.a % 8, 0u);
        }
      }
    }
  }
  EXPECT_GE(geometries, 10);  // all but the ones whose parts are too small
}

// The VMM's side of the report protocol, without KVM: the hostile vCPU's reports of the
// ABI's kinds are its random records and never reach the verdict's counts.
TEST(HostileReportsTest, TheHostileVcpusAbiReportsAreStray) {
  GuestReports reports(2);
  reports.set_hostile_vcpu(0);
  const uint64_t progress[5] = {7, 1000, 0x1234, 3, 0};
  const uint64_t mismatch[5] = {0x200000, 1, 2, 3, MMV_MISMATCH_CPU};
  reports.OnReport(0, MMV_REPORT_PROGRESS, progress);
  reports.OnReport(0, MMV_REPORT_MISMATCH, mismatch);
  reports.OnReport(0, MMV_REPORT_MISMATCH_SUMMARY, progress);
  reports.OnReport(0, MMV_REPORT_DMA_ERROR, progress);
  reports.OnReport(0, MMV_REPORT_DMA_HOSTILE, progress);
  reports.OnReport(0, 0xdeadbeef, progress);
  EXPECT_EQ(reports.pages_verified(), 0u);
  EXPECT_EQ(reports.mismatches(), 0u);
  EXPECT_EQ(reports.rounds_done(), 0u);
  EXPECT_EQ(reports.guest_dma_errors(), 0u);
  EXPECT_FALSE(reports.hostile_reported());  // dmahostile's summary kind, sent at random
  // The verifier's own reports count as always.
  reports.OnReport(1, MMV_REPORT_PROGRESS, progress);
  reports.OnReport(1, MMV_REPORT_MISMATCH, mismatch);
  EXPECT_EQ(reports.pages_verified(), 1000u);
  EXPECT_EQ(reports.mismatches(), 1u);
  // The hostile kinds: only the hostile vCPU's count, except a verifier's VERIFIER_DONE.
  const uint64_t announce[5] = {1, 0, 0, 0, 0};
  const uint64_t failed[5] = {42, HOSTILE_CHECK_STORE_KEPT, 0x123000, 5, 6};
  const uint64_t done[5] = {0, 0, 0, 0, 0};
  reports.OnReport(0, HOSTILE_REPORT_ANNOUNCE, announce);
  reports.OnReport(0, HOSTILE_REPORT_ANNOUNCE, announce);
  reports.OnReport(1, HOSTILE_REPORT_ANNOUNCE, announce);  // not the hostile vCPU: stray
  for (int i = 0; i < 20; ++i) reports.OnReport(0, HOSTILE_REPORT_CHECK_FAILED, failed);
  reports.OnReport(1, HOSTILE_REPORT_VERIFIER_DONE, done);
  reports.OnReport(0, HOSTILE_REPORT_VERIFIER_DONE, done);  // the hostile vCPU is no verifier
  const GuestReports::HostileCounts h = reports.hostile_counts();
  EXPECT_EQ(h.announced_device_errors, 2u);
  EXPECT_EQ(h.check_failures.size(), HOSTILE_CHECKS_REPORTED);
  EXPECT_EQ(h.self_check_failures, HOSTILE_CHECKS_REPORTED + 1);
  EXPECT_THAT(h.check_failures.front(),
              HasSubstr("record 42: store read back at a later sweep: at 0x123000"));
  EXPECT_EQ(h.stray_reports, 7u);
  ASSERT_EQ(h.verifier_done.size(), 2u);
  EXPECT_FALSE(h.verifier_done[0].has_value());
  EXPECT_EQ(h.verifier_done[1], 0u);
}

// The judgement of how the vCPUs ended (hostile_run.h), on made-up run results.
RunResult Ended(VcpuReport hostile, VcpuReport verifier) {
  RunResult run;
  run.verdict = Verdict::kCrashed;
  hostile.index = 0;
  verifier.index = 1;
  run.vcpus = {hostile, verifier};
  return run;
}

VcpuReport Done(uint64_t code) {
  VcpuReport v;
  v.stop.kind = StopKind::kGuestStop;
  v.done_code = code;
  return v;
}

VcpuReport Kicked() {
  VcpuReport v;
  v.stop.kind = StopKind::kKicked;
  return v;
}

VcpuReport Crashed(const std::string& detail) {
  VcpuReport v;
  v.stop.kind = StopKind::kCrashed;
  v.stop.detail = detail;
  return v;
}

// A DMA chain that memstress saw fail is the run's failure even when the deadline stops
// the guest before it exits 1 (it exits only after its round): the report alone counts.
TEST(GuestReportsTest, DmaErrorsTheGuestSawAreAProblemNamingTheFirst) {
  GuestReports reports(2);
  EXPECT_EQ(reports.ReportedProblems(), "");
  const uint64_t pending[4] = {0x7000, MMV_DMA_STATUS_PENDING, MMV_DMA_OP_COPY, 12};
  const uint64_t fault[4] = {0x7040, MMV_DMA_STATUS_FAULT, MMV_DMA_OP_CHECKSUM, 13};
  reports.OnReport(1, MMV_REPORT_DMA_ERROR, pending);
  reports.OnReport(0, MMV_REPORT_DMA_ERROR, fault);
  EXPECT_EQ(reports.guest_dma_errors(), 2u);
  EXPECT_EQ(reports.ReportedProblems(),
            "2 DMA chain(s) failed as the guest saw them (first: vCPU 1: DMA descriptor "
            "gpa=0x7000 (copy, round 12) ended with status pending: none by the guest's "
            "poll limit (0))");
  // Values a guest made up are named, not trusted.
  GuestReports odd(1);
  const uint64_t junk[4] = {0x8000, uint64_t{1} << 40, 99, 1};
  odd.OnReport(0, MMV_REPORT_DMA_ERROR, junk);
  EXPECT_THAT(odd.ReportedProblems(),
              HasSubstr("(unknown, round 1) ended with status unknown (1099511627776)"));
}

TEST(HostileRunProblemTest, JudgesEveryVcpusEnd) {
  GuestReports::HostileCounts counts;
  counts.terminal_reached = true;
  counts.verifier_done = {std::nullopt, 0u};
  const VcpuReport ud = Crashed("guest exception: invalid opcode (#UD), vector 6, rip inside");
  // The terminal record as expected; the verifier stopped after memstress returned 0.
  EXPECT_EQ(HostileRunProblem(Ended(ud, Kicked()), 0, counts, HOSTILE_T_UD2), "");
  EXPECT_EQ(HostileRunProblem(Ended(Done(0), Done(0)), 0, counts, HOSTILE_T_NONE), "");
  // Another end than the terminal record's.
  EXPECT_THAT(HostileRunProblem(Ended(ud, Done(0)), 0, counts, HOSTILE_T_HLT),
              HasSubstr("but its terminal record (hlt at CPL3 (#GP)) must end it with "
                        "'vector 13'"));
  // A verifier kicked before it finished, or one whose memstress failed.
  GuestReports::HostileCounts early = counts;
  early.verifier_done = {std::nullopt, std::nullopt};
  EXPECT_THAT(HostileRunProblem(Ended(ud, Kicked()), 0, early, HOSTILE_T_UD2),
              HasSubstr("verifying vCPU 1 ended kicked"));
  EXPECT_THAT(HostileRunProblem(Ended(ud, Done(1)), 0, counts, HOSTILE_T_UD2),
              HasSubstr("verifying vCPU 1 ended DONE 1"));
  // The host stopped everything at the deadline: no terminal record needed.
  GuestReports::HostileCounts cut = early;
  cut.terminal_reached = false;
  RunResult stopped = Ended(Kicked(), Kicked());
  stopped.host_stop = "deadline";
  EXPECT_EQ(HostileRunProblem(stopped, 0, cut, HOSTILE_T_UD2), "");
  // The VMM's own failure, and the hostile vCPU's failed self-checks, always fail.
  RunResult host_error = Ended(ud, Done(0));
  host_error.verdict = Verdict::kHostError;
  host_error.summary = "KVM_RUN failed";
  EXPECT_THAT(HostileRunProblem(host_error, 0, counts, HOSTILE_T_UD2),
              HasSubstr("the VMM failed: KVM_RUN failed"));
  GuestReports::HostileCounts checks = counts;
  checks.self_check_failures = 1;
  checks.check_failures = {"record 3: ballooned page reads zero: at 0x1000 expected 0x0 found 0x1"};
  EXPECT_THAT(HostileRunProblem(Ended(ud, Done(0)), 0, checks, HOSTILE_T_UD2),
              HasSubstr("self-checks failed 1 time(s): record 3: ballooned page"));
}

}  // namespace
}  // namespace mmuvisor::vmm::stress
