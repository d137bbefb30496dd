#!/usr/bin/env bash
# Sana-Shapes from a clean checkout, step for step as the shipped model was trained: render the world, train the
# autoencoder, measure its ceiling on the held-out combinations, train the DiT, fine-tune the decoder alone, anneal
# the DiT, fine-tune the decoder again (then on perturbed latents), export the diffusers pipeline, convert it to
# bundles, draw the held-out grid with diffusers (float and with weights rounded as each bundle stores them) and with
# our runtime, and check it. Everything lands in out/sana-shapes (git-ignored) except the int8 demo bundle.
#   bash tools/sana_shapes/run_all.sh          # THREADS=1 by default; about 4 hours of wall time on a shared machine
#   SANA=/path/to/sana bash tools/sana_shapes/run_all.sh    # use a built `sana` instead of building one
# Training is resumable and counted in steps (totals, not increments): a phase whose state file is already at its
# step count ends at once, so a rerun continues where an interrupted one stopped.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY="${PYTHON:-.venv-ref/bin/python}"
OUT=out/sana-shapes
THREADS="${THREADS:-1}"
AE=(tools/sana_shapes/train_autoencoder.py --out "$OUT" --threads "$THREADS")
DIT=(tools/sana_shapes/train_dit.py --out "$OUT" --threads "$THREADS")
ceiling() {
  "$PY" tools/sana_shapes/reconstruct_grid.py --vae "$OUT/vae" --out "$OUT/ae-grid" --threads "$THREADS"
  "$PY" tools/sana_shapes/check_faithfulness.py "$OUT/ae-grid/reconstructed" --reference "$OUT/ae-grid/rendered" \
    --json "$OUT/ae-grid.json"
}
"$PY" tools/sana_shapes/check_faithfulness.py --self-test
[ -f "$OUT/dataset.npz" ] || "$PY" tools/sana_shapes/render_dataset.py --out "$OUT"
"$PY" "${AE[@]}" --shape-weight 0 --steps 432          # plain MSE (the first model's loss)
"$PY" "${AE[@]}" --steps 1279                          # shape-weighted
ceiling
"$PY" "${DIT[@]}" --steps 5324
# The DiT was trained on the encoder's latents (cache.pt): from here on only the decoder may change.
"$PY" "${AE[@]}" --decoder-only --lr 2e-3 --steps 2340
"$PY" "${DIT[@]}" --steps 7413
"$PY" "${DIT[@]}" --steps 10413 --lr 3e-4 --decay cosine --decay-start 7413 --min-lr 1e-5 --keep-every 500
"$PY" "${AE[@]}" --decoder-only --lr 1e-3 --decay cosine --decay-start 2340 --min-lr 1e-5 --steps 3840
"$PY" "${AE[@]}" --decoder-only --latent-noise 0.2 --lr 5e-4 --decay cosine --decay-start 3840 --min-lr 1e-5 --steps 4840
ceiling
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
