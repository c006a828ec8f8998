// LoadElf on valid images and on each kind of malformed image.
#include "vmm/boot/elf_loader.h"

#include <elf.h>

#include <cstdint>
#include <vector>

#include "elf_builder.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "mmuvisor/guest_abi.h"
#include "support/status_matchers.h"

namespace mmuvisor::vmm {
namespace {

using ::mmuvisor::testing::StatusIs;
using ::mmuvisor::vmm::testing::BootModeNote;
using ::mmuvisor::vmm::testing::BuildElf;
using ::mmuvisor::vmm::testing::GetEhdr;
using ::mmuvisor::vmm::testing::GetPhdr;
using ::mmuvisor::vmm::testing::Note;
using ::mmuvisor::vmm::testing::SegmentSpec;
using ::mmuvisor::vmm::testing::SetEhdr;
using ::mmuvisor::vmm::testing::SetPhdr;
using ::testing::HasSubstr;

constexpr uint64_t kRamSize = 4ull << 20;
constexpr uint8_t kPoison = 0xaa;

class ElfLoaderTest : public ::testing::Test {
 protected:
  ElfLoaderTest() : ram_bytes_(kRamSize, kPoison), ram_{ram_bytes_.data(), kRamSize} {}

  // Text at MMV_IMAGE_GPA (3 bytes of code, memsz 0x2000: the rest zero-filled), data at
  // +0x3000 (4 bytes, memsz 8).
  static std::vector<uint8_t> ValidImage() {
    return BuildElf(MMV_IMAGE_GPA,
                    {SegmentSpec{PT_LOAD, PF_R | PF_X, MMV_IMAGE_GPA, {0x90, 0xf3, 0x90}, 0x2000},
                     SegmentSpec{PT_LOAD, PF_R | PF_W, MMV_IMAGE_GPA + 0x3000, {1, 2, 3, 4}, 8}});
  }

  absl::StatusOr<LoadedImage> Load(const std::vector<uint8_t>& elf,
                                   const ElfLoadLimits& limits = {}) {
    return LoadElf(absl::MakeConstSpan(elf), ram_, limits);
  }
  bool RamUntouched() const {
    for (uint8_t b : ram_bytes_) {
      if (b != kPoison) return false;
    }
    return true;
  }

  std::vector<uint8_t> ram_bytes_;
  GuestRamView ram_;
};

TEST_F(ElfLoaderTest, LoadsSegmentsAndZeroFillsBss) {
  ASSERT_OK_AND_ASSIGN(LoadedImage image, Load(ValidImage()));
  EXPECT_EQ(image.entry, MMV_IMAGE_GPA);
  EXPECT_EQ(image.lowest_gpa, MMV_IMAGE_GPA);
  EXPECT_EQ(image.highest_gpa, MMV_IMAGE_GPA + 0x3008);
  EXPECT_EQ(image.mode, BootMode::kLong64);
  const uint8_t* text = ram_bytes_.data() + MMV_IMAGE_GPA;
  EXPECT_EQ(text[0], 0x90);
  EXPECT_EQ(text[2], 0x90);
  for (uint64_t i = 3; i < 0x2000; ++i) ASSERT_EQ(text[i], 0) << "offset " << i;
  EXPECT_EQ(text[0x2000], kPoison);  // between the segments: not written
  const uint8_t* data = text + 0x3000;
  EXPECT_EQ((std::vector<uint8_t>(data, data + 9)),
            (std::vector<uint8_t>{1, 2, 3, 4, 0, 0, 0, 0, kPoison}));
  EXPECT_EQ(ram_bytes_[MMV_IMAGE_GPA - 1], kPoison);  // VMM area below: not written
}

// Fresh RAM (ram_is_zero): the file bytes are copied, [p_filesz, p_memsz) is not written.
TEST_F(ElfLoaderTest, LeavesTheBssAloneOnRamKnownToBeZero) {
  ElfLoadTarget target;
  target.ram_is_zero = true;  // a lie here (the RAM holds kPoison): shows what is written
  ASSERT_OK(LoadElf(absl::MakeConstSpan(ValidImage()), ram_, {}, target).status());
  const uint8_t* text = ram_bytes_.data() + MMV_IMAGE_GPA;
  EXPECT_EQ(text[2], 0x90);
  for (uint64_t i = 3; i < 0x2000; ++i) ASSERT_EQ(text[i], kPoison) << "offset " << i;
  EXPECT_EQ(text[0x3003], 4);
  EXPECT_EQ(text[0x3004], kPoison);
}

// InspectElf: LoadElf's answer, valid or not, without a byte written.
TEST_F(ElfLoaderTest, InspectReportsWhatLoadWouldAndWritesNothing) {
  ASSERT_OK_AND_ASSIGN(LoadedImage image, InspectElf(absl::MakeConstSpan(ValidImage()), ram_));
  EXPECT_EQ(image.entry, MMV_IMAGE_GPA);
  EXPECT_EQ(image.lowest_gpa, MMV_IMAGE_GPA);
  EXPECT_EQ(image.highest_gpa, MMV_IMAGE_GPA + 0x3008);
  EXPECT_EQ(image.mode, BootMode::kLong64);
  ElfLoadTarget target;
  target.stacks_begin = MMV_IMAGE_GPA + 0x3004;
  EXPECT_THAT(InspectElf(absl::MakeConstSpan(ValidImage()), ram_, {}, target),
              StatusIs(absl::StatusCode::kOutOfRange, HasSubstr("runs into the vCPU stacks")));
  EXPECT_TRUE(RamUntouched());
}

TEST_F(ElfLoaderTest, RejectsASegmentRunningIntoTheStacks) {
  ElfLoadTarget target;
  target.stacks_begin = MMV_IMAGE_GPA + 0x3004;  // inside the data segment's bss
  EXPECT_THAT(LoadElf(absl::MakeConstSpan(ValidImage()), ram_, {}, target),
              StatusIs(absl::StatusCode::kOutOfRange,
                       HasSubstr("PT_LOAD [0x103000, 0x103008) runs into the vCPU stacks "
                                 "[0x103004, 0x400000)")));
  EXPECT_TRUE(RamUntouched());  // the first segment, below the stacks, was not copied
  target.stacks_begin = MMV_IMAGE_GPA + 0x3008;  // ending exactly there is fine
  EXPECT_OK(LoadElf(absl::MakeConstSpan(ValidImage()), ram_, {}, target).status());
}

TEST_F(ElfLoaderTest, ReadsRealModeNote) {
  auto elf = BuildElf(MMV_REAL_MODE_LOAD_GPA,
                      {SegmentSpec{PT_LOAD, PF_R | PF_X, MMV_REAL_MODE_LOAD_GPA, {0xf4}, 0},
                       SegmentSpec{PT_NOTE, PF_R, 0, BootModeNote(MMV_BOOT_MODE_REAL16), 0}});
  ASSERT_OK_AND_ASSIGN(LoadedImage image, Load(elf));
  EXPECT_EQ(image.mode, BootMode::kReal16);
  EXPECT_EQ(image.entry, MMV_REAL_MODE_LOAD_GPA);
  EXPECT_EQ(ram_bytes_[MMV_REAL_MODE_LOAD_GPA], 0xf4);
}

// Foreign notes before the boot-mode note are stepped over, also one whose type is the
// boot-mode type under another name (its desc, 7, would be an unknown mode): the real16
// note after them is found. Real16 is not the default, so only reading it passes. (An
// explicit long64 note is read too: RejectsBootModeNotesThatDisagree.)
TEST_F(ElfLoaderTest, SkipsForeignNotesAndReadsTheBootModeNoteAfterThem) {
  auto note = Note("GNU", 3, {1, 2, 3, 4, 5, 6, 7, 8});
  const auto same_type = Note("GNU", MMV_ELF_NOTE_BOOT_MODE, {7, 0, 0, 0});
  const auto mode = BootModeNote(MMV_BOOT_MODE_REAL16);
  note.insert(note.end(), same_type.begin(), same_type.end());
  note.insert(note.end(), mode.begin(), mode.end());
  auto elf = BuildElf(MMV_REAL_MODE_LOAD_GPA,
                      {SegmentSpec{PT_NOTE, PF_R, 0, note, 0},
                       SegmentSpec{PT_LOAD, PF_R | PF_X, MMV_REAL_MODE_LOAD_GPA, {0xf4}, 0}});
  ASSERT_OK_AND_ASSIGN(LoadedImage image, Load(elf));
  EXPECT_EQ(image.mode, BootMode::kReal16);
  EXPECT_EQ(image.entry, MMV_REAL_MODE_LOAD_GPA);
}

// A PT_LOAD with p_memsz 0 describes no bytes: ignored wherever its address, virtual
// address and file offset point (past the end of the file included).
TEST_F(ElfLoaderTest, IgnoresAnEmptyLoadSegmentWhereverItPoints) {
  auto elf = BuildElf(MMV_IMAGE_GPA,
                      {SegmentSpec{PT_LOAD, PF_R | PF_X, MMV_IMAGE_GPA, {0x90, 0xf3}, 0},
                       SegmentSpec{PT_LOAD, PF_R | PF_W, 0, {}, 0}});
  auto ph = GetPhdr(elf, 1);
  ASSERT_EQ(ph.p_memsz, 0u);
  for (uint64_t offset : {uint64_t{elf.size()} + 0x1000, UINT64_MAX}) {
    ph.p_offset = offset;
    ph.p_vaddr = 0xdead0000;  // != p_paddr 0, below MMV_IMAGE_GPA: not checked either
    SetPhdr(elf, 1, ph);
    ASSERT_OK_AND_ASSIGN(LoadedImage image, Load(elf));
    EXPECT_EQ(image.lowest_gpa, MMV_IMAGE_GPA);
    EXPECT_EQ(image.highest_gpa, MMV_IMAGE_GPA + 2);
  }
  ph.p_filesz = 1;  // but a file byte with no memory for it is still malformed
  SetPhdr(elf, 1, ph);
  EXPECT_THAT(Load(elf), StatusIs(absl::StatusCode::kInvalidArgument,
                                  HasSubstr("phdr[1]: p_filesz 0x1 > p_memsz 0")));
}

TEST_F(ElfLoaderTest, RejectsEmptyFile) {
  EXPECT_THAT(Load({}), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("empty")));
}

TEST_F(ElfLoaderTest, RejectsTruncatedHeader) {
  auto elf = ValidImage();
  elf.resize(40);
  EXPECT_THAT(Load(elf), StatusIs(absl::StatusCode::kInvalidArgument,
                                  HasSubstr("truncated ELF header: 40 bytes, need 64")));
  elf.resize(3);
  EXPECT_THAT(Load(elf), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("bad magic")));
}

TEST_F(ElfLoaderTest, RejectsBadMagic) {
  auto elf = ValidImage();
  elf[1] = 'X';
  EXPECT_THAT(Load(elf), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("bad magic")));
}

TEST_F(ElfLoaderTest, RejectsElf32) {
  auto elf = ValidImage();
  elf[EI_CLASS] = ELFCLASS32;
  EXPECT_THAT(Load(elf), StatusIs(absl::StatusCode::kInvalidArgument,
                                  HasSubstr("e_ident[EI_CLASS] = 1, want ELFCLASS64")));
}

TEST_F(ElfLoaderTest, RejectsBigEndian) {
  auto elf = ValidImage();
  elf[EI_DATA] = ELFDATA2MSB;
  EXPECT_THAT(Load(elf), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("EI_DATA")));
}

TEST_F(ElfLoaderTest, RejectsWrongMachine) {
  auto elf = ValidImage();
  auto ehdr = GetEhdr(elf);
  ehdr.e_machine = EM_AARCH64;
  SetEhdr(elf, ehdr);
  EXPECT_THAT(Load(elf), StatusIs(absl::StatusCode::kInvalidArgument,
                                  HasSubstr("e_machine = 183, want EM_X86_64")));
}

TEST_F(ElfLoaderTest, RejectsNonExecutable) {
  auto elf = ValidImage();
  auto ehdr = GetEhdr(elf);
  ehdr.e_type = ET_DYN;
  SetEhdr(elf, ehdr);
  EXPECT_THAT(Load(elf), StatusIs(absl::StatusCode::kInvalidArgument,
                                  HasSubstr("e_type = 3, want ET_EXEC")));
}

TEST_F(ElfLoaderTest, RejectsBadProgramHeaderTable) {
  auto elf = ValidImage();
  auto ehdr = GetEhdr(elf);
  ehdr.e_phentsize = 32;
  SetEhdr(elf, ehdr);
  EXPECT_THAT(Load(elf), StatusIs(absl::StatusCode::kInvalidArgument,
                                  HasSubstr("e_phentsize = 32, want 56")));
  ehdr = GetEhdr(ValidImage());
  ehdr.e_phnum = 0;
  SetEhdr(elf, ehdr);
  EXPECT_THAT(Load(elf), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("e_phnum = 0")));
  ehdr.e_phnum = 65;
  SetEhdr(elf, ehdr);
  EXPECT_THAT(Load(elf), StatusIs(absl::StatusCode::kInvalidArgument,
                                  HasSubstr("e_phnum = 65 exceeds the limit of 64")));
}

TEST_F(ElfLoaderTest, RejectsProgramHeadersOutsideFile) {
  auto elf = ValidImage();
  auto ehdr = GetEhdr(elf);
  ehdr.e_phoff = elf.size() - 10;
  SetEhdr(elf, ehdr);
  EXPECT_THAT(Load(elf), StatusIs(absl::StatusCode::kInvalidArgument,
                                  HasSubstr("program headers (e_phoff")));
  ehdr.e_phoff = UINT64_MAX - 8;  // offset + size wraps around
  SetEhdr(elf, ehdr);
  EXPECT_THAT(Load(elf), StatusIs(absl::StatusCode::kInvalidArgument,
                                  HasSubstr("lie outside the")));
}

TEST_F(ElfLoaderTest, RejectsSegmentOutsideFile) {
  auto elf = ValidImage();
  auto ph = GetPhdr(elf, 1);
  ph.p_filesz = 100;  // runs past the end of the file
  ph.p_memsz = 100;
  SetPhdr(elf, 1, ph);
  EXPECT_THAT(Load(elf), StatusIs(absl::StatusCode::kInvalidArgument,
                                  HasSubstr("phdr[1]: p_offset")));
  ph.p_offset = UINT64_MAX - 2;  // wraps
  ph.p_filesz = 4;
  SetPhdr(elf, 1, ph);
  EXPECT_THAT(Load(elf), StatusIs(absl::StatusCode::kInvalidArgument,
                                  HasSubstr("lies outside the")));
  EXPECT_TRUE(RamUntouched());
}

TEST_F(ElfLoaderTest, RejectsFileSizeAboveMemorySize) {
  auto elf = ValidImage();
  auto ph = GetPhdr(elf, 1);
  ph.p_memsz = 2;
  SetPhdr(elf, 1, ph);
  EXPECT_THAT(Load(elf), StatusIs(absl::StatusCode::kInvalidArgument,
                                  HasSubstr("phdr[1]: p_filesz 0x4 > p_memsz 0x2")));
}

TEST_F(ElfLoaderTest, RejectsSegmentOutsideRam) {
  auto elf = ValidImage();
  auto ph = GetPhdr(elf, 1);
  ph.p_paddr = ph.p_vaddr = kRamSize - 4;  // 8 bytes of memsz: 4 past the end
  SetPhdr(elf, 1, ph);
  EXPECT_THAT(Load(elf), StatusIs(absl::StatusCode::kOutOfRange,
                                  HasSubstr("lies outside guest RAM [0, 0x400000)")));
  EXPECT_TRUE(RamUntouched());  // the valid first segment was not copied either
}

TEST_F(ElfLoaderTest, RejectsSegmentInVmmArea) {
  auto elf = ValidImage();
  auto ph = GetPhdr(elf, 1);
  ph.p_paddr = ph.p_vaddr = MMV_PAGE_TABLE_GPA;
  SetPhdr(elf, 1, ph);
  EXPECT_THAT(Load(elf), StatusIs(absl::StatusCode::kInvalidArgument,
                                  HasSubstr("overlaps the VMM-owned area")));
  EXPECT_TRUE(RamUntouched());
}

TEST_F(ElfLoaderTest, RejectsRealModeSegmentOutsideItsWindow) {
  auto elf = BuildElf(MMV_REAL_MODE_LOAD_GPA,
                      {SegmentSpec{PT_LOAD, PF_R | PF_X, MMV_REAL_MODE_LOAD_GPA, {0xf4}, 0x8000},
                       SegmentSpec{PT_NOTE, PF_R, 0, BootModeNote(MMV_BOOT_MODE_REAL16), 0}});
  EXPECT_THAT(Load(elf), StatusIs(absl::StatusCode::kOutOfRange,
                                  HasSubstr("outside the real16 window [0x8000, 0xf000)")));
}

TEST_F(ElfLoaderTest, RejectsAddressWrapAround) {
  auto elf = ValidImage();
  auto ph = GetPhdr(elf, 1);
  ph.p_paddr = ph.p_vaddr = UINT64_MAX - 3;
  SetPhdr(elf, 1, ph);
  EXPECT_THAT(Load(elf), StatusIs(absl::StatusCode::kInvalidArgument,
                                  HasSubstr("wraps around")));
}

TEST_F(ElfLoaderTest, RejectsTooLargeFile) {
  auto elf = ValidImage();
  ElfLoadLimits limits;
  limits.max_file_bytes = elf.size() - 1;
  EXPECT_THAT(Load(elf, limits), StatusIs(absl::StatusCode::kOutOfRange,
                                          HasSubstr("exceeds the limit")));
}

TEST_F(ElfLoaderTest, RejectsOverlappingSegments) {
  auto elf = ValidImage();
  auto ph = GetPhdr(elf, 1);
  ph.p_paddr = ph.p_vaddr = MMV_IMAGE_GPA + 0x1ffc;  // inside the first segment's bss
  SetPhdr(elf, 1, ph);
  EXPECT_THAT(Load(elf), StatusIs(absl::StatusCode::kInvalidArgument,
                                  HasSubstr("overlaps PT_LOAD [0x100000, 0x102000)")));
}

TEST_F(ElfLoaderTest, RejectsEntryOutsideExecutableSegment) {
  auto elf = ValidImage();
  auto ehdr = GetEhdr(elf);
  ehdr.e_entry = MMV_IMAGE_GPA + 0x3000;  // the data segment (not PF_X)
  SetEhdr(elf, ehdr);
  EXPECT_THAT(Load(elf), StatusIs(absl::StatusCode::kInvalidArgument,
                                  HasSubstr("e_entry 0x103000 is not inside")));
}

// The text segment holds 3 file bytes and is zero-filled to 0x2000: an entry there would
// run zeros. The last file byte is still a valid entry.
TEST_F(ElfLoaderTest, RejectsEntryInTheZeroFilledPartOfTheTextSegment) {
  auto elf = ValidImage();
  auto ehdr = GetEhdr(elf);
  ehdr.e_entry = MMV_IMAGE_GPA + 3;
  SetEhdr(elf, ehdr);
  EXPECT_THAT(Load(elf), StatusIs(absl::StatusCode::kInvalidArgument,
                                  HasSubstr("e_entry 0x100003 lies in the zero-filled part "
                                            "[0x100003, 0x102000) of PT_LOAD [0x100000, "
                                            "0x102000)")));
  EXPECT_TRUE(RamUntouched());
  ehdr.e_entry = MMV_IMAGE_GPA + 2;
  SetEhdr(elf, ehdr);
  ASSERT_OK_AND_ASSIGN(LoadedImage image, Load(elf));
  EXPECT_EQ(image.entry, MMV_IMAGE_GPA + 2);
}

TEST_F(ElfLoaderTest, RejectsVirtualAddressDifferentFromPhysical) {
  auto elf = ValidImage();
  auto ph = GetPhdr(elf, 0);
  ph.p_vaddr = 0xffffffff80000000ull;
  SetPhdr(elf, 0, ph);
  EXPECT_THAT(Load(elf), StatusIs(absl::StatusCode::kInvalidArgument,
                                  HasSubstr("p_vaddr 0xffffffff80000000 != p_paddr")));
}

TEST_F(ElfLoaderTest, RejectsImageWithoutLoadableSegment) {
  auto elf = BuildElf(MMV_IMAGE_GPA, {SegmentSpec{PT_NOTE, PF_R, 0, BootModeNote(0), 0}});
  EXPECT_THAT(Load(elf), StatusIs(absl::StatusCode::kInvalidArgument,
                                  HasSubstr("no PT_LOAD segment")));
}

TEST_F(ElfLoaderTest, RejectsBadBootModeNotes) {
  auto unknown = BuildElf(MMV_IMAGE_GPA,
                          {SegmentSpec{PT_LOAD, PF_R | PF_X, MMV_IMAGE_GPA, {1}, 0},
                           SegmentSpec{PT_NOTE, PF_R, 0, BootModeNote(7), 0}});
  EXPECT_THAT(Load(unknown), StatusIs(absl::StatusCode::kInvalidArgument,
                                      HasSubstr("unknown mode 7")));
  auto short_desc = BuildElf(MMV_IMAGE_GPA,
                             {SegmentSpec{PT_LOAD, PF_R | PF_X, MMV_IMAGE_GPA, {1}, 0},
                              SegmentSpec{PT_NOTE, PF_R, 0, Note("mmuvisor", 1, {1, 0}), 0}});
  EXPECT_THAT(Load(short_desc), StatusIs(absl::StatusCode::kInvalidArgument,
                                         HasSubstr("n_descsz 2, want 4")));
  auto note = BootModeNote(MMV_BOOT_MODE_REAL16);
  note[0] = 200;  // n_namesz runs past the segment
  auto overrun = BuildElf(MMV_IMAGE_GPA,
                          {SegmentSpec{PT_LOAD, PF_R | PF_X, MMV_IMAGE_GPA, {1}, 0},
                           SegmentSpec{PT_NOTE, PF_R, 0, note, 0}});
  EXPECT_THAT(Load(overrun), StatusIs(absl::StatusCode::kInvalidArgument,
                                      HasSubstr("run past the segment")));
}

// Two boot-mode notes that disagree (in one PT_NOTE or in two) are rejected, whichever
// comes first; the same mode twice is harmless.
TEST_F(ElfLoaderTest, RejectsBootModeNotesThatDisagree) {
  const auto real = BootModeNote(MMV_BOOT_MODE_REAL16);
  const auto long64 = BootModeNote(MMV_BOOT_MODE_LONG64);
  const SegmentSpec text{PT_LOAD, PF_R | PF_X, MMV_REAL_MODE_LOAD_GPA, {0xf4}, 0};
  auto two_segments =
      BuildElf(MMV_REAL_MODE_LOAD_GPA, {text, SegmentSpec{PT_NOTE, PF_R, 0, real, 0},
                                        SegmentSpec{PT_NOTE, PF_R, 0, long64, 0}});
  EXPECT_THAT(Load(two_segments),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("two mmuvisor boot-mode notes disagree: real16, then long64")));
  auto one_segment = long64;
  one_segment.insert(one_segment.end(), real.begin(), real.end());
  auto together = BuildElf(MMV_REAL_MODE_LOAD_GPA,
                           {text, SegmentSpec{PT_NOTE, PF_R, 0, one_segment, 0}});
  EXPECT_THAT(Load(together),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("two mmuvisor boot-mode notes disagree: long64, then real16")));
  EXPECT_TRUE(RamUntouched());
  auto same = BuildElf(MMV_REAL_MODE_LOAD_GPA, {text, SegmentSpec{PT_NOTE, PF_R, 0, real, 0},
                                                SegmentSpec{PT_NOTE, PF_R, 0, real, 0}});
  ASSERT_OK_AND_ASSIGN(LoadedImage image, Load(same));
  EXPECT_EQ(image.mode, BootMode::kReal16);
}

}  // namespace
}  // namespace mmuvisor::vmm
