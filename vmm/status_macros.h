// RETURN_IF_ERROR / ASSIGN_OR_RETURN: the one small local copy of the status macros this
// Abseil (20220623) lacks. Guarded so another layer's identical copy cannot clash.
//
//   RETURN_IF_ERROR(vm.SetTssAddr(...));
//   ASSIGN_OR_RETURN(KvmVm vm, system.CreateVm());
#ifndef MMUVISOR_VMM_STATUS_MACROS_H_
#define MMUVISOR_VMM_STATUS_MACROS_H_

#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#ifndef RETURN_IF_ERROR
#define RETURN_IF_ERROR(expr)                          \
  do {                                                 \
    if (::absl::Status status_ = (expr); !status_.ok()) \
      return status_;                                  \
  } while (0)
#endif

#ifndef ASSIGN_OR_RETURN
#define MMUVISOR_STATUS_CONCAT_INNER_(a, b) a##b
#define MMUVISOR_STATUS_CONCAT_(a, b) MMUVISOR_STATUS_CONCAT_INNER_(a, b)
#define ASSIGN_OR_RETURN(lhs, expr) \
  MMUVISOR_ASSIGN_OR_RETURN_IMPL_(MMUVISOR_STATUS_CONCAT_(status_or_, __LINE__), lhs, expr)
#define MMUVISOR_ASSIGN_OR_RETURN_IMPL_(tmp, lhs, expr) \
  auto tmp = (expr);                                    \
  if (!tmp.ok()) return std::move(tmp).status();        \
  lhs = std::move(tmp).value()
#endif

#endif  // MMUVISOR_VMM_STATUS_MACROS_H_
