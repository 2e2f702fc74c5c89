#!/usr/bin/env bash
# Reference crops against copy-paste (InterActHuman's remedy), on data that teaches copying: the recipe's own
# training clips with same-shot references (each character as it stands in its clip: `humo synth --references
# same-shot`), the recipe's stage-0 backbone and encoders, a cache with reference crops; then `humo ablate` trains
# `full-finetune` (whole references) against `crops` (head, upper body or clothing 60% of the time) and scores both
# on the recipe's held-out clips, whose references are drawn apart from them, so that a model which learnt to copy
# shows it (the copy-paste columns: the reference's own scene, its face placement).
#
#   RECIPE=runs/toy-recipe OUT=runs/crops-recipe bash scripts/reference_crops_study.sh
#
# Needs the recipe's data, encoders and stage 0 (`UNTIL=stage0 bash scripts/train_toy_model.sh`: 15 min). Every
# step skips itself when done and `humo ablate` resumes, so rerunning continues where it stopped.
set -euo pipefail

RECIPE=${RECIPE:-runs/toy-recipe}
OUT=${OUT:-runs/crops-recipe}
CLIPS=${CLIPS:-640}           # the recipe's: the same clips as its stage 0 trained on
CROPS=${CROPS:-2}             # cached variants of each crop kind
STUDY=${STUDY:-configs/ablate-crops.json}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}

for need in "$RECIPE/s0/final/ema.safetensors" "$RECIPE/encoders/vae" "$RECIPE/data/heldout/manifest.jsonl"; do
  [[ -e "$need" ]] || { echo "reference_crops_study: $need missing: run UNTIL=stage0 bash scripts/train_toy_model.sh" >&2; exit 2; }
done
mkdir -p "$OUT/data"
STEPS_TIMES="$OUT/times.tsv"
source "$(dirname "${BASH_SOURCE[0]}")/steps.sh"

# The study's recipe: the recipe's backbone, encoders and held-out clips, its own training data and cache.
for d in s0 encoders codec; do [[ -e "$OUT/$d" ]] || ln -s "$(realpath "$RECIPE/$d")" "$OUT/$d"; done
[[ -e "$OUT/data/heldout" ]] || ln -s "$(realpath "$RECIPE/data/heldout")" "$OUT/data/heldout"
step synth-same-shot "$OUT/data/train/manifest.jsonl" \
  humo synth --out "$OUT/data/train" --clips "$CLIPS" --frames 49:49 --seed 1 --references same-shot
step precompute "$OUT/cache/index.json" \
  humo precompute --manifest "$OUT/data/train/manifest.jsonl" --out "$OUT/cache" --vae "$OUT/encoders/vae" \
  --text "$OUT/encoders/text" --audio "$OUT/encoders/whisper" --split train --reference-crops "$CROPS" --quiet
humo ablate --study "$STUDY" --recipe "$OUT"
