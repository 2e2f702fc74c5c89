#!/usr/bin/env bash
# The proving-ground model bundled in humo/assets/toy, from nothing: data -> codec -> caches -> DiT stages 0, 1, 2.
#
#   bash scripts/train_toy_model.sh            # = make toy-model; OUT=runs/toy-recipe by default
#   BUNDLE=1 bash scripts/train_toy_model.sh   # also copy the result into humo/assets/toy
#   MULTI_CLIPS=640 OUT=runs/ih-recipe bash scripts/train_toy_model.sh
#       # InterActHuman in the whole recipe: that many `humo synth --multi` clips (2-3 people) join the one-person
#       # ones from stage 0 on; stages 1-2 train with several references, stage 2 with each person's audio in their
#       # region and a person mask predictor; then scored on held-out multi-person clips (OUT/persons.json) and
#       # at every CURVE_EVERY (1000) stage-2 steps (OUT/persons-curve.json, .png)
#   S2_SEEDS="1 2" MULTI_CLIPS=640 OUT=runs/ih-recipe bash scripts/train_toy_model.sh
#       # replicates for InterActHuman's ablations: stage 2 again from the same stage 1 with each of these seeds
#       # (OUT/s2-seedN, OUT/model-seedN), every model scored in every mode, and the claims judged across them
#       # (OUT/persons-seeds.json)
#
# Every step skips itself when its output exists, and `humo train` resumes from their last
# checkpoint, so rerunning after an interruption continues where it stopped. Wall time of each step goes to
# OUT/times.tsv. Step sizes are set for about 90 minutes on 2 CPU cores (see docs/training.md, "The bundled model").
set -euo pipefail

OUT=${OUT:-runs/toy-recipe}
HUMO=${HUMO:-humo}
CONFIG=${CONFIG:-configs/toy.json}
CLIPS=${CLIPS:-640}
CODEC_CHANNELS=${CODEC_CHANNELS:-24}
CODEC_SCALING=${CODEC_SCALING:-global}
MULTI_CLIPS=${MULTI_CLIPS:-0}
PERSON_BLOCKS=${PERSON_BLOCKS:-2}            # the last blocks the person mask predictor reads
# The faces' extra weight in the person masks' focal loss: 8 gave better masks than 0 at 4000 stage-2 steps
# (docs/ablations.md, "Session 21"); 0 is the paper's plain focal loss.
PERSON_FACE_WEIGHT=${PERSON_FACE_WEIGHT:-8}
S0_STEPS=${S0_STEPS:-2000}
S1_STEPS=${S1_STEPS:-1500}
S2_STEPS=${S2_STEPS:-5000}
S2_SEEDS=${S2_SEEDS:-}                       # more stage-2 seeds, as replicates of the whole stage 2
PERSONS_CLIPS=${PERSONS_CLIPS:-24}           # held-out multi-person clips scored
# The toy DiT is small enough to train whole in every stage (HuMo trains only self-attention and the audio
# modules in stages 1 and 2 to keep a pretrained backbone intact; see docs/training.md for the measurement).
TRAINABLE=${TRAINABLE:-full}
# The face-weighted flow loss in stages 1 and 2 (stage 0 keeps the config's; 16 was measured worse, docs/training.md, "Session 11").
FACE_WEIGHT=${FACE_WEIGHT:-4}
# The DiT's latent width is the codec's.
LATENT=(--set model_overrides.in_dim="$CODEC_CHANNELS" --set model_overrides.out_dim="$CODEC_CHANNELS")
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}

mkdir -p "$OUT"
STEPS_TIMES="$OUT/times.tsv"
source "$(dirname "${BASH_SOURCE[0]}")/steps.sh"

step synth-train "$OUT/data/train/manifest.jsonl" \
  $HUMO synth --out "$OUT/data/train" --clips "$CLIPS" --frames 49:49 --seed 1
step synth-heldout "$OUT/data/heldout/manifest.jsonl" \
  $HUMO synth --out "$OUT/data/heldout" --clips 100 --frames 49:49 --seed 2 --split heldout
TRAIN_MANIFEST="$OUT/data/train/manifest.jsonl"
PERSONS=()
if (( MULTI_CLIPS > 0 )); then
  step synth-multi "$OUT/data/multi/manifest.jsonl" \
    $HUMO synth --out "$OUT/data/multi" --clips "$MULTI_CLIPS" --frames 49:49 --seed 21 --multi
  step synth-multi-heldout "$OUT/data/multi-heldout/manifest.jsonl" \
    $HUMO synth --out "$OUT/data/multi-heldout" --clips 40 --frames 49:49 --seed 22 --split heldout --multi
  step merge "$OUT/data/mixed/manifest.jsonl" \
    $HUMO data merge "$TRAIN_MANIFEST" "$OUT/data/multi/manifest.jsonl" --out "$OUT/data/mixed/manifest.jsonl"
  TRAIN_MANIFEST="$OUT/data/mixed/manifest.jsonl"
  PERSONS=(--set persons=true --set num_refs=3 --set model_overrides.person_mask_blocks="$PERSON_BLOCKS"
           --set person_face_weight="$PERSON_FACE_WEIGHT")
fi
# The latent codec: principal components of 4x4-pixel blocks, fitted in closed form (seconds; see
# docs/proving-ground.md, "The latent codec").
step codec "$OUT/codec/codec.json" \
  $HUMO fit-codec --manifest "$OUT/data/train/manifest.jsonl" --out "$OUT/codec" --channels "$CODEC_CHANNELS" \
  --scaling "$CODEC_SCALING" --clips 200
# The frozen toy text and audio encoders (seeded), with the codec: what precompute and the demo both use.
step encoders "$OUT/encoders/whisper" python -m humo.toy --out "$OUT/encoders" --vae "$OUT/codec"
step precompute "$OUT/cache/index.json" \
  $HUMO precompute --manifest "$TRAIN_MANIFEST" --out "$OUT/cache" --vae "$OUT/encoders/vae" \
  --text "$OUT/encoders/text" --audio "$OUT/encoders/whisper" --split train --quiet
# The held-out clips' conditions, for `python -m humo.evaluation.probes gap` (not used in training).
step precompute-heldout "$OUT/cache-heldout/index.json" \
  $HUMO precompute --manifest "$OUT/data/heldout/manifest.jsonl" --out "$OUT/cache-heldout" --vae "$OUT/encoders/vae" \
  --text "$OUT/encoders/text" --audio "$OUT/encoders/whisper" --quiet
step stage0 "$OUT/s0/final/ema.safetensors" \
  $HUMO train --config "$CONFIG" --set cache="$OUT/cache" --set out="$OUT/s0" --set stage=0 \
  --set steps="$S0_STEPS" "${LATENT[@]}"
step stage1 "$OUT/s1/final/ema.safetensors" \
  $HUMO train --config "$CONFIG" --set cache="$OUT/cache" --set out="$OUT/s1" --set stage=1 \
  --set steps="$S1_STEPS" --set lr=0.0005 --set face_loss_weight="$FACE_WEIGHT" --set init="$OUT/s0/final/ema.safetensors" --set trainable="$TRAINABLE" "${LATENT[@]}" "${PERSONS[@]}" \
  --set checkpoint_every=250 --set keep_checkpoints=0  # every checkpoint kept: the probes' curves
# stage2 RUN_FOLDER SEED
stage2() {
  $HUMO train --config "$CONFIG" --set cache="$OUT/cache" --set out="$1" --set stage=2 --set seed="$2" \
    --set steps="$S2_STEPS" --set lr=0.0003 --set face_loss_weight="$FACE_WEIGHT" --set init="$OUT/s1/final/ema.safetensors" --set trainable="$TRAINABLE" "${LATENT[@]}" "${PERSONS[@]}" \
    --set checkpoint_every=500 --set keep_checkpoints=0  # every checkpoint kept: `humo bench train --recipe`
}
# export RUN_FOLDER MODEL_FOLDER
export_model() {
  python -m humo.toy --out "$2" --dit "$1/final/ema.safetensors" --vae "$OUT/codec" --encoders "$OUT/encoders" \
    --dit-dtype bf16
}
step stage2 "$OUT/s2/final/ema.safetensors" stage2 "$OUT/s2" 0
step model "$OUT/model/dit.safetensors" export_model "$OUT/s2" "$OUT/model"
MODELS=(--model "$OUT/model")
for seed in $S2_SEEDS; do
  step "stage2-seed$seed" "$OUT/s2-seed$seed/final/ema.safetensors" stage2 "$OUT/s2-seed$seed" "$seed"
  step "model-seed$seed" "$OUT/model-seed$seed/dit.safetensors" export_model "$OUT/s2-seed$seed" "$OUT/model-seed$seed"
  MODELS+=(--model "$OUT/model-seed$seed")
done
if (( MULTI_CLIPS > 0 )); then
  PERSONS_OUT="$OUT/persons.json"
  [[ -n "$S2_SEEDS" ]] && PERSONS_OUT="$OUT/persons-seeds.json"
  step persons "$PERSONS_OUT" \
    python -m humo.evaluation.persons "${MODELS[@]}" --baseline "${BASELINE:-humo/assets/toy}" \
    --manifest "$OUT/data/multi-heldout/manifest.jsonl" --clips "$PERSONS_CLIPS" --out "$PERSONS_OUT" --figure "$OUT/turns.png"
  # The measures against stage-2 steps (predicted masks, strips, global audio; every CURVE_EVERY steps): the curve
  # resumes from OUT/persons-curve.json, and its plot, written last, marks the step done.
  step persons-curve "$OUT/persons-curve.png" \
    python -m humo.evaluation.persons --curve "$OUT/s2" --encoders "$OUT/encoders" \
    --manifest "$OUT/data/multi-heldout/manifest.jsonl" --clips "$PERSONS_CLIPS" --every "${CURVE_EVERY:-1000}" \
    --out "$OUT/persons-curve.json" --figure "$OUT/persons-curve.png"
fi

if [[ "${BUNDLE:-0}" == 1 ]]; then
  rm -rf humo/assets/toy && cp -r "$OUT/model" humo/assets/toy && echo "bundled into humo/assets/toy"
fi
awk -F'\t' '{s += $2; printf "%-14s %6d s\n", $1, $2} END {printf "%-14s %6d s\n", "total", s}' "$OUT/times.tsv"
