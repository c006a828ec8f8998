#!/bin/sh
# The nested run's test loop (run-kvm-tests' guest /init, between its "the test loop"
# markers), run on its own against fake test executables, so its counting and its one
# retry (tests/nested/README.md, 6) are checked without QEMU:
#   - a test that fails with "triple fault (KVM_EXIT_SHUTDOWN)" in its own output runs once
#     more, alone (--gtest_filter), and the rerun's result counts; the others' stand;
#   - an executable that fails otherwise is not rerun and counts as failed;
#   - a test that fails with the signature twice counts as failed;
#   - an executable where one test fails plainly and another in a triple fault is not
#     rerun: the first run counts (a triple fault forgives no other failure);
#   - an executable that dies before its failures are reported is not rerun;
#   - the mmuvisor run gets the same one retry;
#   - the summary lines the host side parses come out as it expects.
# Usage: guest_init_test.sh PATH/TO/run-kvm-tests. Exits 0 when every check holds.
set -u
script=${1:?usage: guest_init_test.sh PATH/TO/run-kvm-tests}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/t"

awk '/^# --- the test loop/{f=1} f{print} /^# --- end of the test loop/{exit}' "$script" |
  sed -e "s|/t/|$work/t/|g" -e "s|/tmp/out|$work/out|g" -e "s|/tmp/failed|$work/failed|g" -e "s|/tests.list|$work/tests.list|g" \
      -e "s|/extra.cmd|$work/extra.cmd|g" >"$work/loop.sh"
grep -q 'reruns=0' "$work/loop.sh" || { echo "FAIL: no test loop between the markers in $script"; exit 1; }

# Fake gtest executables print what gtest's default printer prints (the loop reads
# [ RUN ] and [  FAILED  ] lines) and append each --gtest_filter they got to NAME.filters.
filter_of() {  # the fakes' prologue: records the filter in $work/NAME.filters
  printf '%s\n' 'for a in "$@"; do case $a in --gtest_filter=*) flt=${a#--gtest_filter=};; esac; done'
  printf 'echo "$flt" >>"%s/%s.filters"\n' "$work" "$1"
}
# flaky_once: of A.One, P/A.Two/0 (a value-parameterised name) and A.Skip, the second fails
# in a triple fault on the first run and passes on its rerun, which must run it alone.
{ echo '#!/bin/sh'; filter_of flaky_once; cat <<'EOF'
if [ "$flt" = "P/A.Two/0" ]; then
  printf '%s\n' "[ RUN      ] P/A.Two/0" "[       OK ] P/A.Two/0 (4 ms)" \
    "[==========] 1 test from 1 test suite ran. (4 ms total)" "[  PASSED  ] 1 test."
  exit 0
fi
printf '%s\n' "[ RUN      ] A.One" "[       OK ] A.One (0 ms)" "[ RUN      ] P/A.Two/0" \
  "guest crashed on vcpu 0: triple fault (KVM_EXIT_SHUTDOWN): an exception ..." \
  "[  FAILED  ] P/A.Two/0, where GetParam() = 1 (5 ms)" \
  "[ RUN      ] A.Skip" "[  SKIPPED ] A.Skip (0 ms)" \
  "[==========] 3 tests from 2 test suites ran. (5 ms total)" "[  PASSED  ] 1 test." \
  "[  SKIPPED ] 1 test, listed below:" "[  SKIPPED ] A.Skip" \
  "[  FAILED  ] 1 test, listed below:" "[  FAILED  ] P/A.Two/0, where GetParam() = 1" \
  "" " 1 FAILED TEST"
exit 1
EOF
} >"$work/t/flaky_once"
# broken: B.Two fails without the signature.
{ echo '#!/bin/sh'; filter_of broken; cat <<'EOF'
printf '%s\n' "[ RUN      ] B.One" "[       OK ] B.One (0 ms)" "[ RUN      ] B.Two" \
  "Expected equality of these values" "[  FAILED  ] B.Two (1 ms)" \
  "[==========] 2 tests from 1 test suite ran. (1 ms total)" "[  PASSED  ] 1 test." \
  "[  FAILED  ] 1 test, listed below:" "[  FAILED  ] B.Two"
exit 1
EOF
} >"$work/t/broken"
# always_triple: C.One fails with the signature every time.
{ echo '#!/bin/sh'; filter_of always_triple; cat <<'EOF'
printf '%s\n' "[ RUN      ] C.One" "triple fault (KVM_EXIT_SHUTDOWN)" "[  FAILED  ] C.One (2 ms)" \
  "[==========] 1 test from 1 test suite ran. (2 ms total)" "[  PASSED  ] 0 tests." \
  "[  FAILED  ] 1 test, listed below:" "[  FAILED  ] C.One"
exit 1
EOF
} >"$work/t/always_triple"
# mixed: M.Plain fails plainly while M.Triple triple-faults: the plain failure must not be
# forgiven by a rerun (neither test is rerun; the first run counts).
{ echo '#!/bin/sh'; filter_of mixed; cat <<'EOF'
printf '%s\n' "[ RUN      ] M.Plain" "Expected equality of these values" "[  FAILED  ] M.Plain (1 ms)" \
  "[ RUN      ] M.Triple" "guest crashed on vcpu 0: triple fault (KVM_EXIT_SHUTDOWN)" \
  "[  FAILED  ] M.Triple (2 ms)" "[ RUN      ] M.Ok" "[       OK ] M.Ok (0 ms)" \
  "[==========] 3 tests from 1 test suite ran. (3 ms total)" "[  PASSED  ] 1 test." \
  "[  FAILED  ] 2 tests, listed below:" "[  FAILED  ] M.Plain" "[  FAILED  ] M.Triple"
exit 1
EOF
} >"$work/t/mixed"
# died: the signature, then the executable dies inside D.One: D.One and D.Two never report,
# so no failure can be tied to the signature: not rerun.
{ echo '#!/bin/sh'; filter_of died; cat <<'EOF'
printf '%s\n' "[ RUN      ] D.One" "triple fault (KVM_EXIT_SHUTDOWN)" "AddressSanitizer: SEGV"
exit 134
EOF
} >"$work/t/died"
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
printf 'flaky_once 3 *\nbroken 2 *\nalways_triple 1 *\nmixed 3 *\ndied 2 *\n' >"$work/tests.list"

out=$( (echo 'TEST_TIMEOUT=30'; cat "$work/loop.sh"
        echo 'echo "nested-kvm: $passed passed, $failed failed"') | sh 2>&1)

status=0
expect() {  # expect LINE: the output must hold this exact line
  printf '%s\n' "$out" | grep -qxF -- "$1" || { echo "FAIL: missing line: $1"; status=1; }
}
expect_re() {  # expect_re REGEX: a whole line must match
  printf '%s\n' "$out" | grep -qxE -- "$1" || { echo "FAIL: no line matching: $1"; status=1; }
}
expect_filters() {  # expect_filters NAME "F1 F2...": NAME ran exactly with these filters
  got=$(tr '\n' ' ' <"$work/$1.filters" 2>/dev/null | sed 's/ $//')
  [ "$got" = "$2" ] || { echo "FAIL: $1 ran with filters '$got', want '$2'"; status=1; }
}
expect_no() {  # expect_no REGEX
  ! printf '%s\n' "$out" | grep -qE -- "$1" || { echo "FAIL: unexpected line matching: $1"; status=1; }
}
expect 'nested-kvm: RERUN: flaky_once: 1 failed test(s), each in a nested triple fault; running them once more: P/A.Two/0'
expect_re '--- flaky_once: rc=0 passed=2 failed=0 skipped=1 \([0-9]+s\)'
expect_filters flaky_once '* P/A.Two/0'
expect_no '^nested-kvm: RERUN: broken'
expect_re '--- broken: rc=1 passed=1 failed=1 skipped=0 \([0-9]+s\)'
expect_filters broken '*'
expect 'nested-kvm: RERUN: always_triple: 1 failed test(s), each in a nested triple fault; running them once more: C.One'
expect_re '--- always_triple: rc=1 passed=0 failed=1 skipped=0 \([0-9]+s\)'
expect_filters always_triple '* C.One'
expect_no '^nested-kvm: RERUN: mixed'
expect 'nested-kvm: NO RERUN: mixed: a triple fault, but not every one of its 2 failure(s) is a test with the signature in its own output: the first run counts'
expect_re '--- mixed: rc=1 passed=1 failed=2 skipped=0 \([0-9]+s\)'
expect_filters mixed '*'
expect_no '^nested-kvm: RERUN: died'
expect_re '--- died: rc=134 passed=0 failed=2 skipped=0 \([0-9]+s\)'
expect_filters died '*'
expect 'nested-kvm: RERUN: mmuvisor: a vCPU ended in a nested triple fault; running it once more'
expect '--- mmuvisor: rc=0'
expect "nested-kvm: 3 rerun(s) after a nested triple fault (counted by the rerun's result; tests/nested/README.md)"
expect 'nested-kvm: 5 passed, 6 failed'  # 2 + 1 + 0 + 1 + 0 + mmuvisor's 1; 0 + 1 + 1 + 2 + 2
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
