#include "vmm/stress/trace_log.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>

#include "absl/strings/str_cat.h"
#include "vmm/stress/json_writer.h"

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
  track_names_.emplace(buffer->track, absl::StrCat("thread-", buffer->track >> 4));
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

std::string TraceLog::ToJson() const {
  const std::vector<TraceEvent> events = Events();
  JsonWriter json;
  json.BeginObject();
  json.Key("displayTimeUnit").String("ns");
  json.Key("traceEvents").BeginArray();
  {
    MutexLock lock(&mu_);
    for (const auto& [track, name] : track_names_) {
      json.BeginObject();
      json.Key("ph").String("M");
      json.Key("name").String("thread_name");
      json.Key("pid").Uint(1);
      json.Key("tid").Uint(track);
      json.Key("args").BeginObject().Key("name").String(name).EndObject();
      json.EndObject();
    }
  }
  for (const TraceEvent& e : events) {
    json.BeginObject();
    json.Key("ph").String(std::string(1, e.phase));
    json.Key("name").String(e.name);
    json.Key("cat").String(e.category);
    json.Key("pid").Uint(1);
    json.Key("tid").Uint(e.track);
    json.Key("ts").Double(static_cast<double>(e.ts_ns) / 1000.0);  // microseconds
    if (e.phase == 'X') json.Key("dur").Double(static_cast<double>(e.dur_ns) / 1000.0);
    if (e.phase == 'i') json.Key("s").String("t");
    if (e.arg0_name != nullptr || e.arg1_name != nullptr) {
      json.Key("args").BeginObject();
      if (e.arg0_name != nullptr) json.Key(e.arg0_name).String(absl::StrCat("0x", absl::Hex(e.arg0)));
      if (e.arg1_name != nullptr) json.Key(e.arg1_name).String(absl::StrCat("0x", absl::Hex(e.arg1)));
      json.EndObject();
    }
    json.EndObject();
  }
  json.EndArray();
  json.EndObject();
  return json.Take();
}

absl::Status TraceLog::WriteJson(const std::string& path) const {
  return WriteTextFile(path, ToJson());
}

}  // namespace mmuvisor::vmm::stress
