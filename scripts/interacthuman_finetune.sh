#!/usr/bin/env bash
# InterActHuman on the proving ground: a trained one-person model fine-tuned on multi-person clips with each
# person's audio injected where their region is and a person mask predictor, then scored on held-out
# multi-person clips (python -m humo.evaluation.persons: predicted masks against global audio and fixed strips).
#
#   R=runs/ih STEPS=1500 bash scripts/interacthuman_finetune.sh
#
# Every step skips itself when its output exists; `humo train` resumes from its last checkpoint.
set -euo pipefail

R=${R:-runs/ih}
MODEL=${MODEL:-humo/assets/toy}            # the model fine-tuned, and the encoders its caches use
CONFIG=${CONFIG:-configs/toy.json}
CLIPS=${CLIPS:-640}
HELDOUT=${HELDOUT:-40}
STEPS=${STEPS:-1500}
LR=${LR:-0.0001}
BLOCKS=${BLOCKS:-2}                         # the last blocks the person mask predictor reads
EVAL_CLIPS=${EVAL_CLIPS:-24}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
C=$(python -c "import json; print(json.load(open('$MODEL/vae/codec.json'))['z_dim'])" 2>/dev/null || echo 24)
LATENT=(--set model_overrides.in_dim="$C" --set model_overrides.out_dim="$C")

mkdir -p "$R"
STEPS_TIMES="$R/times.tsv"
source "$(dirname "${BASH_SOURCE[0]}")/steps.sh"

step synth-train "$R/data/train/manifest.jsonl" \
  humo synth --out "$R/data/train" --clips "$CLIPS" --frames 49:49 --seed 21 --multi
step synth-heldout "$R/data/heldout/manifest.jsonl" \
  humo synth --out "$R/data/heldout" --clips "$HELDOUT" --frames 49:49 --seed 22 --split heldout --multi
step precompute "$R/cache/index.json" \
  humo precompute --manifest "$R/data/train/manifest.jsonl" --out "$R/cache" --vae "$MODEL/vae" \
  --text "$MODEL/text" --audio "$MODEL/whisper" --split train --quiet
step train "$R/s2/final/ema.safetensors" \
  humo train --config "$CONFIG" --set cache="$R/cache" --set out="$R/s2" --set stage=2 --set steps="$STEPS" \
  --set lr="$LR" --set init="$MODEL/dit.safetensors" --set trainable=full --set persons=true --set num_refs=3 \
  --set model_overrides.person_mask_blocks="$BLOCKS" --set av_fraction_start=0.8 --set av_fraction_end=0.8 \
  "${LATENT[@]}" --set checkpoint_every=250 --set keep_checkpoints=0
step model "$R/model/dit.safetensors" \
  python -m humo.toy --out "$R/model" --dit "$R/s2/final/ema.safetensors" --vae "$MODEL/vae" --encoders "$MODEL" \
  --dit-dtype bf16
step eval "$R/eval.json" \
  python -m humo.evaluation.persons --model "$R/model" --baseline "$MODEL" \
  --manifest "$R/data/heldout/manifest.jsonl" --clips "$EVAL_CLIPS" --out "$R/eval.json" --figure "$R/turns.png"
