"""The private Dagster names of `trading_assets.defs.dagster_private` still exist, on the pinned release."""

import importlib
import tomllib
from pathlib import Path

import dagster as dg

from trading_assets.defs import dagster_private

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"


def test_every_private_name_imports_and_has_its_use_listed() -> None:
    module = importlib.reload(dagster_private)
    names = set(module.__all__) - {"DAGSTER_VERSION", "USES"}
    assert names == set(module.USES)
    assert all(getattr(module, name) is not None for name in names)


def test_installed_dagster_is_the_release_the_private_names_were_checked_against() -> None:
    pinned = tomllib.loads(PYPROJECT.read_text())["project"]["dependencies"]
    assert f"dagster=={dagster_private.DAGSTER_VERSION}" in pinned, (
        "pyproject.toml and DAGSTER_VERSION differ"
    )
    uses = "\n".join(f"  {name}: {use}" for name, use in dagster_private.USES.items())
    assert dg.__version__ == dagster_private.DAGSTER_VERSION, (
        f"dagster {dg.__version__} is installed, the private names in trading_assets/defs/dagster_private.py "
        f"were checked against {dagster_private.DAGSTER_VERSION}. Re-check each, then update DAGSTER_VERSION:\n"
        f"{uses}"
    )
