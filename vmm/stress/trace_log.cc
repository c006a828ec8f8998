#include "vmm/stress/trace_log.h"

#include <pthread.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"
#include "vmm/stress/json_output.h"

namespace mmuvisor::vmm::stress {
namespace {

std::atomic<uint64_t> next_log_id{1};

uint64_t SteadyNs() {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                   std::chrono::steady_clock::now().time_since_epoch())
                                   .count());
}

// The last log this thread recorded into and its buffer there.
struct ThreadCache {
  uint64_t log_id = 0;
  void* buffer = nullptr;
};
thread_local ThreadCache tls_cache;

// The row of a thread that records before anyone named it in this log: the threads the
// VMM starts for itself, named by their OS thread name (pthread_setname_np) in the user's
// words. Those names are set by vmm/vcpu/vcpu_runner.cc ("vcpu<N>"),
// vmm/host/reclaim_driver.cc ("reclaimd") and vmm/paging/page_server.cc ("<prefix>-<N>":
// "hostpg" for HostAddressSpace's page server, "pgsrv" by default). Any other thread keeps
// a "thread-<N>" row, its OS name beside it: a row the runner forgot to name, which the
// stress tests catch.
std::string DefaultRowName(uint32_t thread_number) {
  char buffer[16] = {};  // the kernel's TASK_COMM_LEN
  if (pthread_getname_np(pthread_self(), buffer, sizeof(buffer)) != 0) buffer[0] = '\0';
  absl::string_view os_name(buffer);
  uint32_t index = 0;
  if (absl::ConsumePrefix(&os_name, "vcpu") && absl::SimpleAtoi(os_name, &index)) {
    return absl::StrCat("vCPU ", index);
  }
  os_name = buffer;
  if (os_name == "reclaimd") return "reclaim driver";
  if ((absl::ConsumePrefix(&os_name, "hostpg-") || absl::ConsumePrefix(&os_name, "pgsrv-")) &&
      absl::SimpleAtoi(os_name, &index)) {
    return absl::StrCat("page server ", index);
  }
  return absl::StrCat("thread-", thread_number, " (", buffer, ")");
}

}  // namespace

TraceLog::TraceLog(bool enabled)
    : enabled_(enabled),
      // relaxed: only uniqueness matters.
      id_(next_log_id.fetch_add(1, std::memory_order_relaxed)),
      origin_ns_(SteadyNs()) {}

TraceLog::~TraceLog() = default;

uint64_t TraceLog::NowNs() const { return SteadyNs() - origin_ns_; }

TraceLog::ThreadBuffer* TraceLog::Buffer() {
  if (tls_cache.log_id == id_) return static_cast<ThreadBuffer*>(tls_cache.buffer);
  ThreadBuffer* buffer = NewBuffer();
  tls_cache = ThreadCache{id_, buffer};
  return buffer;
}

TraceLog::ThreadBuffer* TraceLog::NewBuffer() {
  MutexLock lock(&mu_);
  auto buffer = std::make_unique<ThreadBuffer>();
  buffer->track = next_track_++ << 4;
  buffer->events.reserve(4096);
  track_names_.emplace(buffer->track, DefaultRowName(buffer->track >> 4));
  buffers_.push_back(std::move(buffer));
  return buffers_.back().get();
}

uint32_t TraceLog::ThreadTrack() { return Buffer()->track; }

void TraceLog::NameTrack(uint32_t track, const std::string& name) {
  MutexLock lock(&mu_);
  track_names_[track] = name;
}

void TraceLog::NameThisThread(const std::string& name) {
  if (!enabled_) return;
  NameTrack(ThreadTrack(), name);
}

uint32_t TraceLog::TrackFor(uint32_t slot, const std::string& name) {
  const uint32_t base = ThreadTrack();
  const uint32_t track = base | (1u + slot % 15u);  // low bits 0: the thread's own row
  MutexLock lock(&mu_);
  auto it = track_names_.find(track);
  if (it == track_names_.end()) {
    const auto thread_name = track_names_.find(base);
    track_names_.emplace(
        track, absl::StrCat(thread_name == track_names_.end() ? "" : thread_name->second,
                            " / ", name));
  }
  return track;
}

void TraceLog::Complete(const char* category, const char* name, uint64_t start_ns,
                        uint64_t dur_ns, const char* arg0_name, uint64_t arg0,
                        const char* arg1_name, uint64_t arg1, uint32_t track) {
  if (!enabled_) return;
  ThreadBuffer* buffer = Buffer();
  buffer->events.push_back(TraceEvent{'X', track != 0 ? track : buffer->track, name, category,
                                      start_ns, dur_ns, arg0, arg1, arg0_name, arg1_name});
}

void TraceLog::Instant(const char* category, const char* name, const char* arg0_name,
                       uint64_t arg0, uint32_t track) {
  if (!enabled_) return;
  ThreadBuffer* buffer = Buffer();
  buffer->events.push_back(TraceEvent{'i', track != 0 ? track : buffer->track, name, category,
                                      NowNs(), 0, arg0, 0, arg0_name, nullptr});
}

void TraceLog::Counter(const char* name, const char* series, uint64_t value) {
  if (!enabled_) return;
  ThreadBuffer* buffer = Buffer();
  buffer->events.push_back(
      TraceEvent{'C', buffer->track, name, "counter", NowNs(), 0, value, 0, series, nullptr});
}

std::vector<TraceEvent> TraceLog::Events() const {
  std::vector<TraceEvent> all;
  MutexLock lock(&mu_);
  for (const auto& buffer : buffers_) {
    all.insert(all.end(), buffer->events.begin(), buffer->events.end());
  }
  std::stable_sort(all.begin(), all.end(), [](const TraceEvent& a, const TraceEvent& b) {
    return a.ts_ns < b.ts_ns;
  });
  return all;
}

// Built one event at a time: each event is a small JSON object serialised and appended,
// so a long run's trace never holds a JSON tree of all its events at once (only the
// TraceEvent copies and the text). The envelope around the events is fixed text.
std::string TraceLog::ToJson() const {
  const std::vector<TraceEvent> events = Events();
  std::string out = R"({"displayTimeUnit":"ns","traceEvents":[)";
  bool first = true;
  const auto append = [&](const JsonDoc& event) {
    if (!first) out += ',';
    first = false;
    out += DumpJson(event);
  };
  {
    MutexLock lock(&mu_);
    for (const auto& [track, name] : track_names_) {
      append({{"ph", "M"},
              {"name", "thread_name"},
              {"pid", 1},
              {"tid", track},
              {"args", {{"name", name}}}});
    }
  }
  for (const TraceEvent& e : events) {
    JsonDoc event = {{"ph", std::string(1, e.phase)},
                     {"name", e.name},
                     {"cat", e.category},
                     {"pid", 1},
                     {"tid", e.track},
                     // microseconds
                     {"ts", static_cast<double>(e.ts_ns) / 1000.0}};
    if (e.phase == 'X') event["dur"] = static_cast<double>(e.dur_ns) / 1000.0;
    if (e.phase == 'i') event["s"] = "t";
    if (e.phase == 'C') {
      event["args"] = {{e.arg0_name, e.arg0}};  // a number: the counter's value
    } else if (e.arg0_name != nullptr || e.arg1_name != nullptr) {
      JsonDoc& args = event["args"] = JsonDoc::object();
      if (e.arg0_name != nullptr) args[e.arg0_name] = HexString(e.arg0);
      if (e.arg1_name != nullptr) args[e.arg1_name] = HexString(e.arg1);
    }
    append(event);
  }
  out += "]}";
  return out;
}

absl::Status TraceLog::WriteJson(const std::string& path) const {
  return WriteTextFile(path, ToJson());
}

}  // namespace mmuvisor::vmm::stress
