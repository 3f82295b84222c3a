#!/usr/bin/env bash
# The test suite (`npm test` runs it after the typecheck), in two groups at once:
# - test/*.test.ts, three files at a time, streamed;
# - test/faults/*.test.ts, one file at a time: each starts several processes and restarts a
#   database or kills a worker while measuring how fast the service recovers, so two of them at
#   once would mostly measure each other; then the dashboard's browser tests (test/browser: one
#   headless Chromium, which they would otherwise compete with). Their output follows the first group's.
# Exits non-zero if either group fails.
set -u
cd "$(dirname "${BASH_SOURCE[0]}")/.."

faults_log="$(mktemp)"
trap 'rm -f "$faults_log"' EXIT
node --import tsx --test --test-concurrency=1 "test/faults/*.test.ts" "test/browser/*.test.ts" >"$faults_log" 2>&1 &
faults_pid=$!

node --import tsx --test --test-concurrency=3 "test/*.test.ts"
regular_status=$?

wait "$faults_pid"
faults_status=$?
echo
echo "# fault and browser tests (test/faults, test/browser)"
cat "$faults_log"

echo "# regular tests exit ${regular_status}, fault tests exit ${faults_status}"
[[ $regular_status -eq 0 && $faults_status -eq 0 ]]
