// ReadFileOrEmpty: a whole file as a string, for tests that check what a run wrote (JSON
// reports, traces, dumps). An unreadable or missing file reads as "" — the caller's
// expectations on the content then fail and name what was missing.
#ifndef MMUVISOR_TESTS_SUPPORT_READ_FILE_H_
#define MMUVISOR_TESTS_SUPPORT_READ_FILE_H_

#include <fstream>
#include <iterator>
#include <string>

namespace mmuvisor::testing {

inline std::string ReadFileOrEmpty(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

}  // namespace mmuvisor::testing

#endif  // MMUVISOR_TESTS_SUPPORT_READ_FILE_H_
