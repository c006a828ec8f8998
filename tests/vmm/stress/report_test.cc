// KVM-free tests of what a stress run reports: the verdict rule, the human report, the
// JSON report and the Chrome trace (both parsed back), the progress line and the flags.
#include <pthread.h>

#include <cstdio>
#include <string>
#include <thread>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "json_parse.h"
#include "trace_words.h"
#include "support/status_matchers.h"
#include "support/wait.h"
#include "vmm/stress/progress.h"
#include "vmm/stress/stress_options.h"
#include "vmm/stress/stress_result.h"
#include "vmm/stress/trace_log.h"

namespace mmuvisor::vmm::stress {
namespace {

using ::mmuvisor::testing::Json;
using ::mmuvisor::testing::JsonParser;
using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::SizeIs;

StressResult CleanResult() {
  StressResult r;
  r.seed = 7;
  r.mode = "host-threads";
  r.policy = "upstream";
  r.dma_path = "secondary";
  r.duration_s = 1.5;
  r.guest_pages_verified = 1000;
  r.guest_rounds = 10;
  r.invalidations = 50;
  r.faults = 300;
  r.swap_ins = 20;
  r.dma_ops = 12;
  r.in_progress_final = {{"vcpu-mmu.in_progress", 0}, {"hub.open_windows", 0}};
  return r;
}

TEST(VerdictTest, CleanRunPasses) {
  StressResult r = CleanResult();
  DecideVerdict(r);
  EXPECT_TRUE(r.pass);
  EXPECT_THAT(r.failures, IsEmpty());
}

TEST(VerdictTest, EachConditionFailsOnItsOwnAndIsNamed) {
  struct Case {
    void (*spoil)(StressResult&);
    const char* named;
  };
  const Case cases[] = {
      {[](StressResult& r) { r.guest_mismatches = 3; }, "3 guest mismatch(es)"},
      {[](StressResult& r) { r.pairing_violations = 1; }, "1 pairing violation(s)"},
      {[](StressResult& r) { r.in_progress_final[0].value = 1; },
       "vcpu-mmu.in_progress=1"},
      {[](StressResult& r) { r.in_progress_final[1].value = -2; }, "hub.open_windows=-2"},
      {[](StressResult& r) { r.dma_errors_unrequested = 2; }, "2 DMA error(s) the guest did not ask for"},
      {[](StressResult& r) { r.guest_pages_verified = 0; }, "vacuous"},
      {[](StressResult& r) {
         r.churn_failures = 2;
         r.first_churn_failure = "memslot move: deadline";
       },
       "2 memslot change(s) of the churn failed, first: memslot move: deadline"},
      {[](StressResult& r) {
         r.host_op_failures = 2;
         r.first_host_op_failure = "migrate [0x200000, +0x10000): boom";
       },
       "2 host operation(s) failed, first: migrate [0x200000, +0x10000): boom"},
      {[](StressResult& r) {
         r.reclaim_errors = 1;
         r.last_reclaim_error = "reclaim driver: torn down";
       },
       "reclaim driver: 1 pass(es) failed, last: reclaim driver: torn down"},
      {[](StressResult& r) {
         r.workload_ok = false;
         r.workload_problem = "vCPU 1: fault timed out";
       },
       "vCPU 1: fault timed out"},
  };
  for (const Case& c : cases) {
    StressResult r = CleanResult();
    c.spoil(r);
    DecideVerdict(r);
    EXPECT_FALSE(r.pass) << c.named;
    ASSERT_THAT(r.failures, SizeIs(1)) << c.named;
    EXPECT_THAT(r.failures[0], HasSubstr(c.named));
  }
}

// An OOM reap skipped after its retries is the non-blockable path's expected outcome.
TEST(VerdictTest, SkippedOomReapsDoNotFail) {
  StressResult r = CleanResult();
  r.host_op_skips = 5;
  DecideVerdict(r);
  EXPECT_TRUE(r.pass) << FormatReport(r);
  EXPECT_THAT(FormatReport(r), HasSubstr("0 failed, 5 OOM reaps skipped; 0 reclaim errors"));
}

TEST(VerdictTest, RequestedDmaErrorsDoNotFail) {
  StressResult r = CleanResult();
  r.dma_errors = 40;  // all requested by a hostile guest
  DecideVerdict(r);
  EXPECT_TRUE(r.pass);
}

TEST(ReportTest, HumanReportLeadsWithVerdictAndListsFailures) {
  StressResult r = CleanResult();
  r.guest_mismatches = 1;
  r.first_mismatches.push_back(Mismatch{0x200000, 0x1111, 0xdeadbeef, 4, 1, 1});
  DecideVerdict(r);
  const std::string text = FormatReport(r);
  EXPECT_EQ(text.rfind("verdict: FAIL", 0), 0u) << text;
  EXPECT_THAT(text, AllOf(HasSubstr("FAIL: 1 guest mismatch"),
                          HasSubstr("dma-copy gpa=0x200000 expected=0x0000000000001111 "
                                    "found=0x00000000deadbeef")));
}

TEST(ReportTest, JsonHasEveryRequiredFieldAndParsesBack) {
  StressResult r = CleanResult();
  r.fault_latency = LatencyPercentiles{300, 1000, 5000, 20000, 90000};
  r.dma_warnings = {"a \"quoted\"\nwarning"};
  DecideVerdict(r);
  ASSERT_OK_AND_ASSIGN(Json json, JsonParser::Parse(ReportToJson(r)));
  for (const char* field :
       {"verdict", "seed", "duration_s", "guest_pages_verified", "guest_mismatches",
        "pairing_violations", "invalidations", "eagain", "faults", "fault_retries",
        "swap_ins", "swap_outs", "dirty_log", "dirty_ring_entries", "dma_ops", "dma_errors",
        "in_progress_final",
        "fault_latency_us"}) {
    EXPECT_TRUE(json.Has(field)) << field;
  }
  EXPECT_EQ(json["verdict"].string, "PASS");
  EXPECT_EQ(json["seed"].number, 7);
  EXPECT_EQ(json["faults"].number, 300);
  EXPECT_EQ(json["in_progress_final"].number, 0);
  EXPECT_EQ(json["fault_latency_us"]["p99"].number, 20);
  EXPECT_EQ(json["dma_warnings"].array[0].string, "a \"quoted\"\nwarning");
  EXPECT_EQ(json["in_progress_counts"]["vcpu-mmu.in_progress"].number, 0);
}

// Any string gives valid JSON: quotes, backslashes, every control character and bytes
// that are not UTF-8 (a guest's text, an OS thread's name). Parsed back by nlohmann-json,
// whose parser rejects invalid UTF-8, so the document is checked strictly.
TEST(ReportTest, JsonEscapesAnyStringAndStaysValidUtf8) {
  std::string controls;
  for (char c = 1; c < 0x20; ++c) controls += c;
  const std::string valid = "say \"hi\" \\ C:\\dir\\ " + controls + " \x7f µ";
  StressResult r = CleanResult();
  r.dma_warnings = {valid, std::string("bad \xff byte"), std::string("cut \xc3"),
                    std::string("nul \0 inside", 12)};
  r.workload_problem = "surrogate \xed\xa0\x80 end";
  const std::string text = ReportToJson(r);
  nlohmann::json json;
  ASSERT_NO_THROW(json = nlohmann::json::parse(text)) << text;
  const std::vector<std::string> warnings = json["dma_warnings"].get<std::vector<std::string>>();
  ASSERT_THAT(warnings, SizeIs(4));
  EXPECT_EQ(warnings[0], valid);  // every valid byte comes back as it was
  EXPECT_EQ(warnings[1], "bad \xEF\xBF\xBD byte");  // U+FFFD
  EXPECT_EQ(warnings[2], "cut \xEF\xBF\xBD");
  EXPECT_EQ(warnings[3], std::string("nul \0 inside", 12));
  EXPECT_THAT(json["workload_problem"].get<std::string>(),
              AllOf(HasSubstr("surrogate "), HasSubstr("\xEF\xBF\xBD"), HasSubstr(" end")));
  // The test parser the other stress tests use reads the same document.
  EXPECT_OK(JsonParser::Parse(text).status());
}

TEST(ReportTest, JsonKeepsFieldOrderAndThreeDecimals) {
  StressResult r = CleanResult();
  r.duration_s = 1.23456;
  DecideVerdict(r);
  const std::string text = ReportToJson(r);
  EXPECT_EQ(text.rfind(R"({"verdict":"PASS","failures":[],"seed":7,"mode":"host-threads",)", 0),
            0u)
      << text;
  EXPECT_THAT(text, HasSubstr(R"("duration_s":1.235,)"));
}

TEST(TraceLogTest, DisabledLogRecordsNothing) {
  TraceLog trace(false);
  trace.Complete("c", "n", 0, 10);
  trace.Instant("c", "i");
  EXPECT_THAT(trace.Events(), IsEmpty());
}

TEST(TraceLogTest, PerThreadBuffersBecomeOneSortedChromeTrace) {
  TraceLog trace(true);
  trace.NameThisThread("main");
  trace.Complete("invalidate", "clear", 100, 50, "start", 0x1000, "end", 0x2000,
                 trace.TrackFor(1, "dma-mmu"));
  std::thread other([&] {
    trace.NameThisThread("worker");
    trace.Instant("retry", "dma retry", "gpa", 0x3000);
  });
  other.join();
  const std::vector<TraceEvent> events = trace.Events();
  ASSERT_THAT(events, SizeIs(2));
  EXPECT_NE(events[0].track, events[1].track);

  ASSERT_OK_AND_ASSIGN(Json json, JsonParser::Parse(trace.ToJson()));
  const std::vector<Json>& list = json["traceEvents"].array;
  int complete = 0, instant = 0, names = 0;
  bool saw_sub_row = false;
  for (const Json& e : list) {
    const std::string& ph = e["ph"].string;
    if (ph == "X") {
      ++complete;
      EXPECT_EQ(e["name"].string, "clear");
      EXPECT_EQ(e["ts"].number, 0.1);  // microseconds
      EXPECT_EQ(e["dur"].number, 0.05);
      EXPECT_EQ(e["args"]["start"].string, "0x1000");
    } else if (ph == "i") {
      ++instant;
      EXPECT_EQ(e["args"]["gpa"].string, "0x3000");
    } else if (ph == "M") {
      ++names;
      if (e["args"]["name"].string == "main / dma-mmu") saw_sub_row = true;
    }
  }
  EXPECT_EQ(complete, 1);
  EXPECT_EQ(instant, 1);
  EXPECT_GE(names, 3);  // main, worker, main / dma-mmu
  EXPECT_TRUE(saw_sub_row);
}

// Threads the VMM starts for itself (vCPUs, the reclaim driver, the page server) record
// before anyone names them in the log: their rows take the user's word from the OS thread
// name those threads set. Any other unnamed thread keeps a "thread-N" row (with its OS
// name), which TraceWordProblems reports.
TEST(TraceLogTest, UnnamedThreadsGetRowsFromTheirOsNames) {
  TraceLog trace(true);
  const auto record_as = [&](const char* os_name) {
    std::thread t([&] {
      pthread_setname_np(pthread_self(), os_name);
      trace.Instant("invalidate", "clear");
    });
    t.join();
  };
  for (const char* os_name : {"vcpu3", "reclaimd", "hostpg-1", "pgsrv-0", "worker"}) {
    record_as(os_name);
  }
  ASSERT_OK_AND_ASSIGN(Json json, JsonParser::Parse(trace.ToJson()));
  std::vector<std::string> rows;
  for (const Json& e : json["traceEvents"].array) {
    if (e["ph"].string == "M") rows.push_back(e["args"]["name"].string);
  }
  EXPECT_THAT(rows, ElementsAre("vCPU 3", "reclaim driver", "page server 1", "page server 0",
                                "thread-5 (worker)"));
  EXPECT_THAT(::mmuvisor::testing::TraceWordProblems(json),
              ElementsAre("unnamed row 'thread-5 (worker)'"));
}

TEST(TraceLogTest, TraceWordProblemsNamesEnumSpellings) {
  TraceLog trace(true);
  trace.NameThisThread("main");
  trace.Complete("invalidate", "kClear", 0, 1);
  trace.Instant("kRetry", "dma retry");
  ASSERT_OK_AND_ASSIGN(Json json, JsonParser::Parse(trace.ToJson()));
  EXPECT_THAT(::mmuvisor::testing::TraceWordProblems(json),
              ElementsAre("slice cat 'kRetry'", "slice name 'kClear'"));
}

TEST(ProgressTest, LineShowsRatesOverTheInterval) {
  ProgressSample prev{1.0, 1000, 100, 50, 3, 10, 0, 0.5};
  ProgressSample now{3.0, 41000, 300, 2050, 7, 25, 0, 0.25};
  EXPECT_EQ(FormatProgress(now, prev),
            "[   3.0s] verified 20.0k pages/s | inval 100/s | faults 1000/s | retries 7 | "
            "swap-ins 25 | resident 25% | mismatches 0");
}

TEST(ProgressTest, PlainOutputPrintsWholeLinesAndTtyRewritesOne) {
  for (const bool tty : {false, true}) {
    char* buf = nullptr;
    size_t len = 0;
    std::FILE* out = open_memstream(&buf, &len);
    ASSERT_NE(out, nullptr);
    int calls = 0;
    {
      ProgressPrinter printer(out, tty, [&] {
        ProgressSample s;
        s.elapsed_s = ++calls;
        return s;
      }, absl::Milliseconds(1), absl::Milliseconds(1));
      printer.Start();
      EXPECT_TRUE(::mmuvisor::testing::WaitUntil([&] { return printer.lines_printed() >= 3; }))
          << "the printer printed " << printer.lines_printed() << " lines";
      printer.Stop();
    }
    std::fclose(out);
    const std::string text(buf, len);
    std::free(buf);
    if (tty) {
      EXPECT_EQ(text.find('\n'), text.size() - 1) << "one rewritten line, one final newline";
      EXPECT_THAT(text, HasSubstr("\r[ "));
      EXPECT_THAT(text, HasSubstr("\x1b[K"));
    } else {
      EXPECT_EQ(text.find('\r'), std::string::npos);
      EXPECT_GE(std::count(text.begin(), text.end(), '\n'), 3);
    }
  }
}

TEST(StressFlagsTest, DefaultsAreTheShortScenario) {
  ASSERT_OK_AND_ASSIGN(StressOptions o, ParseStressFlags({}));
  EXPECT_EQ(o.policy, notifier::Policy::kUpstream);
  EXPECT_EQ(o.dma_path, DmaPath::kSecondary);
  EXPECT_GT(o.ops.reclaim, 0);
  EXPECT_FALSE(o.skip_dma_retry_check_for_testing);
}

TEST(StressFlagsTest, ParsesEveryFlag) {
  const std::vector<std::string> args = {
      "--mem", "16M", "--vcpus=3", "--duration", "500ms", "--seed", "42", "--resident",
      "25%", "--ops", "reclaim,oom-reap", "--oom-reap-rate", "9", "--policy", "legacy",
      "--eagain", "0.5", "--delay-prob", "0.1", "--delay", "1ms", "--dma-path", "mirror",
      "--json", "r.json", "--trace", "t.json", "--host-threads", "--no-balloon",
      "--test-skip-dma-retry", "--rounds", "4"};
  ASSERT_OK_AND_ASSIGN(StressOptions o, ParseStressFlags(args));
  EXPECT_EQ(o.mem_bytes, 16u << 20);
  EXPECT_EQ(o.vcpus, 3u);
  EXPECT_EQ(o.duration, absl::Milliseconds(500));
  EXPECT_EQ(o.seed, 42u);
  EXPECT_DOUBLE_EQ(o.resident_target, 0.25);
  EXPECT_GT(o.ops.reclaim, 0);
  EXPECT_EQ(o.ops.migrate, 0);
  EXPECT_EQ(o.ops.oom_reap, 9);
  EXPECT_EQ(o.policy, notifier::Policy::kLegacyUnpaired);
  EXPECT_DOUBLE_EQ(o.eagain_probability, 0.5);
  EXPECT_EQ(o.delay, absl::Milliseconds(1));
  EXPECT_EQ(o.dma_path, DmaPath::kMirror);
  EXPECT_EQ(o.json_path, "r.json");
  EXPECT_EQ(o.trace_path, "t.json");
  EXPECT_EQ(o.mode, StressMode::kHostThreads);
  EXPECT_FALSE(o.balloon);
  EXPECT_TRUE(o.skip_dma_retry_check_for_testing);
  EXPECT_EQ(o.rounds, 4u);
}

TEST(StressFlagsTest, BadValuesNameTheFlag) {
  using Args = std::vector<std::string>;
  for (const Args& args : {Args{"--policy", "newest"}, Args{"--mem", "12Q"},
                           Args{"--eagain", "1.5"}, Args{"--vcpus", "0"},
                           Args{"--dma-path", "direct"}, Args{"--frobnicate"},
                           Args{"--duration"}, Args{"--no-dma=1"}}) {
    EXPECT_THAT(ParseStressFlags(args),
                ::mmuvisor::testing::StatusIs(absl::StatusCode::kInvalidArgument,
                                              HasSubstr(args[0].substr(0, args[0].find('=')))))
        << args[0];
  }
}

// Discards come from the guest's balloon calls, not from a host-operation thread: --ops
// discard says so (a rate for it would have configured nothing), and --discard-rate is
// not a flag.
TEST(StressFlagsTest, DiscardIsNotAHostOperation) {
  using Args = std::vector<std::string>;
  EXPECT_THAT(ParseStressFlags(Args{"--ops", "reclaim,discard"}),
              ::mmuvisor::testing::StatusIs(absl::StatusCode::kInvalidArgument,
                                            HasSubstr("balloon")));
  EXPECT_THAT(ParseStressFlags(Args{"--discard-rate", "10"}),
              ::mmuvisor::testing::StatusIs(absl::StatusCode::kInvalidArgument,
                                            HasSubstr("--discard-rate")));
}

// Combinations that would configure nothing, or numbers the run cannot carry, are refused
// with the flag named and why.
TEST(StressFlagsTest, CombinationsThatWouldDoNothingAreRefused) {
  using Args = std::vector<std::string>;
  const std::vector<std::pair<Args, std::string>> refused = {
      {{"--op-pages", "18446744073709551615"}, "--op-pages '18446744073709551615': at most"},
      {{"--mem", "4M", "--op-pages", "2048"}, "more than the guest's 1024 pages"},
      // Without --mem: the host-thread mode's default, 32 MiB.
      {{"--host-threads", "--op-pages", "100000"},
       "--op-pages '100000': more than the guest's 8192 pages (--mem, by default 32M on host "
       "threads)"},
      {{"--eagain", "0.5", "--ops", "reclaim,migrate"}, "--eagain '0.5': needs the OOM reaper"},
      {{"--eagain", "0.5", "--oom-reap-rate", "0"}, "--eagain '0.5': needs the OOM reaper"},
      {{"--no-dma", "--delay-prob", "0.5"}, "--delay-prob: acts on the DMA path"},
      {{"--no-dma", "--dma-path", "mirror"}, "--dma-path: acts on the DMA path"},
      {{"--no-dma", "--test-skip-dma-retry"}, "--test-skip-dma-retry: acts on the DMA path"},
      {{"--resident", "0"}, "--resident '0': must be above 0"},
      {{"--json", "r.json", "--trace", "r.json"}, "--trace 'r.json': the same file as --json"},
  };
  for (const auto& [args, why] : refused) {
    EXPECT_THAT(ParseStressFlags(args),
                ::mmuvisor::testing::StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(why)))
        << args[0] << " " << args[1];
  }
  // The same flags where they act are accepted.
  for (const Args& args : {Args{"--mem", "4M", "--op-pages", "1024"},
                           Args{"--eagain", "0.5", "--ops", "oom-reap"},
                           Args{"--no-dma", "--guest", "hostile", "--delay-prob", "0.5"},
                           Args{"--resident", "1%"}}) {
    EXPECT_THAT(ParseStressFlags(args), ::mmuvisor::testing::IsOk()) << args[0];
  }
}

// Without reclaim nothing holds the guest to --resident: the host-RAM check counts all of it.
TEST(StressFlagsTest, WithoutReclaimAllOfTheGuestCountsAsResident) {
  StressOptions o;
  o.resident_target = 0.1;
  EXPECT_DOUBLE_EQ(ResidentBound(o), 0.1);
  o.ops.reclaim = 0;
  EXPECT_DOUBLE_EQ(ResidentBound(o), 1.0);
}

// Flags act in command-line order: --ops turns the operations it names on at the rates
// given before it, a rate after it sets that operation's rate (on again if --ops left it
// off), and a flag given twice keeps its last value.
TEST(StressFlagsTest, FlagsActInCommandLineOrder) {
  using Args = std::vector<std::string>;
  ASSERT_OK_AND_ASSIGN(StressOptions before,
                       ParseStressFlags(Args{"--migrate-rate", "7", "--ops", "migrate"}));
  EXPECT_EQ(before.ops.migrate, 7);
  EXPECT_EQ(before.ops.reclaim, 0);
  ASSERT_OK_AND_ASSIGN(StressOptions after,
                       ParseStressFlags(Args{"--ops", "migrate", "--reclaim-rate", "3"}));
  EXPECT_EQ(after.ops.reclaim, 3);
  EXPECT_EQ(after.ops.migrate, HostOpRates{}.migrate);
  EXPECT_EQ(after.ops.protect, 0);
  ASSERT_OK_AND_ASSIGN(StressOptions twice,
                       ParseStressFlags(Args{"--seed", "1", "--seed=2", "--no-dma", "--no-dma"}));
  EXPECT_EQ(twice.seed, 2u);
  EXPECT_FALSE(twice.dma);
}

// The words the parser cannot place, each named with what is wrong.
TEST(StressFlagsTest, WordsItCannotUseAreNamed) {
  using Args = std::vector<std::string>;
  const auto bad = [](const Args& args, const std::string& message) {
    EXPECT_THAT(ParseStressFlags(args),
                ::mmuvisor::testing::StatusIs(absl::StatusCode::kInvalidArgument,
                                              HasSubstr(message)))
        << args[0];
  };
  bad({"--frobnicate=1"}, "unknown flag '--frobnicate' (see 'mmuvisor help stress')");
  bad({"--seed", "1", "foo"}, "unexpected argument 'foo' (stress takes flags only");
  bad({"--", "--seed", "1"}, "unexpected argument '--'");
  bad({"--duration"}, "--duration needs a value");
  // "--json=" does not take the next word as its value.
  bad({"--json=", "--no-dma"}, "--json needs a value");
  bad({"--no-dma="}, "--no-dma '': takes no value");
  bad({"--no-dma=1"}, "--no-dma '1': takes no value");
  // --vcpus is read as `run` reads it.
  bad({"--vcpus", "33"}, "--vcpus '33': must be 1 to 32");
  bad({"--vcpus", "+3"}, "--vcpus '+3': not a whole number");
}

// Inputs found by the stress_flags fuzzer (tests/fuzz), byte for byte: SimpleAtod parses
// "nan", which every range check written as `v < lo || v > hi` let through, and seconds
// past absl's range made an endless --duration (the run's bound is --duration + slack).
TEST(StressFlagsTest, FuzzFoundNanAndEndlessValuesAreRefused) {
  using Args = std::vector<std::string>;
  for (const Args& args :
       {Args{"--resident", "nan", "--no-progress", "--no-progress"},  // fuzz crash 73e9b9b0
        Args{"--duration", "189223372036854775807"},                   // fuzz crash 36b76429
        Args{"--eagain", "nan"}, Args{"--delay-prob", "-nan"}, Args{"--reclaim-rate", "nan"},
        Args{"--duration", "inf"}, Args{"--fault-timeout", "nan"}}) {
    EXPECT_THAT(ParseStressFlags(args),
                ::mmuvisor::testing::StatusIs(absl::StatusCode::kInvalidArgument,
                                              HasSubstr(args[0])))
        << args[0] << " " << args[1];
  }
}

}  // namespace
}  // namespace mmuvisor::vmm::stress
