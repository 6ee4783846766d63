#!/usr/bin/env bash
# The whole suite, as `make test` (and so CI) runs it. Two pytest runs side by side:
#
# - the lab tests (tests marked `lab`: one real lab at a time, with timed faults) in the
#   foreground, at normal priority;
# - everything else (unit, web and CLI tests, about 5 minutes of one core) beside them at the
#   lowest CPU priority (nice 19), its output kept until the lab tests end.
#
# On 2 cores the suite then takes about as long as the lab tests alone, instead of their sum,
# and the lab's processes win a core whenever both want one: a failure detector or a failover
# timed in a lab test must not wait behind a property test. Exit status: non-zero when either
# run failed. Extra arguments go to both runs (e.g. `-x`); to run a few tests, call pytest itself.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}

beside_log=$(mktemp "${TMPDIR:-/tmp}/firebreak-tests-beside.XXXXXX")
# Short: tests put unix sockets under their tmp_path, and a socket's path has at most 107 bytes.
beside_tmp=$(mktemp -d "${TMPDIR:-/tmp}/fbt.XXXXXX")
# The installed package both runs test (tests/installed.py): built once, by whichever run needs it
# first. Its own directory, readable by all: as root the lab runs PostgreSQL as another user, who
# must reach the venv's interpreter (the beside run's is private to its owner).
install_tmp=$(mktemp -d "${TMPDIR:-/tmp}/fbi.XXXXXX")
chmod 755 "$install_tmp"
export FIREBREAK_TEST_INSTALL="$install_tmp/installed"
cleanup() { rm -rf "$beside_log" "$beside_tmp" "$install_tmp"; }
trap cleanup EXIT

started=$(date +%s)
# Its own temporary directory: two pytest runs sharing one would prune each other's.
nice -n 19 "$PY" -m pytest -q -m "not lab" -p no:cacheprovider --basetemp="$beside_tmp/t" --durations=10 "$@" \
    > "$beside_log" 2>&1 &
beside=$!
# A Ctrl-C stops both.
trap 'kill -INT "$beside" 2>/dev/null' INT TERM

echo "tests: the lab tests here; the unit, web and CLI tests beside them (nice 19, output after)"
"$PY" -m pytest -q -m lab --durations=20 "$@"
lab_rc=$?
wait "$beside"
beside_rc=$?

echo
echo "---- the unit, web and CLI tests (run beside the lab tests) ----"
cat "$beside_log"
echo
echo "tests: lab tests exit $lab_rc, the others exit $beside_rc; $(( $(date +%s) - started )) s in all"
[ "$lab_rc" -eq 0 ] && [ "$beside_rc" -eq 0 ]
