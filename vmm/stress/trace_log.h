// TraceLog: a Chrome/Perfetto trace (JSON trace-event format) recorded with nothing on
// the hot path but an append to the calling thread's own buffer.
//
// Each thread that records gets a ThreadBuffer the first time it touches a given TraceLog
// (one mutex acquisition, then a thread_local cache); afterwards Complete()/Instant() are
// a clock read and a vector push_back, no lock, no atomic RMW. A disabled log (the
// default when --trace is not given) returns before reading the clock.
// Tracks: events carry a track number; a track is a "thread" row in the viewer. Threads
// get a track from Register (their own row); callers may derive per-subscription rows from
// it (TrackFor). Names of tracks are written as thread_name metadata.
// The JSON (nlohmann-json, json_output.h) is built only by ToJson, never while recording.
//
// WriteJson() reads every buffer. REQUIRES: every recording thread has stopped recording
// (joined, or quiescent) — the buffers are unsynchronised by design.
// Threads: recording from any thread; NameTrack from any thread (locks mu_);
// WriteJson/events from the owner once recording has stopped.
#ifndef MMUVISOR_VMM_STRESS_TRACE_LOG_H_
#define MMUVISOR_VMM_STRESS_TRACE_LOG_H_

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "notifier/base/mutex.h"

namespace mmuvisor::vmm::stress {

struct TraceEvent {
  char phase = 'X';       // 'X' complete, 'i' instant, 'C' counter (arg0 a number)
  uint32_t track = 0;     // tid in the output
  const char* name = "";  // static strings only (no allocation on the hot path)
  const char* category = "";
  uint64_t ts_ns = 0;     // since the log's creation
  uint64_t dur_ns = 0;    // 'X' only
  uint64_t arg0 = 0, arg1 = 0;  // written as args {"a": ..., "b": ...} (hex addresses)
  const char* arg0_name = nullptr;
  const char* arg1_name = nullptr;
};

class TraceLog {
 public:
  explicit TraceLog(bool enabled);
  ~TraceLog();
  TraceLog(const TraceLog&) = delete;
  TraceLog& operator=(const TraceLog&) = delete;

  bool enabled() const { return enabled_; }
  // Nanoseconds since the log was created (steady clock).
  uint64_t NowNs() const;

  // The calling thread's own track: a new one on first use, named from the thread's OS
  // name when it is one the VMM gives its own threads ("vcpu3" is "vCPU 3", "reclaimd"
  // the "reclaim driver", "hostpg-0" "page server 0"), "thread-N (<OS name>)" otherwise
  // until NameThisThread names it. Cheap after the first call.
  uint32_t ThreadTrack();
  // A named row derived from the calling thread's track, e.g. one per subscription:
  // (thread number << 4) | (1 + slot % 15). Named once on first use.
  uint32_t TrackFor(uint32_t slot, const std::string& name);
  void NameThisThread(const std::string& name);

  // Hot path: append to this thread's buffer. No-ops when disabled.
  void Complete(const char* category, const char* name, uint64_t start_ns, uint64_t dur_ns,
                const char* arg0_name = nullptr, uint64_t arg0 = 0,
                const char* arg1_name = nullptr, uint64_t arg1 = 0, uint32_t track = 0);
  void Instant(const char* category, const char* name, const char* arg0_name = nullptr,
               uint64_t arg0 = 0, uint32_t track = 0);
  // A counter track `name` (Chrome "C" event): `series` is `value` from now on.
  void Counter(const char* name, const char* series, uint64_t value);

  // All events so far, sorted by time. REQUIRES: recording stopped.
  std::vector<TraceEvent> Events() const ABSL_LOCKS_EXCLUDED(mu_);
  // {"traceEvents": [...], "displayTimeUnit": "ns"} with thread_name metadata.
  // REQUIRES: recording stopped.
  std::string ToJson() const ABSL_LOCKS_EXCLUDED(mu_);
  absl::Status WriteJson(const std::string& path) const ABSL_LOCKS_EXCLUDED(mu_);

 private:
  struct ThreadBuffer {
    uint32_t track = 0;
    std::vector<TraceEvent> events;
  };
  ThreadBuffer* Buffer();
  ThreadBuffer* NewBuffer() ABSL_LOCKS_EXCLUDED(mu_);
  void NameTrack(uint32_t track, const std::string& name) ABSL_LOCKS_EXCLUDED(mu_);

  const bool enabled_;
  const uint64_t id_;      // distinguishes logs in the thread_local cache
  const uint64_t origin_ns_;

  mutable Mutex mu_;  // notifier/mutex.h: TSan-visible
  std::vector<std::unique_ptr<ThreadBuffer>> buffers_ ABSL_GUARDED_BY(mu_);
  std::map<uint32_t, std::string> track_names_ ABSL_GUARDED_BY(mu_);
  uint32_t next_track_ ABSL_GUARDED_BY(mu_) = 1;
};

}  // namespace mmuvisor::vmm::stress

#endif  // MMUVISOR_VMM_STRESS_TRACE_LOG_H_
