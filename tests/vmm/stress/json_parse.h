// JsonParser: the documents the stress runner writes (report and trace) parsed back into a
// plain tree, so tests check structure, not substrings. The parsing is nlohmann-json's
// (strict: invalid UTF-8, raw control characters or trailing text are errors); this header
// only turns its value into `Json`, whose fields the tests read directly. Objects keep key
// order irrelevant (std::map); numbers are doubles. Errors: InvalidArgument with the
// parser's message (it names the byte offset).
#ifndef MMUVISOR_TESTS_STRESS_JSON_PARSE_H_
#define MMUVISOR_TESTS_STRESS_JSON_PARSE_H_

#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"

namespace mmuvisor::testing {

struct Json {
  enum Kind { kNull, kBool, kNumber, kString, kArray, kObject } kind = kNull;
  bool boolean = false;
  double number = 0;
  std::string string;
  std::vector<Json> array;
  std::map<std::string, Json> object;

  bool Has(const std::string& key) const { return kind == kObject && object.count(key) != 0; }
  const Json& operator[](const std::string& key) const { return object.at(key); }
};

class JsonParser {
 public:
  static absl::StatusOr<Json> Parse(const std::string& text) {
    try {
      return From(nlohmann::json::parse(text));
    } catch (const nlohmann::json::parse_error& e) {
      return absl::InvalidArgumentError(absl::StrCat("JSON parse error: ", e.what()));
    }
  }

 private:
  static Json From(const nlohmann::json& value) {
    Json out;
    switch (value.type()) {
      case nlohmann::json::value_t::boolean:
        out.kind = Json::kBool;
        out.boolean = value.get<bool>();
        break;
      case nlohmann::json::value_t::number_integer:
      case nlohmann::json::value_t::number_unsigned:
      case nlohmann::json::value_t::number_float:
        out.kind = Json::kNumber;
        out.number = value.get<double>();
        break;
      case nlohmann::json::value_t::string:
        out.kind = Json::kString;
        out.string = value.get<std::string>();
        break;
      case nlohmann::json::value_t::array:
        out.kind = Json::kArray;
        for (const nlohmann::json& element : value) out.array.push_back(From(element));
        break;
      case nlohmann::json::value_t::object:
        out.kind = Json::kObject;
        for (const auto& [key, element] : value.items()) out.object[key] = From(element);
        break;
      default:  // null, discarded, binary (never produced by parse of text)
        break;
    }
    return out;
  }
};

}  // namespace mmuvisor::testing

#endif  // MMUVISOR_TESTS_STRESS_JSON_PARSE_H_
