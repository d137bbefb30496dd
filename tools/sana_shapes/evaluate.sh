#!/usr/bin/env bash
# Scores one DiT checkpoint (with one decoder) on the checker's held-out grid, diffusers float32: exports a pipeline
# from it, draws the 48 held-out prompts for the given seeds and checks them. How the shipped checkpoint was picked
# among the snapshots train_dit.py --keep-every kept.
#   bash tools/sana_shapes/evaluate.sh NAME [TRANSFORMER_DIR] [VAE_DIR] [SEEDS…]
#   bash tools/sana_shapes/evaluate.sh 9000 out/sana-shapes/transformer-9000
#   bash tools/sana_shapes/evaluate.sh 9000-seeds23 out/sana-shapes/transformer-9000 out/sana-shapes/vae 2 3
# writes out/sana-shapes/eval/NAME/{pipeline,diffusers,diffusers.json,log} and prints the summary (seeds 0 1 by default:
# the grid of docs/SANA_SHAPES.md).
set -euo pipefail
cd "$(dirname "$0")/../.."
PY="${PYTHON:-.venv-ref/bin/python}"
OUT=out/sana-shapes
NAME="$1"
TRANSFORMER="${2:-$OUT/transformer}"
VAE="${3:-$OUT/vae}"
shift $(($# < 3 ? $# : 3))
SEEDS=("${@:-0 1}")
DIR="$OUT/eval/$NAME"
mkdir -p "$DIR"
"$PY" tools/sana_shapes/export_pipeline.py --out "$OUT" --transformer "$TRANSFORMER" --vae "$VAE" \
  --dest "$DIR/pipeline" >"$DIR/log" 2>&1
# shellcheck disable=SC2068  # the seeds are separate words
"$PY" tools/sana_shapes/generate_grid.py --diffusers "$DIR/pipeline" --out "$DIR/diffusers" --seeds ${SEEDS[@]} \
  --threads "${THREADS:-1}" >>"$DIR/log" 2>&1
"$PY" tools/sana_shapes/check_faithfulness.py "$DIR/diffusers" --json "$DIR/diffusers.json" >/dev/null
"$PY" - "$DIR/diffusers.json" "$NAME" <<'EOF'
import collections, json, sys
d = json.load(open(sys.argv[1]))
acc = d["summary"]["accuracy"]
misses = collections.Counter(f"{r['prompt'].split()[2]}→{r['got_shape']}" for r in d["pictures"] if not r["ok"]["shape"])
print(f"{sys.argv[2]}: shape {acc['shape']:.1%} colour {acc['color']:.1%} position {acc['position']:.1%} "
      f"background {acc['background']:.1%} all {acc['all']:.1%} of {d['summary']['pictures']}; misses {dict(misses)}")
EOF
