#!/usr/bin/env bash
# The proving-ground model bundled in humo/assets/toy, from nothing: data -> VAE -> caches -> DiT stages 0, 1, 2.
#
#   bash scripts/train_toy_model.sh            # = make toy-model; OUT=runs/toy-recipe by default
#   BUNDLE=1 bash scripts/train_toy_model.sh   # also copy the result into humo/assets/toy
#
# Every step skips itself when its output exists, and `humo train` / `humo train-vae` resume from their last
# checkpoint, so rerunning after an interruption continues where it stopped. Wall time of each step goes to
# OUT/times.tsv. Step sizes are set for about 90 minutes on 2 CPU cores (see docs/training.md, "The bundled model").
set -euo pipefail

OUT=${OUT:-runs/toy-recipe}
HUMO=${HUMO:-humo}
CONFIG=${CONFIG:-configs/toy.json}
CLIPS=${CLIPS:-640}
VAE_STEPS=${VAE_STEPS:-1350}
VAE_WHOLE_STEPS=${VAE_WHOLE_STEPS:-300}
S0_STEPS=${S0_STEPS:-2000}
S1_STEPS=${S1_STEPS:-500}
S2_STEPS=${S2_STEPS:-1500}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}

mkdir -p "$OUT"
step() {  # step NAME DONE_FILE COMMAND...: run COMMAND unless DONE_FILE exists; log its wall time
  local name=$1 done_file=$2; shift 2
  if [[ -e "$done_file" ]]; then echo "== $name: done ($done_file)"; return; fi
  echo "== $name: $*"
  local t0=$SECONDS
  "$@"
  printf '%s\t%d\n' "$name" $((SECONDS - t0)) >> "$OUT/times.tsv"
}

step synth-train "$OUT/data/train/manifest.jsonl" \
  $HUMO synth --out "$OUT/data/train" --clips "$CLIPS" --frames 49:49 --seed 1
step synth-heldout "$OUT/data/heldout/manifest.jsonl" \
  $HUMO synth --out "$OUT/data/heldout" --clips 100 --frames 49:49 --seed 2 --split heldout
# 9-frame windows first (fast: the frames themselves)...
step vae "$OUT/vae-run/vae/config.json" \
  $HUMO train-vae --manifest "$OUT/data/train/manifest.jsonl" --out "$OUT/vae-run" \
  --set steps="$VAE_STEPS" --set long_from=0 --set threads=2
# ...then whole 49-frame clips only: the causal cache must see clip-length context, or later chunks drift (after
# the first phase alone, frames 1-9 of a held-out clip come back at 22 dB and frames 13-49 at 14-15 dB).
step vae-whole "$OUT/vae-whole/vae/config.json" \
  $HUMO train-vae --manifest "$OUT/data/train/manifest.jsonl" --out "$OUT/vae-whole" \
  --set init="$OUT/vae-run/vae" --set frames=49 --set batch_size=1 --set long_from=0 --set lr=0.0005 \
  --set warmup_steps=20 --set steps="$VAE_WHOLE_STEPS" --set checkpoint_every=50 --set threads=2
# The frozen toy text and audio encoders (seeded), with the trained VAE: what precompute and the demo both use.
step encoders "$OUT/encoders/whisper" python -m humo.toy --out "$OUT/encoders" --vae "$OUT/vae-whole/vae"
step precompute "$OUT/cache/index.json" \
  $HUMO precompute --manifest "$OUT/data/train/manifest.jsonl" --out "$OUT/cache" --vae "$OUT/encoders/vae" \
  --text "$OUT/encoders/text" --audio "$OUT/encoders/whisper" --split train --quiet
step stage0 "$OUT/s0/final/ema.safetensors" \
  $HUMO train --config "$CONFIG" --set cache="$OUT/cache" --set out="$OUT/s0" --set stage=0 \
  --set steps="$S0_STEPS"
step stage1 "$OUT/s1/final/ema.safetensors" \
  $HUMO train --config "$CONFIG" --set cache="$OUT/cache" --set out="$OUT/s1" --set stage=1 \
  --set steps="$S1_STEPS" --set lr=0.0003 --set init="$OUT/s0/final/ema.safetensors"
step stage2 "$OUT/s2/final/ema.safetensors" \
  $HUMO train --config "$CONFIG" --set cache="$OUT/cache" --set out="$OUT/s2" --set stage=2 \
  --set steps="$S2_STEPS" --set lr=0.0003 --set init="$OUT/s1/final/ema.safetensors" \
  --set checkpoint_every=200 --set keep_checkpoints=0  # every stage-2 checkpoint kept: `humo bench train --recipe`
step model "$OUT/model/dit.safetensors" \
  python -m humo.toy --out "$OUT/model" --dit "$OUT/s2/final/ema.safetensors" --vae "$OUT/vae-whole/vae" \
  --encoders "$OUT/encoders" --dit-dtype bf16

if [[ "${BUNDLE:-0}" == 1 ]]; then
  rm -rf humo/assets/toy && cp -r "$OUT/model" humo/assets/toy && echo "bundled into humo/assets/toy"
fi
awk -F'\t' '{s += $2; printf "%-14s %6d s\n", $1, $2} END {printf "%-14s %6d s\n", "total", s}' "$OUT/times.tsv"
