"""Fixtures shared by the whole suite: temporary data directories and a real Dagster instance."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

from trading_assets.defs.resources import DuckDBStoreResource, MarketDataResource

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real-1m"


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "store.duckdb"


@pytest.fixture
def dagster_instance(tmp_path: Path) -> Iterator[dg.DagsterInstance]:
    """A real SQLite-backed Dagster instance in a temporary DAGSTER_HOME."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    with dg.instance_for_test(temp_dir=str(home)) as instance:
        yield instance


@pytest.fixture
def resources(db_path: Path) -> dict[str, object]:
    """Resources for asset tests: a temporary DuckDB file and the deterministic synthetic market."""
    return {
        "market_data": MarketDataResource(source="synthetic", synthetic_predictability=0.4),
        "store": DuckDBStoreResource(path=str(db_path)),
    }


def pytest_report_header(config: pytest.Config) -> str | None:
    """Say at the top of the default run that the end-to-end tests are left out, and how to run them."""
    if config.getoption("markexpr") == "not e2e":
        return "e2e tests deselected: `pytest -m e2e` runs them (CI does), `pytest -m ''` runs everything"
    return None
