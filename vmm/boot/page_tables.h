// BuildIdentityPageTables: 4-level x86-64 page tables mapping guest-physical [0, ram.size)
// one-to-one (virtual == physical), present + writable + user (U bit at every level, so CPL3
// code reaches all of RAM), built inside [MMV_PAGE_TABLE_GPA, MMV_PAGE_TABLE_END_GPA).
// Accessed is set at every level and Dirty on every leaf, so no page walk writes an entry
// (page_tables.cc says why that matters on a shadow-paging KVM).
//
// Layout: one PML4 page, one PDPT page per 512 GiB, one PD page per GiB, 2 MiB pages.
// The first 2 MiB go through a 4 KiB page table so that page 0 stays NOT present (a null
// dereference faults); a tail of RAM that is not a multiple of 2 MiB also gets a 4 KiB
// table, so nothing beyond RAM is mapped. No 1 GiB pages (kvm_pvm's supported CPUID lacks PDPE1GB).
// NX is not used (EFER.NXE stays clear).
//
// Extra windows (guest-physical ranges beyond RAM that memslots may cover: aliases of RAM,
// a spare slot that comes and goes) are mapped one-to-one too, with 2 MiB pages, whether
// or not a slot is there when the guest touches them (no slot: KVM exits to the VMM).
//
// Pure: writes guest RAM only. REQUIRES: no vCPU runs while the tables are built.
#ifndef MMUVISOR_VMM_BOOT_PAGE_TABLES_H_
#define MMUVISOR_VMM_BOOT_PAGE_TABLES_H_

#include <cstdint>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "vmm/boot/guest_ram.h"

namespace mmuvisor::vmm {

// x86 page-table entry bits used by the builder (and by tests that walk the tables).
inline constexpr uint64_t kPtePresent = 1ull << 0;
inline constexpr uint64_t kPteWritable = 1ull << 1;
inline constexpr uint64_t kPteUser = 1ull << 2;
inline constexpr uint64_t kPteAccessed = 1ull << 5;  // set at every level by the builder
inline constexpr uint64_t kPteDirty = 1ull << 6;     // set on every leaf by the builder
inline constexpr uint64_t kPteLargePage = 1ull << 7;  // PS bit in a PD entry: 2 MiB page
inline constexpr uint64_t kPteAddressMask = 0x000ffffffffff000ull;

// A guest-physical window [gpa, gpa + size) beyond RAM, mapped one-to-one.
struct IdentityWindow {
  uint64_t gpa = 0;
  uint64_t size = 0;
};

// Builds the tables and returns CR3 (the PML4's guest-physical address, MMV_PAGE_TABLE_GPA).
// Errors: InvalidArgument if ram.size is 0 or not a multiple of 4 KiB, or RAM does not reach
// MMV_PAGE_TABLE_END_GPA, or a window is empty, not 2 MiB aligned, overlaps RAM or ends
// above 2^46; ResourceExhausted if RAM and the windows need more tables than the area holds
// (RAM alone: about 237 GiB).
absl::StatusOr<uint64_t> BuildIdentityPageTables(const GuestRamView& ram,
                                                 absl::Span<const IdentityWindow> windows = {});

// Software walk of the tables built above, for tests and diagnostics: translates a guest
// virtual address through the tables at `cr3`. Returns the physical address and sets
// `*user` to whether every level had the U bit; NotFound when a level is not present;
// OutOfRange when a table lies outside RAM.
absl::StatusOr<uint64_t> WalkPageTables(const GuestRamView& ram, uint64_t cr3, uint64_t gva,
                                        bool* user);

}  // namespace mmuvisor::vmm

#endif  // MMUVISOR_VMM_BOOT_PAGE_TABLES_H_
