#!/usr/bin/env bash
# Issue 18's GPU benchmark, one prepared run (under 8 minutes on one H200): random weights at real sizes.
#   bash benchmarks/gpu.sh [OUT_DIR]     -> OUT_DIR/gpu.json (default: $OUT, else runs/gpu)
# Needs the project's venv with a CUDA build of torch on the GPU machine (make install there).
set -euo pipefail
OUT_DIR=${1:-${OUT:-runs/gpu}}
mkdir -p "$OUT_DIR"
PY=${PY:-.venv/bin/python}
timeout 480 "$PY" -m benchmarks.gpu --out "$OUT_DIR/gpu.json" 2>&1 | tee "$OUT_DIR/gpu.log"
