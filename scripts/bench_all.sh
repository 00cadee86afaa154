#!/usr/bin/env bash
# Every CPU benchmark of the project, one after another, JSON into bench-results/ (or $1).
# The backfill benchmark starts `dagster dev`; run it alone: trading-assets bench backfill --days 730.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-bench-results}
mkdir -p "$out"
ta=.venv/bin/trading-assets
$ta bench features --json "$out/features.json"
$ta bench runtime --json "$out/runtime.json"
$ta bench training --arch bi --seconds 20 --json "$out/training_bi.json"
$ta bench training --arch bi --write-data "$out/training_data.npz" >/dev/null
$ta bench training --arch bi --target-val-loss 0.38 --data "$out/training_data.npz" --json "$out/training_target.json"
$ta bench training --arch bi --rows 721417 --seconds 10 --skip-baseline --json "$out/training_721k.json"
rm -f "$out/training_data.npz"
$ta bench ingest --days 730 --json "$out/ingest.json"
