// Splits a fuzz input into command-line words: one word per '\n'-terminated line (a last
// line without '\n' is a word too), bytes kept as they are (NULs included). Corpus files
// of the flag targets are therefore readable: one argv word per line.
#ifndef MMUVISOR_TESTS_FUZZ_FUZZ_WORDS_H_
#define MMUVISOR_TESTS_FUZZ_FUZZ_WORDS_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace mmuvisor::fuzz {

inline std::vector<std::string> SplitWords(const uint8_t* data, size_t size) {
  std::vector<std::string> words;
  size_t start = 0;
  for (size_t i = 0; i <= size; ++i) {
    if (i == size || data[i] == '\n') {
      if (i > start || i < size) {
        words.emplace_back(reinterpret_cast<const char*>(data) + start, i - start);
      }
      start = i + 1;
    }
  }
  return words;
}

}  // namespace mmuvisor::fuzz

#endif  // MMUVISOR_TESTS_FUZZ_FUZZ_WORDS_H_
