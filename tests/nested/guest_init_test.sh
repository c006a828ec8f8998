#!/bin/sh
# The nested run's test loop (run-kvm-tests' guest /init, between its "the test loop"
# markers), run on its own against fake test executables, so its counting and its one
# retry (tests/nested/README.md, 6) are checked without QEMU:
#   - an executable that fails with "triple fault (KVM_EXIT_SHUTDOWN)" runs once more and
#     the rerun's result counts;
#   - an executable that fails otherwise is not rerun and counts as failed;
#   - an executable that fails with the signature twice counts as failed;
#   - the mmuvisor run gets the same one retry;
#   - the summary lines the host side parses come out as it expects.
# Usage: guest_init_test.sh PATH/TO/run-kvm-tests. Exits 0 when every check holds.
set -u
script=${1:?usage: guest_init_test.sh PATH/TO/run-kvm-tests}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/t"

awk '/^# --- the test loop/{f=1} f{print} /^# --- end of the test loop/{exit}' "$script" |
  sed -e "s|/t/|$work/t/|g" -e "s|/tmp/out|$work/out|g" -e "s|/tests.list|$work/tests.list|g" \
      -e "s|/extra.cmd|$work/extra.cmd|g" >"$work/loop.sh"
grep -q 'reruns=0' "$work/loop.sh" || { echo "FAIL: no test loop between the markers in $script"; exit 1; }

# flaky_once: the signature on its first run, 2 of 2 passed on the second.
cat >"$work/t/flaky_once" <<EOF
#!/bin/sh
if [ ! -e "$work/flaky_once.ran" ]; then
  touch "$work/flaky_once.ran"
  echo "guest crashed on vcpu 0: triple fault (KVM_EXIT_SHUTDOWN): an exception ..."
  echo "[  PASSED  ] 1 test."
  exit 1
fi
echo "[  PASSED  ] 2 tests."
EOF
# broken: fails without the signature.
cat >"$work/t/broken" <<'EOF'
#!/bin/sh
echo "[  PASSED  ] 1 test."
echo "Expected equality of these values"
exit 1
EOF
# always_triple: the signature every time.
cat >"$work/t/always_triple" <<'EOF'
#!/bin/sh
echo "triple fault (KVM_EXIT_SHUTDOWN)"
exit 1
EOF
cat >"$work/t/mmuvisor" <<EOF
#!/bin/sh
if [ ! -e "$work/mmuvisor.ran" ]; then
  touch "$work/mmuvisor.ran"
  echo "FAIL: workload failed: guest crashed on vcpu 1: triple fault (KVM_EXIT_SHUTDOWN)"
  exit 1
fi
echo "verdict: PASS"
EOF
chmod +x "$work/t/"*
printf 'flaky_once 2 *\nbroken 2 *\nalways_triple 1 *\n' >"$work/tests.list"

out=$( (echo 'TEST_TIMEOUT=30'; cat "$work/loop.sh"
        echo 'echo "nested-kvm: $passed passed, $failed failed"') | sh 2>&1)

status=0
expect() {  # expect LINE: the output must hold this exact line
  printf '%s\n' "$out" | grep -qxF -- "$1" || { echo "FAIL: missing line: $1"; status=1; }
}
expect_re() {  # expect_re REGEX: a whole line must match
  printf '%s\n' "$out" | grep -qxE -- "$1" || { echo "FAIL: no line matching: $1"; status=1; }
}
expect_no() {  # expect_no REGEX
  ! printf '%s\n' "$out" | grep -qE -- "$1" || { echo "FAIL: unexpected line matching: $1"; status=1; }
}
expect 'nested-kvm: RERUN: flaky_once: a vCPU ended in a nested triple fault; running it once more'
expect_re '--- flaky_once: rc=0 passed=2 failed=0 skipped=0 \([0-9]+s\)'
expect_no 'RERUN: broken'
expect_re '--- broken: rc=1 passed=1 failed=1 skipped=0 \([0-9]+s\)'
expect 'nested-kvm: RERUN: always_triple: a vCPU ended in a nested triple fault; running it once more'
expect_re '--- always_triple: rc=1 passed=0 failed=1 skipped=0 \([0-9]+s\)'
expect 'nested-kvm: RERUN: mmuvisor: a vCPU ended in a nested triple fault; running it once more'
expect '--- mmuvisor: rc=0'
expect "nested-kvm: 3 rerun(s) after a nested triple fault (counted by the rerun's result; tests/nested/README.md)"
expect 'nested-kvm: 4 passed, 2 failed'  # 2 + 1 + 0 + mmuvisor's 1; broken, always_triple
# The host side's parse of that line (run-kvm-tests, after QEMU exits).
reruns=$(printf '%s\n' "$out" |
  sed -n -E 's/^nested-kvm: ([0-9]+) rerun\(s\) after a nested triple fault.*/\1/p' | tail -n1)
[ "$reruns" = 3 ] || { echo "FAIL: the host side would read '$reruns' reruns, not 3"; status=1; }
if [ "$status" -ne 0 ]; then
  echo "--- the loop's output:"
  printf '%s\n' "$out"
fi
[ "$status" -eq 0 ] && echo "guest_init_test: OK"
exit "$status"
