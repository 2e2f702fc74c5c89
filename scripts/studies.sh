#!/usr/bin/env bash
# The two long proving-ground studies, resumed wherever they stand: OmniHuman-1's ratio study (issue 20,
# configs/ratios-v2.json) and HuMo's ablations, study v4 (issue 21, configs/ablate-v4.json).
#
# On 2 cores two processes of one thread each train more samples per second than one process of two threads
# (docs/training.md, section 6), so while both studies have runs left they train side by side, one thread each;
# once the ratio study's ledger holds every run, study v4 runs its seeds in two workers (--jobs 2).
# Each study trains only what its ledger (results/) and its run folder (runs/) lack, so this is safe to rerun at
# any time, on any machine; a study already running is left alone. It first builds the recipe to its stage-0
# backbone if runs/toy-recipe lacks it (about 40 minutes on 2 cores).
#
#   nohup bash scripts/studies.sh > runs/studies.out 2>&1 &     # logs: runs/chain-ratios.out, runs/chain-ablate.out
#   git add results && git commit -m "results: ..."           # after each finished run: only what is committed survives
set -euo pipefail
cd "$(dirname "$0")/.."
[ -d .venv ] && source .venv/bin/activate
mkdir -p runs

running() { pgrep -f "humo $1 --study $2" > /dev/null; }

if [ ! -f runs/toy-recipe/s0/final/ema.safetensors ]; then
    UNTIL=stage0 bash scripts/train_toy_model.sh
fi

ratios_left=$(python - <<'EOF'
import json
from pathlib import Path

from humo.evaluation.ratio_study import RatioStudyConfig, plan

cfg = RatioStudyConfig(**json.loads(Path("configs/ratios-v2.json").read_text()))
print(sum(not (Path(cfg.ledger) / "runs" / f"{r['name']}.json").exists() for r in plan(cfg)))
EOF
)
echo "studies: the ratio study has $ratios_left run(s) left"

if [ "$ratios_left" -gt 0 ]; then
    running ratios configs/ratios-v2.json || \
        OMP_NUM_THREADS=1 humo ratios --study configs/ratios-v2.json >> runs/chain-ratios.out 2>&1 &
    running ablate configs/ablate-v4.json || \
        OMP_NUM_THREADS=1 humo ablate --study configs/ablate-v4.json >> runs/chain-ablate.out 2>&1 &
else
    running ratios configs/ratios-v2.json || \
        OMP_NUM_THREADS=1 humo ratios --study configs/ratios-v2.json >> runs/chain-ratios.out 2>&1  # tables only
    running ablate configs/ablate-v4.json || \
        humo ablate --study configs/ablate-v4.json --jobs 2 >> runs/chain-ablate.out 2>&1 &
fi
wait
echo "studies: both returned; tables in runs/ratios-v2/ratios.md and runs/ablate-v4/ablation.md"
