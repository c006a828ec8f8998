// The JSON the stress runner writes — the --json report (stress_result.cc) and the --trace
// file (trace_log.cc) — is built with nlohmann-json; this header holds what both share:
// the document type (insertion-ordered, so fields come out in the order they are set),
// how a document is serialised, the precision of fractional numbers, addresses as hex
// strings, and writing the file.
// nlohmann-json is a PRIVATE dependency of vmm_stress: include this header from the
// library's .cc files only, never from a header others include.
// Plain functions, no state: any thread.
#ifndef MMUVISOR_VMM_STRESS_JSON_OUTPUT_H_
#define MMUVISOR_VMM_STRESS_JSON_OUTPUT_H_

#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace mmuvisor::vmm::stress {

using JsonDoc = nlohmann::ordered_json;

// `doc` as compact JSON text. Strings are escaped by nlohmann-json (quotes, backslashes,
// control characters); bytes that are not valid UTF-8 (a guest's or an OS thread's name
// may hold any) are written as U+FFFD instead of throwing, so any string gives valid JSON.
// Non-finite numbers are written as null.
std::string DumpJson(const JsonDoc& doc);

// `value` rounded to 3 decimals (milliseconds of a value in seconds, nanoseconds of one in
// microseconds): the precision the reports have always had, without float noise.
double ThreeDecimals(double value);

// "0x1f000": how the documents write addresses and data words.
std::string HexString(uint64_t value);

// Writes `text` to `path` (created or truncated). Never waits for a FIFO's reader: a FIFO
// with none is an error (ENXIO). Errors name the path and errno.
absl::Status WriteTextFile(const std::string& path, absl::string_view text);

// Checks before a run that `path` can be written after it, leaving an existing file as it
// is (opened for writing, not truncated). A missing file is created empty and *created
// set, so that the caller can remove it if the run never writes it. A FIFO with no reader
// is refused at once (ENXIO), not waited for. Errors name errno.
absl::Status CheckWritable(const std::string& path, bool* created);

}  // namespace mmuvisor::vmm::stress

#endif  // MMUVISOR_VMM_STRESS_JSON_OUTPUT_H_
