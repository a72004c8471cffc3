#!/usr/bin/env bash
# The main job: set up, get MNIST, train the third tutorial's network (seed-mlp), evaluate it,
# show one prediction and write the run's report. Offline, it trains the first tutorial's
# network on the embedded digits20 set instead, and says so.
set -euo pipefail
cd "$(dirname "$0")"
scripts/setup.sh
digitlab=.venv/bin/digitlab
stamp="$(date +%Y%m%d-%H%M%S)"
if "$digitlab" data fetch mnist; then
    run="runs/seed-mlp-mnist-$stamp"
    "$digitlab" train --model seed-mlp --dataset mnist --out "$run"
    sample=(--dataset mnist --split test --sample 0)
else
    echo >&2
    echo "NOTICE: MNIST could not be fetched (each source and its reason are above)." >&2
    echo "NOTICE: training the first tutorial's seed-20x20 on the embedded digits20 set instead." >&2
    echo >&2
    run="runs/seed-20x20-digits20-$stamp"
    "$digitlab" train --model seed-20x20 --dataset digits20 --out "$run"
    sample=(--dataset digits20 --sample 1015)
fi
"$digitlab" evaluate "$run"
"$digitlab" predict "${sample[@]}" --model "$run"
"$digitlab" report "$run"
echo
echo "The run is in $run: config.json, history.csv, metrics.json, model.pt (and model.npz,"
echo "its NumPy copy), plots/ and report.html (open it in a browser)."
