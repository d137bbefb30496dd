#!/usr/bin/env bash
# The main job on a fresh machine (README's first command): build, then run the shipped demo.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh
swift build -c release --product sana
.build/release/sana info
