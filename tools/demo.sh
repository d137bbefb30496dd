#!/usr/bin/env bash
# The main job on a fresh machine (README's first command): build, then generate a PNG from a prompt with the demo
# bundle shipped in models/ — no download. The demo model is tiny and has RANDOM weights: it exercises the whole
# runtime (tokenizer, Gemma-2, Linear DiT, DC-AE, int8 kernels, PNG) but it does not draw; expect coloured noise.
# A small trained model will replace it (issue 9). Regenerate the bundle with tools/make_demo_bundle.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh
swift build -c release --product sana
out="${OUT_DIR:-out}"
mkdir -p "$out"
echo "demo: models/demo-tiny-int8.sana is a tiny random-weight model (it runs the pipeline, it does not draw)"
.build/release/sana generate --model models/demo-tiny-int8.sana --prompt "a red circle on the left" \
    --output "$out/demo.png" --steps 8 --width 256 --height 256 --seed 1
echo "demo: wrote $out/demo.png"
