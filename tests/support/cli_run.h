// RunCli: runs mmuvisor's command line in-process (cli::Main with `args` after the program
// name) and captures its exit code, stdout and stderr, for the tests that check what a
// user sees. Without temporary files for the streams it fails the test and returns code -1.
#ifndef MMUVISOR_TESTS_SUPPORT_CLI_RUN_H_
#define MMUVISOR_TESTS_SUPPORT_CLI_RUN_H_

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "vmm/cli/run_command.h"

namespace mmuvisor::vmm::cli {

struct CliRun {
  int code = -1;
  std::string out, err;
};

inline std::string SlurpFile(std::FILE* f) {
  std::rewind(f);
  std::string s;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof(buf), f)) > 0) s.append(buf, n);
  return s;
}

inline CliRun RunCli(std::vector<std::string> args) {
  args.insert(args.begin(), "mmuvisor");
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  CliRun r;
  std::FILE* out = std::tmpfile();
  std::FILE* err = out != nullptr ? std::tmpfile() : nullptr;
  if (err == nullptr) {
    const int e = errno;
    ADD_FAILURE() << "tmpfile for the CLI's " << (out == nullptr ? "stdout" : "stderr")
                  << ": " << std::strerror(e);
    if (out != nullptr) std::fclose(out);
    return r;  // code -1: no run
  }
  r.code = Main(static_cast<int>(argv.size()), argv.data(), out, err);
  r.out = SlurpFile(out);
  r.err = SlurpFile(err);
  std::fclose(out);
  std::fclose(err);
  return r;
}

}  // namespace mmuvisor::vmm::cli

#endif  // MMUVISOR_TESTS_SUPPORT_CLI_RUN_H_
