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
# XCTest prints "Executed N tests, with [K tests skipped and] F failures"; the last such line is "All tests".
summary=$(grep -E "^[[:space:]]*Executed [0-9]+ tests?, with " "$log" | tail -1)
if [ -n "$summary" ]; then
    total=$(echo "$summary" | sed -E 's/.*Executed ([0-9]+) tests?.*/\1/')
    failed=$(echo "$summary" | sed -E 's/.* ([0-9]+) failures?.*/\1/')
    skipped=$(echo "$summary" | grep -oE "[0-9]+ tests? skipped" | grep -oE "^[0-9]+" || echo 0)
    echo "swift-test: $((total - failed - skipped)) passed, $failed failed, $skipped skipped"
fi
exit "$status"
