// Reads /sys/module to tell VMX, SVM and kvm_pvm apart. See flavour.h.
#include "vmm/kvm/flavour.h"

#include <sys/stat.h>

#include <fstream>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"

namespace mmuvisor::vmm {
namespace {

bool IsDir(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

// A boolean module parameter ("Y"/"N", or "1"/"0" for some): true only if it reads so.
bool ParamIsOn(const std::string& path) {
  std::ifstream in(path);
  std::string v;
  if (!(in >> v)) return false;
  return v == "Y" || v == "y" || v == "1";
}

}  // namespace

KvmHostInfo DetectKvmHost(absl::string_view sysfs_module_dir) {
  const std::string root(sysfs_module_dir);
  KvmHostInfo info;
  if (IsDir(root + "/kvm_pvm")) {
    info.flavour = KvmFlavour::kPvm;
    info.tdp = false;  // PVM is shadow paging by construction
    return info;
  }
  if (IsDir(root + "/kvm_intel")) {
    info.flavour = KvmFlavour::kVmx;
    info.tdp = ParamIsOn(root + "/kvm_intel/parameters/ept");
  } else if (IsDir(root + "/kvm_amd")) {
    info.flavour = KvmFlavour::kSvm;
    info.tdp = ParamIsOn(root + "/kvm_amd/parameters/npt");
  }
  info.tdp_mmu = info.tdp && ParamIsOn(root + "/kvm/parameters/tdp_mmu");
  return info;
}

bool KvmPrefetchesNeighbours(const KvmHostInfo& info) {
  switch (info.flavour) {
    case KvmFlavour::kPvm:
      return true;
    case KvmFlavour::kVmx:
    case KvmFlavour::kSvm:
      return !(info.tdp && info.tdp_mmu);
    case KvmFlavour::kUnknown:
      break;
  }
  return false;
}

std::string KvmFlavourName(KvmFlavour flavour) {
  switch (flavour) {
    case KvmFlavour::kVmx:
      return "VMX (kvm_intel)";
    case KvmFlavour::kSvm:
      return "SVM (kvm_amd)";
    case KvmFlavour::kPvm:
      return "PVM (kvm_pvm)";
    case KvmFlavour::kUnknown:
      break;
  }
  return "unknown (no kvm_intel, kvm_amd or kvm_pvm module)";
}

std::string DescribeKvmHost(const KvmHostInfo& info) {
  std::string s = absl::StrCat("KVM flavour: ", KvmFlavourName(info.flavour));
  switch (info.flavour) {
    case KvmFlavour::kPvm:
      absl::StrAppend(&s, ", shadow paging; guest CPL3 runs natively, CPL0 is emulated "
                          "(~1000x slower); IOPL is ignored (ports via the TSS I/O bitmap)");
      break;
    case KvmFlavour::kVmx:
    case KvmFlavour::kSvm:
      absl::StrAppend(&s,
                      info.tdp ? (info.tdp_mmu ? ", two-dimensional paging (TDP MMU)"
                                               : ", two-dimensional paging (legacy MMU)")
                               : ", shadow paging",
                      "; CPL0 and CPL3 both run natively");
      break;
    case KvmFlavour::kUnknown:
      break;
  }
  return s;
}

std::string KvmFlavourCrashNote(KvmFlavour flavour) {
  if (flavour != KvmFlavour::kPvm) return "";
  return "host KVM is kvm_pvm: guest ring 3 runs in the host's ring 3, RFLAGS.IOPL is "
         "ignored there (CPL3 port I/O needs the TSS I/O bitmap), guest ring 0 is emulated "
         "and SSE/AVX at ring 0 is an emulation failure";
}

}  // namespace mmuvisor::vmm
