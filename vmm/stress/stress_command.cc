#include "vmm/stress/stress_command.h"

#include <sys/stat.h>
#include <unistd.h>

#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "vmm/kvm/flavour.h"
#include "vmm/stress/host_threads.h"
#include "vmm/stress/json_output.h"
#include "vmm/stress/stress_kvm.h"
#include "vmm/stress/stress_options.h"
#include "vmm/stress/stress_result.h"

namespace mmuvisor::vmm::stress {
namespace {

// The report files a run will write: checked before it (CheckWritable; two flags naming
// one regular file by different spellings, `a.json` and `./a.json`, are refused: the
// later write would replace the earlier), and those the check created are removed again
// if the run left them empty (it ended before writing its report: KVM unusable, bad input
// found late), so a failed start leaves no empty file behind and an existing report is
// not truncated by one.
class ReportFiles {
 public:
  ReportFiles() = default;
  ReportFiles(const ReportFiles&) = delete;
  ReportFiles& operator=(const ReportFiles&) = delete;
  ~ReportFiles() {
    for (const std::string& path : created_) {
      struct stat st;
      if (stat(path.c_str(), &st) == 0 && st.st_size == 0) unlink(path.c_str());
    }
  }
  absl::Status Check(const char* flag, const std::string& path) {
    bool created = false;
    if (absl::Status s = CheckWritable(path, &created); !s.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(flag, " '", path, "': ", s.message()));
    }
    if (created) created_.push_back(path);
    struct stat st;
    if (stat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) return absl::OkStatus();
    for (const Checked& other : checked_) {
      if (other.dev == st.st_dev && other.ino == st.st_ino) {
        return absl::InvalidArgumentError(absl::StrCat(flag, " '", path, "': the same file as ",
                                                       other.flag, " '", other.path, "'"));
      }
    }
    checked_.push_back({flag, path, st.st_dev, st.st_ino});
    return absl::OkStatus();
  }

 private:
  struct Checked {
    const char* flag;
    std::string path;
    dev_t dev;
    ino_t ino;
  };
  std::vector<std::string> created_;
  std::vector<Checked> checked_;  // the regular files checked so far
};

int Fail(std::FILE* err, int code, absl::string_view message) {
  std::fprintf(err, "mmuvisor stress: %.*s\n", static_cast<int>(message.size()),
               message.data());
  return code;
}

}  // namespace

int RunStressCommand(absl::Span<const std::string> args, std::FILE* out, std::FILE* err,
                     bool out_is_tty) {
  absl::StatusOr<StressOptions> options = ParseStressFlags(args);
  if (!options.ok()) return Fail(err, kStressExitBadInput, options.status().message());
  // The report files are written after the run; one that cannot be written is found out
  // now, not after the run has been lost with its verdict.
  ReportFiles reports;
  for (const auto& [flag, path] : {std::pair<const char*, const std::string*>{
                                       "--json", &options->json_path},
                                   {"--trace", &options->trace_path},
                                   {"--hostile-log", &options->hostile_log_path}}) {
    if (path->empty()) continue;
    if (absl::Status s = reports.Check(flag, *path); !s.ok()) {
      return Fail(err, kStressExitBadInput, s.message());
    }
  }

  absl::StatusOr<HostStressOutcome> outcome;
  if (options->mode == StressMode::kHostThreads) {
    outcome = RunHostStress(*options, out, out_is_tty);
  } else {
    // The first line names the KVM implementation a KVM run meets here (kvm_pvm differs
    // from VMX/SVM in what guest code costs and in how ports are granted).
    std::fprintf(out, "mmuvisor stress: %s\n", DescribeKvmHost(DetectKvmHost()).c_str());
    outcome = RunKvmStress(*options, out, out_is_tty);
    const bool unusable = absl::IsFailedPrecondition(outcome.status()) ||
                          absl::IsUnimplemented(outcome.status());
    const absl::Status kvm_only = CheckKvmOnlyFlags(*options);
    if (!outcome.ok() && unusable && options->mode == StressMode::kAuto &&
        options->guest == "memstress" && !kvm_only.ok()) {
      // The user asked for something only KVM has: say why KVM cannot run, not that the
      // host-thread mode (which they did not ask for) refuses the flag.
      return Fail(err, kStressExitHostError,
                  absl::StrCat(outcome.status().message(), " (and ", kvm_only.message(),
                               ", so no host-thread run instead)"));
    }
    if (!outcome.ok() && unusable && options->mode == StressMode::kAuto &&
        options->guest == "memstress") {
      std::fprintf(out,
                   "mmuvisor stress: KVM run not possible here (%s);\n"
                   "  running the memstress workload on host threads over the same notifier, "
                   "MMU, DMA and reclaim stack (--mode host-threads).\n",
                   std::string(outcome.status().message()).c_str());
      std::fflush(out);
      outcome = RunHostStress(*options, out, out_is_tty);
    } else if (!outcome.ok() && unusable) {
      return Fail(err, kStressExitHostError, outcome.status().message());
    }
  }
  if (!outcome.ok()) {
    return Fail(err,
                absl::IsInvalidArgument(outcome.status()) ? kStressExitBadInput
                                                          : kStressExitHostError,
                outcome.status().message());
  }
  // The verdict first, whatever became of the files: a run whose report file could not be
  // written still ran, and its verdict is the one thing it must not lose.
  const std::string report = FormatReport(outcome->result);
  std::fputs(report.c_str(), out);
  const bool written = outcome->files_written.ok();
  if (written && !options->json_path.empty()) {
    std::fprintf(out, "  json report: %s\n", options->json_path.c_str());
  }
  if (written && !options->trace_path.empty()) {
    std::fprintf(out, "  trace: %s (open in https://ui.perfetto.dev or chrome://tracing)\n",
                 options->trace_path.c_str());
  }
  std::fflush(out);
  if (!written) {
    // A FAIL stays a FAIL (exit 1); a PASS whose files are missing is a host error.
    return Fail(err, outcome->result.pass ? kStressExitHostError : kStressExitFail,
                outcome->files_written.message());
  }
  return outcome->result.pass ? kStressExitPass : kStressExitFail;
}

}  // namespace mmuvisor::vmm::stress
