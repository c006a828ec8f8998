// A minimal JSON parser for tests: parses the documents the stress runner writes (report
// and trace) back into a tree so tests check structure, not substrings. Objects keep key
// order irrelevant (std::map); numbers are doubles. Errors: InvalidArgument with offset.
#ifndef MMUVISOR_TESTS_STRESS_JSON_PARSE_H_
#define MMUVISOR_TESTS_STRESS_JSON_PARSE_H_

#include <cctype>
#include <cstdlib>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"

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
    JsonParser p(text);
    Json value;
    if (!p.Value(value)) return p.Error();
    p.Space();
    if (p.pos_ != text.size()) return p.Error();
    return value;
  }

 private:
  explicit JsonParser(const std::string& text) : s_(text) {}
  absl::Status Error() const {
    return absl::InvalidArgumentError(absl::StrCat("JSON parse error at offset ", pos_));
  }
  void Space() {
    while (pos_ < s_.size() && std::isspace(static_cast<unsigned char>(s_[pos_]))) ++pos_;
  }
  bool Eat(char c) {
    Space();
    if (pos_ < s_.size() && s_[pos_] == c) {
      ++pos_;
      return true;
    }
    return false;
  }
  bool Literal(const char* word) {
    const std::string w(word);
    if (s_.compare(pos_, w.size(), w) != 0) return false;
    pos_ += w.size();
    return true;
  }
  bool String(std::string& out) {
    if (!Eat('"')) return false;
    while (pos_ < s_.size() && s_[pos_] != '"') {
      char c = s_[pos_++];
      if (c == '\\') {
        if (pos_ >= s_.size()) return false;
        const char e = s_[pos_++];
        switch (e) {
          case 'n': c = '\n'; break;
          case 't': c = '\t'; break;
          case 'r': c = '\r'; break;
          case 'u':
            if (pos_ + 4 > s_.size()) return false;
            c = static_cast<char>(std::strtol(s_.substr(pos_, 4).c_str(), nullptr, 16));
            pos_ += 4;
            break;
          default: c = e;
        }
      } else if (static_cast<unsigned char>(c) < 0x20) {
        return false;  // raw control characters are not allowed in JSON strings
      }
      out += c;
    }
    return Eat('"');
  }
  bool Value(Json& v) {
    Space();
    if (pos_ >= s_.size()) return false;
    const char c = s_[pos_];
    if (c == '{') {
      ++pos_;
      v.kind = Json::kObject;
      if (Eat('}')) return true;
      do {
        std::string key;
        Space();
        if (!String(key) || !Eat(':')) return false;
        Json child;
        if (!Value(child)) return false;
        v.object[key] = std::move(child);
      } while (Eat(','));
      return Eat('}');
    }
    if (c == '[') {
      ++pos_;
      v.kind = Json::kArray;
      if (Eat(']')) return true;
      do {
        Json child;
        if (!Value(child)) return false;
        v.array.push_back(std::move(child));
      } while (Eat(','));
      return Eat(']');
    }
    if (c == '"') {
      v.kind = Json::kString;
      return String(v.string);
    }
    if (Literal("true")) { v.kind = Json::kBool; v.boolean = true; return true; }
    if (Literal("false")) { v.kind = Json::kBool; return true; }
    if (Literal("null")) { v.kind = Json::kNull; return true; }
    char* end = nullptr;
    v.number = std::strtod(s_.c_str() + pos_, &end);
    if (end == s_.c_str() + pos_) return false;
    v.kind = Json::kNumber;
    pos_ = static_cast<size_t>(end - s_.c_str());
    return true;
  }

  const std::string& s_;
  size_t pos_ = 0;
};

}  // namespace mmuvisor::testing

#endif  // MMUVISOR_TESTS_STRESS_JSON_PARSE_H_
