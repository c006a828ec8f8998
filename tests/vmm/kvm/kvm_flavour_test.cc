// DetectKvmHost on fake sysfs trees: which module names which flavour, and what the
// user-facing lines say.
#include "vmm/kvm/flavour.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace mmuvisor::vmm {
namespace {

using ::testing::HasSubstr;

class FakeSysfs {
 public:
  FakeSysfs() {
    char tmpl[] = "/tmp/mmv_sysfs_XXXXXX";
    root_ = ::mkdtemp(tmpl);
  }
  ~FakeSysfs() { (void)std::system(("rm -rf '" + root_ + "'").c_str()); }
  void Module(const std::string& name) { ::mkdir((root_ + "/" + name).c_str(), 0755); }
  void Param(const std::string& module, const std::string& param, const std::string& value) {
    Module(module);
    ::mkdir((root_ + "/" + module + "/parameters").c_str(), 0755);
    std::ofstream(root_ + "/" + module + "/parameters/" + param) << value << "\n";
  }
  const std::string& root() const { return root_; }

 private:
  std::string root_;
};

TEST(KvmFlavourTest, NoModuleIsUnknown) {
  FakeSysfs sys;
  sys.Module("kvm");
  const KvmHostInfo info = DetectKvmHost(sys.root());
  EXPECT_EQ(info.flavour, KvmFlavour::kUnknown);
  EXPECT_THAT(DescribeKvmHost(info), HasSubstr("unknown (no kvm_intel, kvm_amd or kvm_pvm"));
  EXPECT_FALSE(KvmPrefetchesNeighbours(info)) << "unknown: assume nothing";
  EXPECT_EQ(DetectKvmHost("/nonexistent/sysfs").flavour, KvmFlavour::kUnknown);
}

TEST(KvmFlavourTest, VmxAndSvmWithTheirPagingMode) {
  {
    FakeSysfs sys;
    sys.Param("kvm_intel", "ept", "Y");
    const KvmHostInfo info = DetectKvmHost(sys.root());
    EXPECT_EQ(info.flavour, KvmFlavour::kVmx);
    EXPECT_TRUE(info.tdp);
    EXPECT_FALSE(info.tdp_mmu) << "no kvm/parameters/tdp_mmu";
    EXPECT_THAT(DescribeKvmHost(info),
                HasSubstr("VMX (kvm_intel), two-dimensional paging (legacy MMU)"));
    EXPECT_TRUE(KvmPrefetchesNeighbours(info));
  }
  {
    FakeSysfs sys;
    sys.Param("kvm_intel", "ept", "Y");
    sys.Param("kvm", "tdp_mmu", "Y");
    const KvmHostInfo info = DetectKvmHost(sys.root());
    EXPECT_TRUE(info.tdp_mmu);
    EXPECT_THAT(DescribeKvmHost(info), HasSubstr("two-dimensional paging (TDP MMU)"));
    EXPECT_FALSE(KvmPrefetchesNeighbours(info)) << "the TDP MMU maps only the faulting page";
  }
  {
    FakeSysfs sys;
    sys.Param("kvm_intel", "ept", "N");
    sys.Param("kvm", "tdp_mmu", "Y");  // pre-6.3: the parameter can say Y without EPT
    const KvmHostInfo info = DetectKvmHost(sys.root());
    EXPECT_FALSE(info.tdp_mmu);
    EXPECT_TRUE(KvmPrefetchesNeighbours(info));
  }
  {
    FakeSysfs sys;
    sys.Param("kvm_amd", "npt", "0");
    const KvmHostInfo info = DetectKvmHost(sys.root());
    EXPECT_EQ(info.flavour, KvmFlavour::kSvm);
    EXPECT_FALSE(info.tdp);
    EXPECT_THAT(DescribeKvmHost(info), HasSubstr("SVM (kvm_amd), shadow paging"));
    EXPECT_TRUE(KvmPrefetchesNeighbours(info));
  }
}

TEST(KvmFlavourTest, PvmWinsOverAnUnboundHardwareModuleAndIsShadowPaging) {
  FakeSysfs sys;
  sys.Param("kvm_intel", "ept", "Y");
  sys.Module("kvm_pvm");
  const KvmHostInfo info = DetectKvmHost(sys.root());
  EXPECT_EQ(info.flavour, KvmFlavour::kPvm);
  EXPECT_FALSE(info.tdp);
  EXPECT_TRUE(KvmPrefetchesNeighbours(info));
  EXPECT_THAT(DescribeKvmHost(info), HasSubstr("PVM (kvm_pvm), shadow paging"));
  EXPECT_THAT(DescribeKvmHost(info), HasSubstr("IOPL is ignored"));
  EXPECT_THAT(KvmFlavourCrashNote(KvmFlavour::kPvm), HasSubstr("TSS I/O bitmap"));
  EXPECT_EQ(KvmFlavourCrashNote(KvmFlavour::kVmx), "");
}

}  // namespace
}  // namespace mmuvisor::vmm
