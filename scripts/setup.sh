#!/usr/bin/env bash
# Set up (or bring up to date) the project's virtual environment in .venv. Safe to run repeatedly.
# torch==2.13.0 is installed first: on this project's machines pip takes the CPU wheel that lies on disk,
# and the project's range (torch>=2.4,<2.14) is then already satisfied, so no multi-GB CUDA build is pulled.
set -euo pipefail
cd "$(dirname "$0")/.."
python_bin=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$python_bin" -m venv .venv
fi
pip=(.venv/bin/python -m pip --disable-pip-version-check -q)
if ! .venv/bin/python -c "import torch" >/dev/null 2>&1; then
    "${pip[@]}" install "torch==${TORCH_VERSION:-2.13.0}"
fi
"${pip[@]}" install -e '.[dev]' 2>&1 | grep -v "^WARNING: Location" || true
.venv/bin/python -c "import trading_assets, dagster, torch, duckdb, polars, ccxt, sklearn" \
    || { echo "setup failed: the project's packages do not import" >&2; exit 1; }
