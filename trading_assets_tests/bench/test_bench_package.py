"""The benchmarks are not part of the product: out of its wheel, reached through the core (never the Dagster
shell), and still found by `trading-assets bench` from any directory under an editable install."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import setuptools

import trading_assets_bench
from trading_assets import cli
from trading_assets.cli import main
from trading_assets_tests.test_code_shape import ROOT, _imports, _modules

BENCH = Path(trading_assets_bench.__file__).resolve().parent
#: the Dagster shell: the assets, resources and sensors, and the code location built from them
SHELL = ("trading_assets.defs", "trading_assets.definitions")


def shell_imports(package: Path) -> list[str]:
    """`file: module` for each import of the Dagster shell by a module of `package`."""
    found = set()
    for module, path in _modules(package).items():
        for base, names in _imports(path, module):
            for name in [base, *(f"{base}.{name}" for name in names)]:
                if any(name == shell or name.startswith(f"{shell}.") for shell in SHELL):
                    found.add(f"{path.relative_to(package.parent)}: {name}")
                    break
    return sorted(found)


def test_no_benchmark_module_imports_the_dagster_shell() -> None:
    assert shell_imports(BENCH) == []


def test_the_shell_check_finds_an_import_of_the_shell(tmp_path: Path) -> None:
    package = tmp_path / "bench_like"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("def f():\n    from trading_assets.defs.assets import models\n")
    (package / "b.py").write_text(
        "from trading_assets import definitions\nfrom trading_assets.ml import fit\n"
    )
    assert shell_imports(package) == [
        "bench_like/a.py: trading_assets.defs.assets",
        "bench_like/b.py: trading_assets.definitions",
    ]


def test_the_products_package_list_holds_neither_the_benchmarks_nor_the_tests() -> None:
    find = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]
    packages = setuptools.find_packages(
        where=str(ROOT), include=find["include"], exclude=find.get("exclude", ())
    )
    assert "trading_assets" in packages and "trading_assets.ml" in packages
    assert [name for name in packages if name.split(".")[0] != "trading_assets"] == []


def test_a_missing_benchmark_package_is_one_line(capsys, monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    """As under a wheel install: no trading_assets_bench beside the package, nor anywhere on the path."""
    for name in [name for name in sys.modules if name.startswith("trading_assets_bench")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setattr(sys, "path", [entry for entry in sys.path if Path(entry or ".").resolve() != ROOT])
    monkeypatch.setattr(cli, "_CHECKOUT", tmp_path)
    assert main(["bench", "ingest", "--help"]) == 2
    output = capsys.readouterr()
    assert output.out == ""
    assert output.err.splitlines() == [
        "trading-assets bench: the benchmarks are not part of the installed package: run them from a source "
        "checkout installed with pip install -e '.[dev]'"
    ]


def test_the_command_finds_the_benchmarks_from_any_directory(tmp_path: Path) -> None:
    """The editable install maps only the product's package; the command finds the checkout's benchmarks."""
    command = Path(sys.executable).parent / "trading-assets"
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    done = subprocess.run(
        [str(command), "bench", "ingest", "--help"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "usage: trading-assets bench ingest" in done.stdout
