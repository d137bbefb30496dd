#!/usr/bin/env bash
# The main job on a fresh machine (README's first command): build, then generate a PNG from a prompt with the demo
# bundle shipped in models/ — no download. It runs the whole runtime (tokenizer, Gemma-2, Linear DiT, DC-AE, int8
# kernels, PNG) on a small model trained here; tools/sana_shapes/ (docs/SANA_SHAPES.md) retrains and reconverts it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh
swift build -c release --product sana
out="${OUT_DIR:-out}"
mkdir -p "$out"
# models/sana-shapes-int8.sana: a small Sana (same architecture, 64×64 pictures) trained here on a synthetic world of
# coloured shapes (docs/SANA_SHAPES.md): on held-out prompts it draws the asked colour, position and background every
# time and the asked shape nine times in ten.
.build/release/sana generate --model models/sana-shapes-int8.sana \
    --prompt "a red circle on the left on a blue background" --width 64 --height 64 --seed 0 --output "$out/demo.png"
echo "demo: wrote $out/demo.png (compare models/sana-shapes-demo.png)"
