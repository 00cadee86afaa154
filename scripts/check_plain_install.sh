#!/usr/bin/env bash
# A plain install works: in a fresh virtual environment, `pip install .` (not editable, no extras) of this
# working tree, then every module of the shipped package imports and the shipped commands answer --help.
# No test or benchmark code and no dev-only dependency (pandas, pytest, hypothesis) may be needed or installed.
# Everything it writes (venv, source copy, caches, Dagster home) lives in one temporary directory, removed
# on exit. Usage: scripts/check_plain_install.sh   (PYTHON=python3.12 to pick the interpreter)
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d -t ta-plain-install-XXXXXX)
trap 'rm -rf "$tmp"' EXIT
export PIP_CACHE_DIR="$tmp/cache/pip" XDG_CACHE_HOME="$tmp/cache" MPLCONFIGDIR="$tmp/cache/matplotlib"
export DAGSTER_HOME="$tmp/dagster_home" PIP_DISABLE_PIP_VERSION_CHECK=1
unset PYTHONPATH
mkdir -p "$DAGSTER_HOME"

# Build from a copy of the working tree (tracked and untracked, not ignored): a build writes build/ and
# *.egg-info next to the sources, which must not land in the checkout.
git ls-files -z --cached --others --exclude-standard | tar -c --null -T - -f - | tar -x -f - -C "$tmp" \
    --one-top-level=src

"${PYTHON:-python3}" -m venv "$tmp/venv"
python=$tmp/venv/bin/python
# pip's notes about this machine's local index locations are noise, as in scripts/setup.sh; pip's exit
# status still decides (pipefail).
pip() { "$python" -m pip -q "$@" 2>&1 | { grep -v "^WARNING: Location" || true; }; }
# As scripts/setup.sh: torch 2.13.0 first (the CPU wheel on this project's machines), then the project.
pip install "torch==${TORCH_VERSION:-2.13.0}"
pip install "$tmp/src"

cd "$tmp"  # nothing importable from the current directory
PYTHONWARNINGS=ignore "$python" - <<'EOF'  # (Dagster's beta/preview notes are not failures)
import importlib
import importlib.util
import pkgutil

import trading_assets

dev_only = [name for name in ("pandas", "pytest", "hypothesis", "trading_assets_tests", "trading_assets_bench")
            if importlib.util.find_spec(name) is not None]
assert not dev_only, f"a plain install has dev-only packages: {dev_only}"
names = ["trading_assets"] + [
    module.name for module in pkgutil.walk_packages(trading_assets.__path__, "trading_assets.")
]
failed = []
for name in names:
    try:
        importlib.import_module(name)
    except Exception as error:  # report every module that fails, then fail
        failed.append(f"{name}: {type(error).__name__}: {error}")
print(f"imported {len(names) - len(failed)} of {len(names)} modules of trading_assets")
assert not failed, "\n".join(failed)
EOF
"$tmp/venv/bin/trading-assets" --help >/dev/null
"$tmp/venv/bin/trading-assets" demo --help >/dev/null
# A benchmark from a plain install (no checkout beside it, no bench extra) is refused in one line (exit 2),
# not a traceback.
set +e
refusal=$("$tmp/venv/bin/trading-assets" bench features 2>&1)
code=$?
set -e
if [ "$code" -ne 2 ] || [ "$(printf '%s\n' "$refusal" | wc -l)" -ne 1 ]; then
    printf 'bench features from a plain install: exit %s, output:\n%s\n' "$code" "$refusal" >&2
    exit 1
fi
echo "plain install OK: trading-assets --help, demo --help; bench from a plain install: $refusal"
