#!/usr/bin/env bash
# Rebuilds models/demo-tiny-int8.sana, the demo bundle of tools/demo.sh: the tiny random-weight Sana-1.0-style
# pipeline of tools/fixtures/make_tiny_pipeline.py (Tests/Fixtures/pipelines/sana10) converted with int8 weights.
#   ${PYTHON:-.venv-ref/bin/python} tools/fixtures/make_tiny_pipeline.py   # only to regenerate the pipeline itself
#   bash tools/make_demo_bundle.sh
set -euo pipefail
cd "$(dirname "$0")/.."
swift build -c release --product sana
.build/release/sana convert Tests/Fixtures/pipelines/sana10 --output models/demo-tiny-int8.sana --weights int8
