// libFuzzer target `cli_flags`: an argv for `mmuvisor` (vmm/cli/flags.h ParseCommandLine),
// one word per input line (fuzz_words.h), and the same words through the number parsers
// (ParseSize, ParseGuestNumber, ParseTimeout) and the help texts.
//
// Checked on every accepted command line (abort on violation): what flags.h and
// `run --help` promise: --mem a multiple of 4 KiB and at least kMinGuestMemBytes; 1..32 vCPUs;
// a positive timeout; at most MMV_BOOT_INFO_MAX_ARGS guest arguments; --resident in (0, 1].
// (An empty GUEST parses: it is the resolver's to refuse, guest_source.h, as it does.)
// ParseSize never returns 0; ParseTimeout never a non-positive duration. Every error is
// one line with a message (the CLI prints it as its one stderr line).
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "mmuvisor/guest_abi.h"
#include "tests/fuzz/fuzz_words.h"
#include "vmm/cli/flags.h"

namespace {

[[noreturn]] void Fail(const char* what) {
  std::fprintf(stderr, "cli_flags fuzz: %s\n", what);
  std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  namespace cli = mmuvisor::vmm::cli;
  const std::vector<std::string> words = mmuvisor::fuzz::SplitWords(data, size);
  absl::StatusOr<cli::Command> command = cli::ParseCommandLine(words);
  if (command.ok() && command->kind == cli::CommandKind::kRun) {
    const cli::RunOptions& run = command->run;
    if (run.mem_bytes % 4096 != 0 || run.mem_bytes < mmuvisor::vmm::kMinGuestMemBytes) {
      Fail("--mem accepted");
    }
    if (run.vcpus == 0 || run.vcpus > MMV_UCALL_MAX_VCPUS) Fail("--vcpus accepted");
    if (run.timeout <= absl::ZeroDuration()) Fail("non-positive --timeout accepted");
    if (run.guest_args.size() > MMV_BOOT_INFO_MAX_ARGS) Fail("too many guest arguments");
    if (run.resident_fraction &&
        !(*run.resident_fraction > 0 && *run.resident_fraction <= 1)) {
      Fail("--resident outside (0, 1] accepted");
    }
  } else if (command.ok() && command->kind == cli::CommandKind::kHelp) {
    const std::string& t = command->help_topic;
    if (!t.empty() && t != "run" && t != "stress") Fail("unknown help topic accepted");
  } else if (!command.ok() && command.status().message().empty()) {
    Fail("error without a message");
  } else if (!command.ok() &&
             command.status().message().find('\n') != absl::string_view::npos) {
    Fail("error of more than one line");  // the CLI prints it as its one stderr line
  }
  for (const std::string& w : words) {
    absl::StatusOr<uint64_t> bytes = cli::ParseSize(w);
    if (bytes.ok() && *bytes == 0) Fail("ParseSize returned 0");
    (void)cli::ParseGuestNumber(w);
    absl::StatusOr<absl::Duration> timeout = cli::ParseTimeout(w);
    if (timeout.ok() && *timeout <= absl::ZeroDuration()) Fail("ParseTimeout <= 0");
  }
  if (words.empty()) {
    (void)cli::GeneralHelp();
    (void)cli::RunHelp();
  }
  return 0;
}
