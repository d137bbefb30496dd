#!/usr/bin/env bash
# The test command (README, .ci/run): installs what is missing, builds with optimization, runs every test.
# Tests are built in release mode because the numeric code is far too slow unoptimized; -enable-testing
# keeps @testable imports working there. The suite uses XCTest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh
swift build -c release --product sana
log=$(mktemp)
trap 'rm -f "$log"' EXIT
set +e
swift test -c release -Xswiftc -enable-testing --disable-swift-testing "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
# One plain closing line for CI: the totals of XCTest's "All tests" suite.
summary=$(grep -E "^[[:space:]]*Executed [0-9]+ tests?, with [0-9]+ failures?" "$log" | tail -1)
total=$(echo "$summary" | sed -E 's/.*Executed ([0-9]+) tests?.*/\1/')
failed=$(echo "$summary" | sed -E 's/.*with ([0-9]+) failures?.*/\1/')
if [ -n "$summary" ]; then echo "swift-test: $((total - failed)) passed, $failed failed"; fi
exit "$status"
