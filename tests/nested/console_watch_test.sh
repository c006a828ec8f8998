#!/bin/bash
# The nested run's console watcher (run-kvm-tests, between its "the console watcher"
# markers), run on its own against made-up consoles, so when it kills the guest is checked
# without QEMU (tests/nested/README.md, 5):
#   - a panic, an `Oops: int3` and a soft lockup kill (at once, or after the grace period
#     if the console is still open then: its stacks come first; not at all if it ended);
#   - an RCU stall followed by finished test executables does not kill, and is recorded;
#   - an RCU stall reported again with nothing finished in between kills;
#   - a second stall after progress is tolerated too (each report restarts the count);
#   - the console is copied through unchanged, and nothing is killed twice.
# Usage: console_watch_test.sh PATH/TO/run-kvm-tests. Exits 0 when every check holds.
set -u
script=${1:?usage: console_watch_test.sh PATH/TO/run-kvm-tests}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
awk '/^# --- the console watcher/{f=1} f{print} /^# --- end of the console watcher/{exit}' \
  "$script" >"$work/watch.sh"
grep -q 'watch_console()' "$work/watch.sh" || { echo "FAIL: no watcher between the markers"; exit 1; }
watch_grace=0  # the checks below kill at once; grace_* set their own
# shellcheck source=/dev/null
. "$work/watch.sh"

failures=0
stall='[   88.150904] rcu: INFO: rcu_preempt detected stalls on CPUs/tasks:'
done_line='--- vmm_paging_guest_touch_test: rc=0 passed=4 failed=0 skipped=0 (2s)'
# check NAME WANT_KILLS WANT_STALLS LINES...: feeds the lines, counts kills and records.
check() {
  local name=$1 want_kills=$2 want_stalls=$3
  shift 3
  local d=$work/$name
  mkdir -p "$d"
  printf '%s\n' "$@" | watch_console "$d" sh -c 'echo x >>"$1/kills"' sh "$d" >"$d/out"
  local kills=0 stalls=0
  [ -e "$d/kills" ] && kills=$(wc -l <"$d/kills")
  [ -e "$d/stalled" ] && stalls=$(wc -l <"$d/stalled")
  if [ "$kills" -ne "$want_kills" ] || [ "$stalls" -ne "$want_stalls" ]; then
    echo "FAIL: $name: $kills kill(s), $stalls tolerated stall(s); want $want_kills, $want_stalls"
    failures=$((failures + 1))
  elif [ "$want_kills" -gt 0 ] && [ ! -e "$d/hung" ]; then
    echo "FAIL: $name: killed without marking the run hung"
    failures=$((failures + 1))
  elif ! printf '%s\n' "$@" | cmp -s - "$d/out"; then
    echo "FAIL: $name: the console was not copied through unchanged"
    failures=$((failures + 1))
  else
    echo "ok: $name"
  fi
}
check panic 1 0 "[ 1.0] Kernel panic - not syncing: corrupted stack end" "$done_line"
check int3 1 0 "[ 2.0] Oops: int3: 0000 [#1] PREEMPT SMP NOPTI" "$stall" "$stall"
check soft_lockup 1 0 "[ 3.0] watchdog: BUG: soft lockup - CPU#1 stuck for 22s! [kworker/1:1:40]"
check stall_then_progress 0 1 "$stall" "rcu: 	0-...!: (0 ticks this GP)" "$done_line" "$done_line"
check stall_twice_without_progress 1 1 "$stall" "some kernel line" "$stall" "$done_line"
check stall_progress_stall 0 2 "$stall" "$done_line" "$stall" "$done_line"
check stall_progress_stall_stall 1 2 "$stall" "$done_line" "$stall" "$stall"
# The grace period: the console stays open (as a hung guest's does) until the kill comes,
# at most 30 s; or it ends at once (QEMU gone by itself), and nothing is killed.
grace_check() {  # grace_check NAME WANT_KILLS KEEP_OPEN
  local name=$1 want=$2 keep=$3 d=$work/$1 kills=0 i
  mkdir -p "$d"
  { echo "[ 3.0] watchdog: BUG: soft lockup - CPU#1 stuck for 22s! [stress_kvm_test:602]"
    echo "[ 3.0] Call Trace:"
    if [ "$keep" = 1 ]; then
      for ((i = 0; i < 300; ++i)); do [ -e "$d/kills" ] && break; sleep 0.1; done
    fi
  } | watch_grace=1 watch_console "$d" sh -c 'echo x >>"$1/kills"' sh "$d" >"$d/out"
  [ -e "$d/kills" ] && kills=$(wc -l <"$d/kills")
  if [ "$kills" -ne "$want" ] || [ ! -e "$d/hung" ] || ! grep -q 'Call Trace' "$d/out"; then
    echo "FAIL: $name: $kills kill(s), want $want; hung marked: $([ -e "$d/hung" ] && echo yes || echo no)"
    failures=$((failures + 1))
  else
    echo "ok: $name"
  fi
}
grace_check grace_console_open 1 1
grace_check grace_console_ended 0 0
check quiet_run 0 0 "=== kvm_cli_test (4 tests)" "$done_line" "nested-kvm: 70 passed, 0 failed"
[ "$failures" -eq 0 ] && echo "console_watch_test: all checks hold"
exit $((failures > 0))
