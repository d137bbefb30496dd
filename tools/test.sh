#!/usr/bin/env bash
# The test command (README, .ci/run): installs what is missing, builds with optimization, runs every test.
# Tests are built in release mode because the numeric code is far too slow unoptimized; -enable-testing
# keeps @testable imports working there.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh
swift build -c release --product sana
swift test -c release -Xswiftc -enable-testing "$@"
