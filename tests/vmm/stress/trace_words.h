// TraceWordProblems: what in a stress run's Chrome trace is not in the user's words — a
// slice name or category spelled like an enum constant ("kClear": 'k' then an upper-case
// letter), a row left unnamed ("thread-7"), or events on a row with no name at all.
// Empty when the trace speaks the user's words. RowsOutsideTheSharedVocabulary: rows
// that are not the ones a KVM run and a host-thread run share.
#ifndef MMUVISOR_TESTS_STRESS_TRACE_WORDS_H_
#define MMUVISOR_TESTS_STRESS_TRACE_WORDS_H_

#include <cctype>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "json_parse.h"

namespace mmuvisor::testing {

inline bool LooksLikeEnumConstant(const std::string& word) {
  return word.size() >= 2 && word[0] == 'k' && std::isupper(static_cast<unsigned char>(word[1]));
}

inline bool LooksLikeUnnamedRow(const std::string& row) {
  return row.rfind("thread-", 0) == 0 && row.size() > 7 &&
         std::isdigit(static_cast<unsigned char>(row[7]));
}

inline std::vector<std::string> TraceWordProblems(const Json& trace) {
  std::vector<std::string> problems;
  std::set<double> named_rows;
  for (const Json& e : trace["traceEvents"].array) {
    if (e["ph"].string != "M") continue;
    const std::string& row = e["args"]["name"].string;
    named_rows.insert(e["tid"].number);
    if (LooksLikeUnnamedRow(row)) problems.push_back(absl::StrCat("unnamed row '", row, "'"));
  }
  for (const Json& e : trace["traceEvents"].array) {
    if (e["ph"].string == "M") continue;
    for (const char* field : {"name", "cat"}) {
      if (LooksLikeEnumConstant(e[field].string)) {
        problems.push_back(absl::StrCat("slice ", field, " '", e[field].string, "'"));
      }
    }
    if (named_rows.count(e["tid"].number) == 0) {
      problems.push_back(absl::StrCat("slice '", e["name"].string, "' on row ",
                                      e["tid"].number, ", which has no name"));
    }
  }
  // One line per distinct problem: a run repeats them by the thousand.
  std::set<std::string> distinct(problems.begin(), problems.end());
  return {distinct.begin(), distinct.end()};
}

// The rows both kinds of run name (before any " / <subscription>" part): the runner's
// threads, the host operations (vmm/host's reclaim driver, the host-op threads) and the
// VMM's own threads. A row outside them — e.g. "host reclaim", the host-thread mode's
// own reclaim pacer before both modes ran vmm/host's — is returned, once.
inline std::vector<std::string> RowsOutsideTheSharedVocabulary(const Json& trace) {
  static const std::set<std::string> kRows = {
      "stress main", "DMA engine", "reclaim driver",
      "host migrate", "host protect", "host oom-reap", "host memslot churn"};
  std::set<std::string> outside;
  for (const Json& e : trace["traceEvents"].array) {
    if (e["ph"].string != "M") continue;
    std::string row = e["args"]["name"].string;
    row = row.substr(0, row.find(" / "));
    if (kRows.count(row) != 0) continue;
    const bool numbered = (row.rfind("vCPU ", 0) == 0 && row.size() > 5 &&
                           std::isdigit(static_cast<unsigned char>(row[5]))) ||
                          (row.rfind("page server ", 0) == 0 && row.size() > 12 &&
                           std::isdigit(static_cast<unsigned char>(row[12])));
    if (!numbered) outside.insert(row);
  }
  return {outside.begin(), outside.end()};
}

}  // namespace mmuvisor::testing

#endif  // MMUVISOR_TESTS_STRESS_TRACE_WORDS_H_
