#!/usr/bin/env bash
# The main job on a fresh machine (README's first command): build, convert the tiny demo pipeline shipped in
# models/demo-tiny (diffusers layout, random weights) to an int8 bundle, and inspect and verify it.
# Until `sana generate` exists this is the demo.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh
swift build -c release --product sana
out="${OUT_DIR:-out}"
mkdir -p "$out"
.build/release/sana info
.build/release/sana convert models/demo-tiny --output "$out/demo-tiny-int8.sana" --weights int8
.build/release/sana inspect "$out/demo-tiny-int8.sana" --verify
