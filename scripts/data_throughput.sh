#!/usr/bin/env bash
# Throughput of `humo data run` (docs/data-pipeline.md, "Throughput"): N synthetic talking videos (four shots with
# hard cuts, speech-like stereo 44.1 kHz AAC, H.264 at 30 fps, so normalise resamples them), through every stage
# into a fresh run folder; the summary's last line is the number (input videos per minute).
#
#   bash scripts/data_throughput.sh                          # 8 videos, 1280x720, 20 s each
#   N=8 SIZE=640x360 WORKERS=2 bash scripts/data_throughput.sh
#   EXECUTOR=ray SIZE=640x360 bash scripts/data_throughput.sh  # Ray Data on a local cluster (the `ray` extra)
#
# The videos have no face, so the faces, sync and references stages keep them (--face-missing-max 1 --sync-min 0
# --no-reference keep): every stage does its work on every segment.
#
# The inputs are made once (tests/data_media.py) and kept; the run folder is made anew each time.
set -euo pipefail
cd "$(dirname "$0")/.."

N=${N:-8}
SIZE=${SIZE:-1280x720}
LENGTH=${LENGTH:-20}
WORKERS=${WORKERS:-1}
EXECUTOR=${EXECUTOR:-local}
DIR=${DIR:-runs/data-throughput/$SIZE-${LENGTH}s}
PY=${PY:-python}
HUMO=${HUMO:-humo}

if [[ ! -e "$DIR/videos/.done" ]]; then
  mkdir -p "$DIR/videos"
  PYTHONPATH=.${PYTHONPATH:+:$PYTHONPATH} $PY - "$DIR/videos" "$N" "$SIZE" "$LENGTH" <<'EOF'
import sys
from pathlib import Path

from tests.data_media import make_talk

out, n, size, length = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3], float(sys.argv[4])
w, h = map(int, size.split("x"))
for i in range(n):
    # cuts at a quarter, a half and three quarters of the video, shifted per video
    cuts = [round(length * q + 0.3 * (i % 3), 2) for q in (0.25, 0.5, 0.75)]
    make_talk(out / f"talk{i:03d}.mp4", cuts_s=cuts, seconds=length, size=(w, h))
EOF
  touch "$DIR/videos/.done"
fi
rm -rf "$DIR/out-$EXECUTOR"
$HUMO data run --input "$DIR/videos" --out "$DIR/out-$EXECUTOR" --workers "$WORKERS" --executor "$EXECUTOR" \
  --face-missing-max 1 --sync-min 0 --no-reference keep
