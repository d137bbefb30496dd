#!/usr/bin/env bash
# Sana-Shapes from a clean checkout: render the world, train the autoencoder and the DiT, export the diffusers
# pipeline, convert it to bundles, draw the held-out grid with diffusers (float and with weights rounded as each
# bundle stores them) and check it. Everything lands in out/sana-shapes (git-ignored) except the int8 demo bundle.
#   bash tools/sana_shapes/run_all.sh                      # AE_MINUTES=10 DIT_MINUTES=50 THREADS=1 by default
# Training is resumable: rerunning with larger AE_MINUTES / DIT_MINUTES continues from out/sana-shapes/*_state.pt.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY="${PYTHON:-.venv-ref/bin/python}"
OUT=out/sana-shapes
THREADS="${THREADS:-1}"
"$PY" tools/sana_shapes/check_faithfulness.py --self-test
[ -f "$OUT/dataset.npz" ] || "$PY" tools/sana_shapes/render_dataset.py --out "$OUT"
"$PY" tools/sana_shapes/train_autoencoder.py --out "$OUT" --minutes "${AE_MINUTES:-10}" --threads "$THREADS"
"$PY" tools/sana_shapes/train_dit.py --out "$OUT" --minutes "${DIT_MINUTES:-50}" --threads "$THREADS"
"$PY" tools/sana_shapes/export_pipeline.py --out "$OUT" --dest "$OUT/pipeline"
swift build -c release --product sana
for w in f32 bf16 int8 int4; do
  .build/release/sana convert "$OUT/pipeline" --output "$OUT/sana-shapes-$w.sana" --weights "$w"
done
cp "$OUT/sana-shapes-int8.sana" models/sana-shapes-int8.sana
"$PY" tools/sana_shapes/generate_grid.py --diffusers "$OUT/pipeline" --out "$OUT/grid/diffusers" --threads "$THREADS"
"$PY" tools/sana_shapes/check_faithfulness.py "$OUT/grid/diffusers" --json "$OUT/grid/diffusers.json"
for w in bf16 int8 int4; do
  "$PY" tools/sana_shapes/generate_grid.py --diffusers "$OUT/pipeline" --weights "$w" --out "$OUT/grid/rounded-$w" \
    --threads "$THREADS"
  "$PY" tools/sana_shapes/check_faithfulness.py "$OUT/grid/rounded-$w" --reference "$OUT/grid/diffusers" \
    --json "$OUT/grid/rounded-$w.json"
done
# Our runtime (once `sana generate` loads bundles): same grid, same seeds, compared with diffusers picture by picture.
if .build/release/sana generate --model "$OUT/sana-shapes-f32.sana" --prompt "a red circle" --width 64 --height 64 \
     --seed 0 --output "$OUT/probe.png" >/dev/null 2>&1; then
  for w in f32 bf16 int8 int4; do
    "$PY" tools/sana_shapes/generate_grid.py --sana "$OUT/sana-shapes-$w.sana" --out "$OUT/grid/sana-$w" --threads "$THREADS"
    "$PY" tools/sana_shapes/check_faithfulness.py "$OUT/grid/sana-$w" --reference "$OUT/grid/diffusers" \
      --json "$OUT/grid/sana-$w.json"
  done
else
  echo "sana generate cannot load bundles in this build: runtime rows skipped"
fi
