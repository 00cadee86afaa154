"""Executor choice by settings, and a real run through the Dask executor on a loopback cluster.

The Dask test starts a scheduler and two workers as separate processes (trading_assets_tests/servers/
dask_cluster.py), runs raw_candles + features for 2 symbols x 3 days (the first day is the lookback of the
second) through `executor_from_settings` with TA_EXECUTOR=dask, and checks that the steps ran in the
worker processes and wrote to the temporary DuckDB file those workers were pointed at.
"""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import dagster as dg
import pytest

from trading_assets.defs.executors import executor_from_settings
from trading_assets.defs.partitions import partition_range_tags
from trading_assets.defs.resources import DuckDBStoreResource, MarketDataResource
from trading_assets.features.registry import FEATURE_NAMES
from trading_assets.features.store import read_features
from trading_assets.settings import Settings, load_settings
from trading_assets.store.duckdb_store import read_candles
from trading_assets_tests.defs.code_location import date_partitions, features, raw_candles, symbol_partitions
from trading_assets_tests.servers.dask_cluster import DaskCluster, dask_cluster

FIRST, LAST = date(2024, 2, 1), date(2024, 2, 3)  # FIRST is only the lookback of the feature days after it
MINUTES = 1440
JOB_NAME = "market_data_on_dask"


def market_data_job() -> dg.JobDefinition:
    """raw_candles + features with the executor and paths of the *current process's* environment.

    Module-level so `dg.reconstructable` can point at it: the test process builds the plan from it and
    every Dask worker imports this module and calls it again, with the environment the worker was
    started with. That is how TA_DUCKDB_PATH and TA_EXECUTOR reach the steps, as in a deployment.
    """
    settings = load_settings()
    # A named job: reconstructable() refuses the reserved name of the implicit asset job (__ASSET_JOB).
    job = dg.define_asset_job(JOB_NAME, selection=[raw_candles, features])
    return dg.Definitions(
        assets=[raw_candles, features],
        jobs=[job],
        resources={
            "market_data": MarketDataResource.from_settings(settings),
            "store": DuckDBStoreResource(path=str(settings.duckdb_path)),
        },
        executor=executor_from_settings(settings),
    ).resolve_job_def(JOB_NAME)


def _settings(executor: str, dask_scheduler: str | None = None) -> Settings:
    return replace(load_settings(), executor=executor, dask_scheduler=dask_scheduler)


def _configured(executor: dg.ExecutorDefinition) -> dict[str, object]:
    resolved = executor.config_schema.resolve_config({})
    assert resolved.success, resolved.errors
    return resolved.value["config"]


def test_in_process_setting_gives_the_in_process_executor() -> None:
    assert executor_from_settings(_settings("in_process")) is dg.in_process_executor


def test_multiprocess_setting_gives_bounded_concurrency_and_retries() -> None:
    # Imported here, not at module level: Dask workers import this module and need no torch.
    from trading_assets.defs.assets.models import TRAINING_TAG
    from trading_assets.ml.training_run import TRAINING_SLOTS

    executor = executor_from_settings(_settings("multiprocess"))
    assert executor.name == "multiprocess"
    assert _configured(executor) == {
        "max_concurrent": 4,
        "tag_concurrency_limits": [{"key": TRAINING_TAG, "limit": TRAINING_SLOTS}],
        "retries": {"enabled": {}},
    }


def test_multiprocess_is_the_default() -> None:
    assert Settings().executor == "multiprocess"


def test_dask_setting_connects_to_the_existing_scheduler() -> None:
    executor = executor_from_settings(_settings("dask", "tcp://10.0.0.5:8786"))
    assert executor.name == "dask"
    assert _configured(executor) == {"cluster": {"existing": {"address": "tcp://10.0.0.5:8786"}}}


def test_dask_tasks_are_one_per_step_and_run_grouped_by_step() -> None:
    """Two runs of one job at once get their own Dask task for each step (dagster-dask's own key is the same
    in every run: the second run would receive the first run's results and skip its step); the tasks of a
    step share Dask's task prefix, so the scheduler learns the step's duration across runs."""
    from dask.utils import key_split

    from trading_assets.defs.dask_executor import step_task_key

    first, second = (step_task_key("daily_market_data", "raw_candles", str(uuid.uuid4())) for _ in range(2))
    assert first != second
    assert key_split(first) == key_split(second) == "daily_market_data.raw_candles"


def test_dask_without_a_scheduler_address_names_the_variable() -> None:
    with pytest.raises(ValueError, match="TA_DASK_SCHEDULER"):
        executor_from_settings(_settings("dask", None))


def test_dask_without_the_extra_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "dagster_dask", None)  # makes `import dagster_dask` raise ImportError
    with pytest.raises(ImportError, match=r"`dask` extra"):
        executor_from_settings(_settings("dask", "tcp://127.0.0.1:8786"))


def test_unknown_executor_is_refused() -> None:
    """Settings refuse an executor they do not declare (TA_EXECUTOR from the environment: test_settings.py)."""
    with pytest.raises(ValueError, match="Input should be 'in_process', 'multiprocess' or 'dask'"):
        executor_from_settings(_settings("celery"))


@pytest.fixture
def cluster_env(tmp_path: Path) -> dict[str, str]:
    """Settings for the workers: a temporary data dir and DuckDB file, the synthetic market, and the
    same symbols and history start as this process's partitions (the workers rebuild them on import)."""
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    return {
        "TA_DATA_DIR": str(data_dir),
        "TA_DUCKDB_PATH": str(data_dir / "store.duckdb"),
        "TA_MODELS_DIR": str(tmp_path / "models"),
        "TA_SOURCE": "synthetic",
        "TA_SYMBOLS": ",".join(symbol_partitions.get_partition_keys()),
        "TA_HISTORY_START": date_partitions.start.date().isoformat(),
        "TA_EXECUTOR": "dask",
    }


@pytest.fixture
def cluster(tmp_path: Path, cluster_env: dict[str, str]) -> Iterator[DaskCluster]:
    with dask_cluster(tmp_path / "dask", env=cluster_env, n_workers=2) as running:
        yield running


@pytest.mark.e2e  # starts a Dask scheduler and two workers
def test_partitioned_run_on_a_dask_cluster(
    cluster: DaskCluster,
    cluster_env: dict[str, str],
    dagster_instance: dg.DagsterInstance,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, value in {**cluster_env, "TA_DASK_SCHEDULER": cluster.address}.items():
        monkeypatch.setenv(name, value)
    symbols = tuple(sorted(symbol_partitions.get_partition_keys())[:2])
    db_path = Path(cluster_env["TA_DUCKDB_PATH"])

    with dg.execute_job(
        dg.reconstructable(market_data_job),
        instance=dagster_instance,
        tags=partition_range_tags(FIRST, LAST, symbols),
    ) as result:
        assert result.success, cluster.logs()
        events = dagster_instance.all_logs(result.run_id)
        check_evaluations = result.get_asset_check_evaluations()
        candle_partitions = {m.partition for m in result.asset_materializations_for_node("raw_candles")}
        feature_partitions = {m.partition for m in result.asset_materializations_for_node("features")}

    # The steps ran in the worker processes; the run itself was orchestrated here.
    step_pids = {e.dagster_event.pid for e in events if e.dagster_event and e.dagster_event.is_step_start}
    assert len([e for e in events if e.dagster_event and e.dagster_event.is_step_success]) == 2
    assert step_pids and step_pids <= set(cluster.worker_pids.values()), (step_pids, cluster.worker_pids)
    assert os.getpid() not in step_pids
    run_start = next(
        e for e in events if e.dagster_event and e.dagster_event.event_type == dg.DagsterEventType.RUN_START
    )
    assert run_start.dagster_event.pid == os.getpid()

    days = [FIRST + timedelta(days=n) for n in range((LAST - FIRST).days + 1)]
    expected = {f"{day.isoformat()}|{symbol}" for day in days for symbol in symbols}
    assert candle_partitions == expected and feature_partitions == expected

    # Per-partition checks: 6 on raw_candles and 4 on features for each (symbol, day).
    by_check = {(e.asset_key.path[-1], e.check_name, e.partition): e.passed for e in check_evaluations}
    assert len(check_evaluations) == len(by_check) == (6 + 4) * len(expected)
    assert {partition for (_, _, partition) in by_check} == expected
    failed = {key for key, passed in by_check.items() if not passed}
    # Only the lookback day may lack usable coverage (its own lookback day was not loaded).
    assert failed <= {("features", "usable_coverage", f"{FIRST.isoformat()}|{s}") for s in symbols}, failed

    # The rows are in the temporary DuckDB file the workers were pointed at.
    end = LAST + timedelta(days=1)
    for symbol in symbols:
        candles = read_candles(db_path, [symbol], _utc(FIRST), _utc(end))
        assert candles.height == len(days) * MINUTES
        feature_rows = read_features(db_path, symbol, FIRST + timedelta(days=1), end)
        assert feature_rows.height == (len(days) - 1) * MINUTES
        assert feature_rows.select(FEATURE_NAMES).null_count().sum_horizontal().item() == 0
        assert feature_rows["usable"].all()


def _utc(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)
