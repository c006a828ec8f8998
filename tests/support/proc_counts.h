// What /proc/self says about this process, for leak checks: open file descriptors and
// threads. Header-only, for every test that checks it left nothing behind.
#ifndef MMUVISOR_TESTS_SUPPORT_PROC_COUNTS_H_
#define MMUVISOR_TESTS_SUPPORT_PROC_COUNTS_H_

#include <dirent.h>

#include <chrono>
#include <cstring>
#include <thread>

namespace mmuvisor::testing {

// Entries of a directory (without . and ..); -1 if it cannot be read.
inline int CountDirEntries(const char* path) {
  DIR* dir = opendir(path);
  if (dir == nullptr) return -1;
  int n = 0;
  while (dirent* e = readdir(dir)) {
    if (std::strcmp(e->d_name, ".") != 0 && std::strcmp(e->d_name, "..") != 0) ++n;
  }
  closedir(dir);
  return n;
}
inline int OpenFdCount() { return CountDirEntries("/proc/self/fd"); }
inline int ThreadCount() { return CountDirEntries("/proc/self/task"); }

// A joined thread may stay listed in /proc/self/task for a moment (join returns when the
// kernel clears its tid, before the task is reaped): waits until the count is at most
// `want`, for at most 5 s, and returns the last count seen. Use it for every count a leak
// check compares, the baseline included.
inline int SettledThreadCount(int want) {
  int n = ThreadCount();
  for (int i = 0; i < 500 && n > want; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    n = ThreadCount();
  }
  return n;
}

}  // namespace mmuvisor::testing

#endif  // MMUVISOR_TESTS_SUPPORT_PROC_COUNTS_H_
