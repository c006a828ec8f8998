// JsonWriter: a small streaming JSON writer (objects, arrays, strings with escaping,
// integers, doubles) for the stress report and the trace. Commas and nesting are tracked
// by the writer; a mismatched End*() is a programmer bug (assert).
// Not thread-safe: one writer per thread.
#ifndef MMUVISOR_VMM_STRESS_JSON_WRITER_H_
#define MMUVISOR_VMM_STRESS_JSON_WRITER_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace mmuvisor::vmm::stress {

class JsonWriter {
 public:
  JsonWriter& BeginObject();
  JsonWriter& EndObject();
  JsonWriter& BeginArray();
  JsonWriter& EndArray();
  // Inside an object: the next value's key.
  JsonWriter& Key(absl::string_view key);
  JsonWriter& String(absl::string_view value);
  JsonWriter& Uint(uint64_t value);
  JsonWriter& Int(int64_t value);
  JsonWriter& Double(double value);  // 3 decimals; non-finite values are written as null
  JsonWriter& Bool(bool value);
  // The document. REQUIRES: every Begin has its End.
  std::string Take();

 private:
  void BeforeValue();
  void Escaped(absl::string_view text);

  std::string out_;
  // One entry per open container: true once it holds an element (a comma is due).
  std::vector<bool> has_element_;
  bool after_key_ = false;
};

// Writes `text` to `path` (created or truncated). Errors name the path and errno.
absl::Status WriteTextFile(const std::string& path, absl::string_view text);

}  // namespace mmuvisor::vmm::stress

#endif  // MMUVISOR_VMM_STRESS_JSON_WRITER_H_
