#!/usr/bin/env bash
# Set up (or bring up to date) the project's virtual environment in .venv. Safe to run repeatedly.
# torch (TORCH_VERSION, default 2.13.0) is installed first by scripts/torch_install.py: without a GPU the CPU
# build from PyTorch's CPU wheel index (if that index is unreachable, one line says so and plain pip decides:
# on this project's machines the CPU wheel that lies on disk), with a GPU (nvidia-smi works) PyPI's CUDA build.
# The project's range (torch>=2.4,<2.14) is then already satisfied, so `pip install -e` pulls no other torch.
set -euo pipefail
cd "$(dirname "$0")/.."
python_bin=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$python_bin" -m venv .venv
fi
pip=(.venv/bin/python -m pip --disable-pip-version-check -q)
.venv/bin/python scripts/torch_install.py  # nothing to do (and fast) when torch is already installed
"${pip[@]}" install -e '.[dev]' 2>&1 | grep -v "^WARNING: Location" || true
.venv/bin/python -c "import trading_assets, dagster, torch, duckdb, polars, ccxt, sklearn" \
    || { echo "setup failed: the project's packages do not import" >&2; exit 1; }
# The DuckLake store's extensions (duckdb-ext-ducklake, duckdb-ext-postgres, pinned with duckdb==1.4.4 in
# pyproject.toml) load from the installed packages, signatures checked, nothing downloaded.
.venv/bin/python -c "from trading_assets.store.duckdb_store import check_lake_extensions; check_lake_extensions()" \
    || { echo "setup failed: the DuckLake extensions do not load (pip install -e . pins them)" >&2; exit 1; }
