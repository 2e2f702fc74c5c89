#!/usr/bin/env bash
# Capability probes on a toy recipe folder whose stage 0 is trained (scripts/train_toy_model.sh): each mechanism
# trained on its own from a fixed starting point, its held-out curve scored at every kept checkpoint.
#
#   R=runs/toy-recipe bash scripts/probe_capabilities.sh
#
#   audio: the audio features carry the mouth opening (ridge probe; no training)
#   s1:    stage 1 alone from the stage-0 backbone -> identity through self-attention (subject gain)
#   s2-*:  stage 2 from that stage-1 model with audio-visual samples only -> sync through the audio
#          cross-attention (Sync-C against shuffled audio) and the mask head (IoU); one run per face loss weight
#   gap:   every kept checkpoint's face-loss gap, own vs another clip's reference and audio, on the held-out cache
# Results: $P/*.json and the curves' PNG ($P/curves.png). Resumable like the recipe.
set -euo pipefail
R=${R:-runs/toy-recipe}
P=${P:-$R/probes}
HUMO=${HUMO:-humo}
CONFIG=${CONFIG:-configs/toy.json}
S1=${S1:-800}
S2=${S2:-800}
EVERY=${EVERY:-200}
CLIPS=${CLIPS:-12}
FACE_WEIGHTS=${FACE_WEIGHTS:-"4 16"}
TRAINABLE=${TRAINABLE:-full}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
mkdir -p "$P"
# The DiT's latent width is the recipe codec's.
Z=$(python -c "import json, sys; print(json.load(open(sys.argv[1]))['z_dim'])" "$R/codec/codec.json")
LATENT=(--set model_overrides.in_dim="$Z" --set model_overrides.out_dim="$Z")

[[ -e "$P/audio.json" ]] || python -m humo.evaluation.probes audio --recipe "$R" --json "$P/audio.json"
# The evaluator's model folder: the recipe's codec and encoders (each checkpoint's DiT is swapped in).
[[ -e "$R/model/dit.safetensors" ]] || python -m humo.toy --out "$R/model" --dit "$R/s0/final/ema.safetensors" \
  --vae "$R/codec" --encoders "$R/encoders" --dit-dtype bf16
[[ -e "$P/s1/final/ema.safetensors" ]] || $HUMO train --config "$CONFIG" --set cache="$R/cache" --set out="$P/s1" \
  --set stage=1 --set steps="$S1" --set lr=0.0005 --set init="$R/s0/final/ema.safetensors" --set trainable="$TRAINABLE" \
  --set checkpoint_every="$EVERY" --set keep_checkpoints=0 "${LATENT[@]}"
for w in $FACE_WEIGHTS; do  # side by side, one thread each: the toy DiT does not keep two threads busy
  [[ -e "$P/s2-face$w/final/ema.safetensors" ]] || OMP_NUM_THREADS=1 $HUMO train --config "$CONFIG" \
    --set cache="$R/cache" --set out="$P/s2-face$w" --set stage=2 --set steps="$S2" --set lr=0.0003 \
    --set init="$P/s1/final/ema.safetensors" --set av_fraction_start=1 --set av_fraction_end=1 \
    --set face_loss_weight="$w" --set checkpoint_every="$EVERY" --set keep_checkpoints=0 --set trainable="$TRAINABLE" \
    "${LATENT[@]}" &
done
wait
runs=("$P/s1")
for w in $FACE_WEIGHTS; do runs+=("$P/s2-face$w"); done
for run in "${runs[@]}"; do
  OMP_NUM_THREADS=1 python -m humo.evaluation.probes curve --recipe "$R" --run "$run" --clips "$CLIPS" \
    --json "$run.json" > "$run.log" 2>&1 &
done
wait
for run in "${runs[@]}"; do
  python -m humo.evaluation.probes gap --run "$run" --cache "$R/cache-heldout" --json "$run-gap.json" >> "$run.log"
done
cat "$P"/*.log
python -m humo.evaluation.probes plot --json "${runs[@]/%/.json}" --out "$P/curves.png"
python -m humo.evaluation.probes plot --json "${runs[@]/%/-gap.json}" --out "$P/gaps.png"
