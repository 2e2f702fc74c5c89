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

# start STUDY PRESET LOG [FLAGS...]: `humo STUDY --study PRESET FLAGS` appending to LOG, unless it is running already
start() {
    local study=$1 preset=$2 log=$3
    shift 3
    if pgrep -f "humo $study --study $preset" > /dev/null; then
        echo "studies: humo $study --study $preset is running already; left alone"
    else
        echo "studies: humo $study --study $preset $* (log $log)"
        humo "$study" --study "$preset" "$@" >> "$log" 2>&1
    fi
}

if [ ! -f runs/toy-recipe/s0/final/ema.safetensors ]; then
    UNTIL=stage0 bash scripts/train_toy_model.sh
fi

# the ratio study's report from its ledger alone ("N of M runs finished; ..."), written to a folder thrown away
report=$(mktemp -d)
ratios_left=$(humo ratios --study configs/ratios-v2.json --report --out "$report" | tail -1 | awk '{print $3 - $1}')
rm -rf "$report"
echo "studies: the ratio study has $ratios_left run(s) left"

if [ "$ratios_left" -gt 0 ]; then
    OMP_NUM_THREADS=1 start ratios configs/ratios-v2.json runs/chain-ratios.out &
    OMP_NUM_THREADS=1 start ablate configs/ablate-v4.json runs/chain-ablate.out &
else
    OMP_NUM_THREADS=1 start ratios configs/ratios-v2.json runs/chain-ratios.out  # its tables, from the ledger
    start ablate configs/ablate-v4.json runs/chain-ablate.out --jobs 2 &
fi
wait
echo "studies: done here; tables in runs/ratios-v2/ratios.md and runs/ablate-v4/ablation.md once each study ends"
