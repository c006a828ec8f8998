// The built-in guest images: present, loadable, linked where the ABI says, and carrying the
// strings and instructions the KVM-backed tests rely on.
#include "vmm/boot/guest_images.h"

#include <algorithm>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "mmuvisor/guest_abi.h"
#include "support/status_matchers.h"
#include "vmm/boot/elf_loader.h"

namespace mmuvisor::vmm {
namespace {

using ::mmuvisor::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

bool ContainsBytes(absl::Span<const uint8_t> haystack, const std::string& needle) {
  const std::vector<uint8_t> bytes(needle.begin(), needle.end());  // char may be signed
  return std::search(haystack.begin(), haystack.end(), bytes.begin(), bytes.end()) !=
         haystack.end();
}

TEST(GuestImagesTest, ListsTheGuests) {
  EXPECT_THAT(BuiltinGuestImageNames(), ElementsAre("crash", "dmahostile", "hello16", "hello64", "hostile", "memstress", "smp"));
}

TEST(GuestImagesTest, UnknownNameIsNotFound) {
  EXPECT_THAT(BuiltinGuestImage("hello32"),
              StatusIs(absl::StatusCode::kNotFound,
                       HasSubstr("'hello32' (known: crash, dmahostile, hello16, hello64, hostile, memstress, smp)")));
}

// Every built-in guest, also one added later. The expectations hold for all of them: each
// is linked by the runtime's script for its mode (real16.ld for hello16, long64.ld for the
// rest), which puts _start first in the text, and none has more than 1 MiB of text, data
// and bss (the stress guests work in the free range the boot info hands them).
class EachGuestTest : public ::testing::TestWithParam<absl::string_view> {};

TEST_P(EachGuestTest, LoadsAtItsAbiAddress) {
  ASSERT_OK_AND_ASSIGN(absl::Span<const uint8_t> elf, BuiltinGuestImage(GetParam()));
  std::vector<uint8_t> ram(4ull << 20, 0);
  ASSERT_OK_AND_ASSIGN(LoadedImage image,
                       LoadElf(elf, GuestRamView{ram.data(), ram.size()}));
  const bool real = GetParam() == "hello16";
  EXPECT_EQ(image.mode, real ? BootMode::kReal16 : BootMode::kLong64);
  EXPECT_EQ(image.lowest_gpa, real ? MMV_REAL_MODE_LOAD_GPA : MMV_IMAGE_GPA);
  EXPECT_EQ(image.entry, image.lowest_gpa);  // _start leads the text section
  EXPECT_LE(image.highest_gpa, real ? MMV_REAL_MODE_LOAD_END_GPA : MMV_IMAGE_GPA + (1 << 20));
}

INSTANTIATE_TEST_SUITE_P(Builtin, EachGuestTest,
                         ::testing::ValuesIn(BuiltinGuestImageNames()),
                         [](const ::testing::TestParamInfo<absl::string_view>& param_info) {
                           return std::string(param_info.param);
                         });

TEST(GuestImagesTest, ImagesCarryTheDocumentedOutput) {
  ASSERT_OK_AND_ASSIGN(auto hello64, BuiltinGuestImage("hello64"));
  EXPECT_TRUE(ContainsBytes(hello64, "hello64: Hello from vCPU %u at CPL%u!"));
  EXPECT_TRUE(ContainsBytes(hello64, "hello64: serial says hi\n"));
  ASSERT_OK_AND_ASSIGN(auto hello16, BuiltinGuestImage("hello16"));
  EXPECT_TRUE(ContainsBytes(hello16, std::string("hello16: Hello from real mode!\n\0", 32)));
  ASSERT_OK_AND_ASSIGN(auto crash, BuiltinGuestImage("crash"));
  // movl $0xdead, 0x0: the store to the unmapped page 0 at mmv_crash_site.
  const std::string store_to_zero("\xc7\x04\x25\x00\x00\x00\x00\xad\xde\x00\x00", 11);
  EXPECT_TRUE(ContainsBytes(crash, store_to_zero));
}

}  // namespace
}  // namespace mmuvisor::vmm
