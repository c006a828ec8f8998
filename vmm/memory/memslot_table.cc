#include "vmm/memory/memslot_table.h"

#include <algorithm>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_format.h"
#include "notifier/base/status_macros.h"

namespace mmuvisor::vmm {
namespace {

std::string Describe(const GuestMemorySlot& s) {
  return absl::StrFormat("slot=%u gpa=%#x size=%#x hva=%#x", s.slot, s.gpa.value, s.size.value,
                         s.hva.value);
}

absl::Status Invalid(const GuestMemorySlot& s, absl::string_view why) {
  return absl::InvalidArgumentError(absl::StrFormat("memslot %s: %s", Describe(s), why));
}

absl::Status CheckOne(const GuestMemorySlot& s, const MemslotLimits& limits) {
  if (s.size.value == 0) return Invalid(s, "size is zero");
  if (!IsPageAligned(s.gpa.value)) return Invalid(s, "gpa is not page aligned");
  if (!IsPageAligned(s.size.value)) return Invalid(s, "size is not page aligned");
  if (!IsPageAligned(s.hva.value)) return Invalid(s, "hva is not page aligned");
  if (s.gpa.value + s.size.value < s.gpa.value) return Invalid(s, "guest range wraps around");
  if (s.hva.value + s.size.value < s.hva.value) return Invalid(s, "host range wraps around");
  if (s.gpa.value + s.size.value > limits.max_gpa) {
    return Invalid(s, absl::StrFormat("guest range ends above the limit %#x", limits.max_gpa));
  }
  if (s.size.value / kPageSize > limits.max_slot_pages) {
    return Invalid(s, absl::StrFormat("larger than KVM's %u pages per slot",
                                      limits.max_slot_pages));
  }
  if (s.slot >= limits.max_slots) {
    return Invalid(s, absl::StrFormat("slot id beyond KVM's %u slots", limits.max_slots));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<MemslotTable> MemslotTable::Create(std::vector<GuestMemorySlot> slots,
                                                  const MemslotLimits& limits) {
  if (slots.size() > limits.max_slots) {
    return absl::ResourceExhaustedError(absl::StrFormat(
        "%u memslots requested, KVM allows %u", slots.size(), limits.max_slots));
  }
  absl::flat_hash_set<uint32_t> ids;
  for (const GuestMemorySlot& s : slots) {
    MMUVISOR_RETURN_IF_ERROR(CheckOne(s, limits));
    if (!ids.insert(s.slot).second) return Invalid(s, "slot id used twice");
  }
  std::sort(slots.begin(), slots.end(),
            [](const GuestMemorySlot& a, const GuestMemorySlot& b) { return a.gpa < b.gpa; });
  for (size_t i = 1; i < slots.size(); ++i) {
    if (slots[i].gpa < slots[i - 1].end()) {
      return Invalid(slots[i], absl::StrFormat("guest range overlaps memslot %s",
                                               Describe(slots[i - 1])));
    }
  }
  return MemslotTable(std::move(slots));
}

const GuestMemorySlot* MemslotTable::Find(Gpa gpa) const {
  // First slot whose end is above gpa; it holds gpa if it starts at or below it.
  auto it = std::upper_bound(slots_.begin(), slots_.end(), gpa,
                             [](Gpa g, const GuestMemorySlot& s) { return g < s.end(); });
  if (it == slots_.end() || gpa < it->gpa) return nullptr;
  return &*it;
}

const GuestMemorySlot* MemslotTable::FindId(uint32_t slot) const {
  for (const GuestMemorySlot& s : slots_) {
    if (s.slot == slot) return &s;
  }
  return nullptr;
}

std::optional<Hva> MemslotTable::Translate(Gpa gpa, ByteSize size) const {
  const GuestMemorySlot* s = Find(gpa);
  if (s == nullptr) return std::nullopt;
  const uint64_t offset = gpa.value - s->gpa.value;
  // offset < s->size here, so the subtraction cannot underflow and no addition can wrap.
  uint64_t room = s->size.value - offset;
  uint64_t left = size.value;
  // Past this slot's end the range goes on only into a slot that continues it in both
  // spaces (guest RAM carved into slots, `--slots N`); a gap or a jump in either ends it.
  for (auto it = slots_.begin() + (s - slots_.data()); left > room;) {
    left -= room;
    const auto next = it + 1;
    if (next == slots_.end() || next->gpa.value != it->gpa.value + it->size.value ||
        next->hva.value != it->hva.value + it->size.value) {
      return std::nullopt;
    }
    it = next;
    room = it->size.value;
  }
  return s->hva + ByteSize{offset};
}

std::optional<Gpa> MemslotTable::Reverse(Hva hva) const {
  for (const GuestMemorySlot& s : slots_) {  // sorted by gpa: the first is the lowest
    if (hva >= s.hva && hva.value - s.hva.value < s.size.value) {
      return s.gpa + ByteSize{hva.value - s.hva.value};
    }
  }
  return std::nullopt;
}

std::vector<Gpa> MemslotTable::GpasOf(Hva hva) const {
  std::vector<Gpa> gpas;
  for (const GuestMemorySlot& s : slots_) {
    if (hva >= s.hva && hva.value - s.hva.value < s.size.value) {
      gpas.push_back(s.gpa + ByteSize{hva.value - s.hva.value});
    }
  }
  return gpas;
}

}  // namespace mmuvisor::vmm
