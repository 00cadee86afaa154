"""`trading-assets bench NAME`: the benchmark package is imported only when asked, and what it lacks is one line."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from trading_assets.cli import main


def _refusal(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    code = main(argv)
    output = capsys.readouterr()
    assert code == 2 and output.out == ""
    [line] = output.err.splitlines()
    return line


def test_a_missing_dependency_of_a_benchmark_names_the_extra(capsys, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(sys.modules, "trading_assets_bench.features", raising=False)
    monkeypatch.setitem(sys.modules, "pandas", None)  # as if pandas were not installed
    assert _refusal(["bench", "features"], capsys) == (
        "trading-assets bench: the features benchmark needs pandas, which is not installed: "
        "pip install -e '.[bench]' in a source checkout (or '.[dev]')"
    )


def test_a_missing_baseline_recipe_is_refused_before_measuring(tmp_path: Path, capsys) -> None:
    absent = tmp_path / "baseline_recipe.py"
    assert _refusal(["bench", "training", "--baseline", str(absent), "--seconds", "600"], capsys) == (
        f"trading-assets bench: baseline recipe {absent} not found: pass --baseline PATH or --skip-baseline"
    )


def test_the_shipped_package_holds_no_benchmark_or_harness() -> None:
    package = Path(__import__("trading_assets").__file__).parent
    assert not (package / "bench").exists()
    assert not list(package.rglob("loopback_exchange.py")) and not list(package.rglob("dagster_server.py"))
