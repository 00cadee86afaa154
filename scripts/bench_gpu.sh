#!/usr/bin/env bash
# The training benchmark on a GPU machine: `trading-assets bench training` with --device auto (CUDA there),
# which also measures the same trainer on that machine's CPU and runs the old recipe (CPU) for comparison;
# then `bench retrain` (the model assets' code path and defaults; BENCH_RETRAIN_DAYS, default 730; more of its
# options in BENCH_RETRAIN_ARGS, e.g. "--symbols BTC-USD": 3 symbols take ~15 min on an H200, one ~5 min).
# Usage: scripts/bench_gpu.sh OUTPUT_DIR [BASELINE_RECIPE]  (python3 with torch, numpy; bench retrain also needs
# the project installed: pip install -e .)
set -euo pipefail
out=${1:?output directory}
baseline=${2:-$(dirname "$0")/../../shared/bench/baseline_recipe.py}
seconds=${BENCH_SECONDS:-20}
bench() { PYTHONPATH=. python3 -m trading_assets.cli bench training --baseline "$baseline" "$@"; }
mkdir -p "$out"
python3 -c 'import torch; print(torch.__version__, torch.cuda.is_available() and torch.cuda.get_device_name())'
bench --arch bi --seconds "$seconds" --json "$out/training_bi_b64.json"
bench --arch bi --seconds "$seconds" --batch-size 1024 --skip-baseline --json "$out/training_bi_b1024.json"
bench --arch bi --write-data "$out/data.npz" >/dev/null
bench --arch bi --target-val-loss 0.38 --max-seconds 150 --data "$out/data.npz" --json "$out/training_target.json"
rm -f "$out/data.npz"
PYTHONPATH=. python3 -m trading_assets.cli bench retrain --days "${BENCH_RETRAIN_DAYS:-730}" ${BENCH_RETRAIN_ARGS:-} \
    --json "$out/retrain.json"
