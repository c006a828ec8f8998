// MMUVISOR_RETURN_IF_ERROR / MMUVISOR_ASSIGN_OR_RETURN: the early returns on a failed
// absl::Status / absl::StatusOr that this Abseil (20220623) does not ship. Prefixed, so they
// cannot clash with another library's RETURN_IF_ERROR.
//
//   MMUVISOR_RETURN_IF_ERROR(vm.SetTssAddr(...));
//   MMUVISOR_ASSIGN_OR_RETURN(KvmVm vm, system.CreateVm());
//
// Both return the status unchanged: add context where it is produced (the callee's message
// names the operation and its arguments), not by wrapping it here.
#ifndef MMUVISOR_NOTIFIER_BASE_STATUS_MACROS_H_
#define MMUVISOR_NOTIFIER_BASE_STATUS_MACROS_H_

#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define MMUVISOR_RETURN_IF_ERROR(expr)                            \
  do {                                                            \
    if (::absl::Status mmuvisor_status_ = (expr); !mmuvisor_status_.ok()) \
      return mmuvisor_status_;                                    \
  } while (0)

#define MMUVISOR_STATUS_CONCAT_INNER_(a, b) a##b
#define MMUVISOR_STATUS_CONCAT_(a, b) MMUVISOR_STATUS_CONCAT_INNER_(a, b)
#define MMUVISOR_ASSIGN_OR_RETURN(lhs, expr) \
  MMUVISOR_ASSIGN_OR_RETURN_IMPL_(MMUVISOR_STATUS_CONCAT_(mmuvisor_status_or_, __LINE__), lhs, expr)
#define MMUVISOR_ASSIGN_OR_RETURN_IMPL_(tmp, lhs, expr) \
  auto tmp = (expr);                                    \
  if (!tmp.ok()) return std::move(tmp).status();        \
  lhs = std::move(tmp).value()

#endif  // MMUVISOR_NOTIFIER_BASE_STATUS_MACROS_H_
