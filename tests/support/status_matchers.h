// Test matchers for absl::Status / absl::StatusOr, a small local copy of what newer Abseil
// ships as absl/status/status_matchers.h (this Abseil, 20220623, lacks it).
//
//   EXPECT_THAT(DoThing(), IsOk());
//   EXPECT_THAT(Parse(bad), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("slot")));
#ifndef MMUVISOR_TESTS_SUPPORT_STATUS_MATCHERS_H_
#define MMUVISOR_TESTS_SUPPORT_STATUS_MATCHERS_H_

#include <ostream>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "gmock/gmock.h"

namespace mmuvisor::testing {

inline const absl::Status& GetStatus(const absl::Status& status) { return status; }
template <typename T>
const absl::Status& GetStatus(const absl::StatusOr<T>& status_or) {
  return status_or.status();
}

MATCHER(IsOk, "is OK") {
  const absl::Status& s = GetStatus(arg);
  if (!s.ok()) *result_listener << "status is " << s.ToString();
  return s.ok();
}

MATCHER_P2(StatusIs, code, message_matcher,
           "has code " + ::testing::PrintToString(code) + " and a matching message") {
  const absl::Status& s = GetStatus(arg);
  *result_listener << "status is " << s.ToString();
  if (s.code() != code) return false;
  return ::testing::Matches(message_matcher)(std::string(s.message()));
}

}  // namespace mmuvisor::testing

// ASSERT_OK_AND_ASSIGN(lhs, expr): asserts expr (a StatusOr) is OK and moves its value.
#define MMUVISOR_TEST_CONCAT_INNER(a, b) a##b
#define MMUVISOR_TEST_CONCAT(a, b) MMUVISOR_TEST_CONCAT_INNER(a, b)
#define ASSERT_OK_AND_ASSIGN(lhs, expr) \
  ASSERT_OK_AND_ASSIGN_IMPL(MMUVISOR_TEST_CONCAT(status_or_, __LINE__), lhs, expr)
#define ASSERT_OK_AND_ASSIGN_IMPL(tmp, lhs, expr)             \
  auto tmp = (expr);                                          \
  ASSERT_TRUE(tmp.ok()) << tmp.status().ToString();           \
  lhs = std::move(tmp).value()
#define ASSERT_OK(expr) ASSERT_THAT((expr), ::mmuvisor::testing::IsOk())
#define EXPECT_OK(expr) EXPECT_THAT((expr), ::mmuvisor::testing::IsOk())

#endif  // MMUVISOR_TESTS_SUPPORT_STATUS_MATCHERS_H_
