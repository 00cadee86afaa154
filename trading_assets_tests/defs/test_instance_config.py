"""The shipped instance configuration: dead run workers are detected, and only crashed runs are retried."""

from __future__ import annotations

import shutil
from pathlib import Path

import dagster as dg
import yaml

ROOT = Path(__file__).resolve().parents[2]


def test_the_shipped_instance_monitors_runs_and_retries_only_crashed_workers(tmp_path: Path) -> None:
    shutil.copy(ROOT / "dagster_home" / "dagster.yaml", tmp_path / "dagster.yaml")
    with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
        assert instance.run_monitoring_enabled
        assert instance.run_retries_enabled and instance.run_retries_max_retries == 1
        assert instance.run_retries_retry_on_asset_or_op_failure is False


def test_the_postgres_template_has_the_same_run_monitoring_and_retries() -> None:
    shipped = yaml.safe_load((ROOT / "dagster_home" / "dagster.yaml").read_text())
    template = yaml.safe_load((ROOT / "deploy" / "postgres" / "dagster.yaml").read_text())
    for section in ("run_monitoring", "run_retries"):
        assert template[section] == shipped[section]
