#!/usr/bin/env bash
# Sana-Shapes from a clean checkout: render the world, train the autoencoder, measure its ceiling on the held-out
# combinations, train the DiT, fine-tune the decoder alone, export the diffusers pipeline, convert it to bundles,
# draw the held-out grid with diffusers (float and with weights rounded as each bundle stores them) and with our
# runtime, and check it. Everything lands in out/sana-shapes (git-ignored) except the int8 demo bundle.
#   bash tools/sana_shapes/run_all.sh   # AE_MINUTES=24 DIT_MINUTES=50+13 DECODER_MINUTES=9 THREADS=1 by default
# (the shipped model's order: DiT 50 min, decoder alone 9 min, DiT 13 more min)
#   SANA=/path/to/sana bash tools/sana_shapes/run_all.sh    # use a built `sana` instead of building one
# Training is resumable: rerunning with larger *_MINUTES continues from out/sana-shapes/*_state.pt.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY="${PYTHON:-.venv-ref/bin/python}"
OUT=out/sana-shapes
THREADS="${THREADS:-1}"
AE_MINUTES="${AE_MINUTES:-24}"
"$PY" tools/sana_shapes/check_faithfulness.py --self-test
[ -f "$OUT/dataset.npz" ] || "$PY" tools/sana_shapes/render_dataset.py --out "$OUT"
"$PY" tools/sana_shapes/train_autoencoder.py --out "$OUT" --minutes "$AE_MINUTES" --threads "$THREADS"
"$PY" tools/sana_shapes/reconstruct_grid.py --vae "$OUT/vae" --out "$OUT/ae-grid" --threads "$THREADS"
"$PY" tools/sana_shapes/check_faithfulness.py "$OUT/ae-grid/reconstructed" --reference "$OUT/ae-grid/rendered" \
  --json "$OUT/ae-grid.json"
"$PY" tools/sana_shapes/train_dit.py --out "$OUT" --minutes "${DIT_MINUTES:-50}" --threads "$THREADS"
# The DiT was trained on the encoder's latents (cache.pt): from here on only the decoder may change.
"$PY" tools/sana_shapes/train_autoencoder.py --out "$OUT" --decoder-only \
  --lr 1e-3 --minutes "$(awk "BEGIN{print $AE_MINUTES + ${DECODER_MINUTES:-9}}")" --threads "$THREADS"
"$PY" tools/sana_shapes/train_dit.py --out "$OUT" --minutes "$(awk "BEGIN{print ${DIT_MINUTES:-50} + ${DIT_MORE_MINUTES:-13}}")" \
  --threads "$THREADS"
"$PY" tools/sana_shapes/reconstruct_grid.py --vae "$OUT/vae" --out "$OUT/ae-grid" --threads "$THREADS"
"$PY" tools/sana_shapes/check_faithfulness.py "$OUT/ae-grid/reconstructed" --reference "$OUT/ae-grid/rendered" \
  --json "$OUT/ae-grid.json"
"$PY" tools/sana_shapes/export_pipeline.py --out "$OUT" --dest "$OUT/pipeline"
if [ -z "${SANA:-}" ]; then
  swift build -c release --product sana
  SANA=.build/release/sana
fi
for w in f32 bf16 int8 int4; do
  "$SANA" convert "$OUT/pipeline" --output "$OUT/sana-shapes-$w.sana" --weights "$w"
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
for w in f32 bf16 int8 int4; do
  "$PY" tools/sana_shapes/generate_grid.py --sana "$OUT/sana-shapes-$w.sana" --sana-binary "$SANA" \
    --out "$OUT/grid/sana-$w" --threads "$THREADS"
  "$PY" tools/sana_shapes/check_faithfulness.py "$OUT/grid/sana-$w" --reference "$OUT/grid/diffusers" \
    --json "$OUT/grid/sana-$w.json"
done
