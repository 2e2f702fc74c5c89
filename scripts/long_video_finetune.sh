#!/usr/bin/env bash
# Long video from motion frames, trained (issue 20): a short stage-2 fine-tune of a recipe's model with a share of
# continuation batches, against the same fine-tune without them, each scored on held-out 30 s clips made in
# segments (python -m humo.evaluation.long_video: colour, identity, sync and joins per segment).
#
#   R=runs/toy-recipe bash scripts/long_video_finetune.sh     # R: a `make toy-model` output folder
#
# Steps skip themselves when their output exists. The two fine-tunes run side by side, one thread each.
set -euo pipefail

R=${R:-runs/toy-recipe}
OUT=${OUT:-$R/long}
HUMO=${HUMO:-humo}
CONFIG=${CONFIG:-configs/toy.json}
INIT=${INIT:-$R/s2/final/ema.safetensors}
STEPS=${STEPS:-400}
SHARE=${SHARE:-0.5}
CLIPS=${CLIPS:-4}
FACE_WEIGHT=${FACE_WEIGHT:-16}
CHANNELS=$(python -c "import json, sys; print(json.load(open(sys.argv[1]))['z_dim'])" "$R/codec/codec.json")
mkdir -p "$OUT"

# the recipe's cache serves as it is: each clip trains as a continuation by reading its first 5 frames as motion
[[ -e "$OUT/data/manifest.jsonl" ]] || $HUMO synth --out "$OUT/data" --clips "$CLIPS" --frames 749:749 --seed 7 \
  --split heldout

finetune() {  # finetune NAME SHARE
  local run="$OUT/$1"
  [[ -e "$run/final/ema.safetensors" ]] || OMP_NUM_THREADS=1 $HUMO train --config "$CONFIG" \
    --set cache="$R/cache" --set out="$run" --set stage=2 --set steps="$STEPS" \
    --set lr=0.0001 --set warmup_steps=50 --set init="$INIT" --set trainable=full \
    --set face_loss_weight="$FACE_WEIGHT" --set continuation_share="$2" --set av_fraction_start=0.5 --set av_fraction_end=0.5 \
    --set model_overrides.in_dim="$CHANNELS" --set model_overrides.out_dim="$CHANNELS" > "$run.log" 2>&1
  [[ -e "$run/model/dit.safetensors" ]] || python -m humo.toy --out "$run/model" --dit "$run/final/ema.safetensors" \
    --vae "$R/codec" --encoders "$R/encoders" --dit-dtype bf16 > /dev/null
}
finetune continuation "$SHARE" &
finetune control 0.0 &
wait

for name in continuation control; do
  [[ -e "$OUT/$name.json" ]] || OMP_NUM_THREADS=1 python -m humo.evaluation.long_video --model "$OUT/$name/model" \
    --manifest "$OUT/data/manifest.jsonl" --clips "$CLIPS" --json "$OUT/$name.json" --plot "$OUT/$name.png" \
    > "$OUT/$name-eval.log" 2>&1 &
done
wait
tail -n "$CLIPS" "$OUT"/continuation-eval.log "$OUT"/control-eval.log
