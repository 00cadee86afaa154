import base64
import shutil
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from trading_assets.definitions import defs
from trading_assets.defs.assets import candles
from trading_assets.defs.assets.candles import _partition_checks
from trading_assets.defs.partitions import partition_range_tags
from trading_assets.defs.resources import DuckDBStoreResource, MarketDataResource
from trading_assets.market.candles import day_bounds
from trading_assets.market.ingest import ingest_day
from trading_assets.market.synthetic import SyntheticSource
from trading_assets.store.duckdb_store import candle_integrity_by_day, read_candles, run_write
from trading_assets_tests.conftest import SHARED_DATA
from trading_assets_tests.defs.code_location import raw_candles, raw_candles_freshness

SYMBOLS = ("BTC-USD", "ETH-USD", "SOL-USD")
CANDLE_CHECKS = {
    "coverage",
    "ohlc_consistency",
    "no_duplicate_minutes",
    "stored_rows",
    "price_jumps",
    "median_price_vs_neighbours",
}


def materialize_one(instance: dg.DagsterInstance, resources: dict, key: str) -> dg.ExecuteInProcessResult:
    return dg.materialize([raw_candles], partition_key=key, resources=resources, instance=instance)


def test_one_partition_stores_a_day_with_rich_metadata(dagster_instance, resources, db_path: Path) -> None:
    result = materialize_one(dagster_instance, resources, "2024-01-02|ETH-USD")
    assert result.success
    [materialization] = result.asset_materializations_for_node("raw_candles")
    metadata = {k: v.value for k, v in materialization.metadata.items()}
    assert materialization.partition == "2024-01-02|ETH-USD"
    assert metadata["rows"] == 1440 and metadata["coverage_pct"] == 100.0
    assert metadata["first_minute"] == "2024-01-02T00:00:00+00:00"
    assert metadata["last_minute"] == "2024-01-02T23:59:00+00:00"
    assert metadata["gap_count"] == 0 and metadata["source"] == "synthetic"
    assert metadata["price_low"] < metadata["price_high"]
    assert "| minute | open |" in metadata["preview"]
    stored = read_candles(db_path, ["ETH-USD"])
    expected = SyntheticSource(predictability=0.4).fetch("ETH-USD", *day_bounds(date(2024, 1, 2)))
    assert stored.select(expected.columns).equals(expected)
    checks = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert set(checks) == CANDLE_CHECKS
    assert all(e.passed and e.partition == "2024-01-02|ETH-USD" for e in checks.values())
    assert checks["coverage"].metadata["min_coverage"].value == pytest.approx(0.95)
    # an evaluation without its own description says its verdict and what the check asks
    assert checks["ohlc_consistency"].description == (
        "passed: Stored candles have low <= open, close <= high and positive prices."
    )
    # a one-day run charts its day (and the stored days around it: none here) on its own materialization
    assert metadata["coverage_chart"].startswith("![ETH-USD coverage 2024-01-02](data:image/png;base64,")


def test_every_check_of_the_code_location_has_a_description() -> None:
    graph = defs.get_repository_def().asset_graph
    missing = [key for key in graph.asset_check_keys if not graph.get_check_spec(key).description]
    assert graph.asset_check_keys and missing == []


def test_a_batch_charts_its_days_and_the_stored_days_around_it_on_its_last_partition(
    dagster_instance, resources, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Stored 2024-03-01, then a run of 03-03..03-04: the chart on 03-04 shows 03-01 (a stored neighbour),
    03-02 as missing, and the run's two days; 03-03's materialization carries no chart."""
    assert materialize_one(dagster_instance, resources, "2024-03-01|BTC-USD").success
    charted: list[dict] = []
    real = candles.candle_coverage_png

    def spy(days, coverage, min_coverage, subject="", highlight=()):
        charted.append(
            {"days": list(days), "coverage": list(coverage), "subject": subject, "highlight": set(highlight)}
        )
        return real(days, coverage, min_coverage, subject, highlight)

    monkeypatch.setattr(candles, "candle_coverage_png", spy)
    job = dg.Definitions(assets=[raw_candles], resources=resources).resolve_implicit_global_asset_job_def()
    first, last = date(2024, 3, 3), date(2024, 3, 4)
    result = job.execute_in_process(
        instance=dagster_instance, tags=partition_range_tags(first, last, ("BTC-USD",))
    )
    assert result.success
    by_partition = {m.partition: m.metadata for m in result.asset_materializations_for_node("raw_candles")}
    assert "coverage_chart" not in by_partition["2024-03-03|BTC-USD"]
    chart = by_partition["2024-03-04|BTC-USD"]["coverage_chart"].value
    prefix = "![BTC-USD coverage 2024-03-03 .. 2024-03-04](data:image/png;base64,"
    assert chart.startswith(prefix)
    png = base64.b64decode(chart.removeprefix(prefix).removesuffix(")"))
    assert int.from_bytes(png[16:20], "big") >= 800  # PNG header: width
    [call] = charted
    assert call["days"] == [date(2024, 3, 1) + timedelta(days=d) for d in range(4)]
    assert call["coverage"] == [1.0, 0.0, 1.0, 1.0]
    assert call["highlight"] == {first, last} and call["subject"].startswith("BTC-USD")


def test_rerun_is_idempotent(dagster_instance, resources, db_path: Path) -> None:
    materialize_one(dagster_instance, resources, "2024-01-02|BTC-USD")
    first = read_candles(db_path, ["BTC-USD"]).drop("ingested_at")
    assert materialize_one(dagster_instance, resources, "2024-01-02|BTC-USD").success
    assert read_candles(db_path, ["BTC-USD"]).drop("ingested_at").equals(first)


def test_a_multi_day_multi_symbol_range_runs_once_and_stores_exactly_its_rows(
    dagster_instance, resources, db_path: Path
) -> None:
    assert raw_candles.backfill_policy == dg.BackfillPolicy.single_run()
    first, last = date(2024, 3, 1), date(2024, 3, 4)
    job = dg.Definitions(assets=[raw_candles], resources=resources).resolve_implicit_global_asset_job_def()
    result = job.execute_in_process(
        instance=dagster_instance, tags=partition_range_tags(first, last, SYMBOLS)
    )
    assert result.success
    assert len(dagster_instance.get_run_records()) == 1
    materialized = {m.partition for m in result.asset_materializations_for_node("raw_candles")}
    assert materialized == {f"{first + timedelta(days=d)}|{s}" for d in range(4) for s in SYMBOLS}
    assert len(result.get_asset_check_evaluations()) == len(CANDLE_CHECKS) * len(materialized)
    stored = read_candles(db_path, SYMBOLS)
    assert stored.height == 4 * 3 * 1440
    assert stored.group_by("symbol").len().sort("symbol")["len"].to_list() == [4 * 1440] * 3
    assert stored["minute"].min() == datetime(2024, 3, 1, tzinfo=UTC)
    assert stored["minute"].max() == datetime(2024, 3, 4, 23, 59, tzinfo=UTC)


def test_a_partition_with_too_many_invalid_rows_fails_and_stores_nothing(
    dagster_instance, tmp_path: Path, db_path: Path
) -> None:
    day = date(2024, 1, 2)
    candles = SyntheticSource().fetch("BTC-USD", *day_bounds(day))
    broken = candles.with_columns(
        pl.when(pl.col("minute").dt.hour() < 3)
        .then(pl.col("low") * 0.5)
        .otherwise(pl.col("high"))
        .alias("high")
    )
    files = tmp_path / "files"
    files.mkdir()
    broken.write_parquet(files / "BTC-USD.parquet")
    resources = {
        "market_data": MarketDataResource(source="files", files_dir=str(files)),
        "store": DuckDBStoreResource(path=str(db_path)),
    }
    result = dg.materialize(
        [raw_candles],
        partition_key="2024-01-02|BTC-USD",
        resources=resources,
        instance=dagster_instance,
        raise_on_error=False,
    )
    assert not result.success
    [failure] = [e for e in result.all_events if e.is_step_failure]
    message = failure.step_failure_data.error.message + str(failure.step_failure_data.user_failure_data)
    assert "BTC-USD 2024-01-02: 180 of 1440 candles invalid" in message and "high < low" in message
    assert not db_path.exists() or read_candles(db_path, ["BTC-USD"]).height == 0


def test_a_shrinking_rewrite_fails_and_keeps_the_day_unless_the_run_allows_it(
    dagster_instance, tmp_path: Path, db_path: Path
) -> None:
    day, key = date(2024, 1, 2), "2024-01-02|BTC-USD"
    candles = SyntheticSource().fetch("BTC-USD", *day_bounds(day))
    files = tmp_path / "files"
    files.mkdir()
    resources = {
        "market_data": MarketDataResource(source="files", files_dir=str(files)),
        "store": DuckDBStoreResource(path=str(db_path)),
    }

    def materialize(frame: pl.DataFrame, run_config: dict | None = None) -> dg.ExecuteInProcessResult:
        frame.write_parquet(files / "BTC-USD.parquet")
        return dg.materialize(
            [raw_candles],
            partition_key=key,
            resources=resources,
            instance=dagster_instance,
            raise_on_error=False,
            run_config=run_config,
        )

    assert materialize(candles).success
    before = read_candles(db_path, ["BTC-USD"])
    refused = materialize(candles.head(1000))
    assert not refused.success
    [failure] = [e for e in refused.all_events if e.is_step_failure]
    assert (
        "refusing to shrink candles of BTC-USD: 2024-01-02 1440 rows stored, 1000 fetched; stored rows kept"
        in failure.step_failure_data.error.message
    )
    assert read_candles(db_path, ["BTC-USD"]).equals(before)

    allowed = {"ops": {"raw_candles": {"config": {"allow_shrink": True}}}}
    assert materialize(candles.head(1000), allowed).success
    assert read_candles(db_path, ["BTC-USD"]).height == 1000


def run_freshness(instance: dg.DagsterInstance, resources: dict) -> dg.AssetCheckEvaluation:
    result = dg.materialize(
        [raw_candles, raw_candles_freshness],
        resources=resources,
        instance=instance,
        selection=dg.AssetSelection.checks(raw_candles_freshness),
    )
    [evaluation] = result.get_asset_check_evaluations()
    return evaluation


def test_freshness_passes_for_yesterday_and_warns_for_old_candles(
    dagster_instance, resources, tmp_path
) -> None:
    yesterday = datetime.now(UTC).date() - timedelta(days=1)
    for symbol in SYMBOLS:
        materialize_one(dagster_instance, resources, f"{yesterday}|{symbol}")
    assert run_freshness(dagster_instance, resources).passed

    old_store = {**resources, "store": DuckDBStoreResource(path=str(tmp_path / "old.duckdb"))}
    materialize_one(dagster_instance, old_store, "2024-01-02|BTC-USD")
    stale = run_freshness(dagster_instance, old_store)
    assert not stale.passed and stale.severity == dg.AssetCheckSeverity.WARN
    assert stale.metadata["stale_symbols"].value == list(SYMBOLS)
    assert stale.metadata["freshness_hours"].value == 48.0
    for symbol in SYMBOLS:  # a coverage chart per symbol, of the 30 days up to the newest stored candle
        assert stale.metadata[f"coverage_{symbol}"].value.startswith(
            f"![{symbol} coverage](data:image/png;base64,"
        )


class _EvaluationsByName:
    """Stands in for PartitionChecks: keeps (name, passed, metadata) instead of Dagster events."""

    def evaluation(self, partition, name, passed, severity, metadata):
        return name, passed, metadata


def test_stored_rows_fails_when_the_written_slice_is_gone(tmp_path: Path) -> None:
    db_path, day = tmp_path / "store.duckdb", date(2024, 1, 2)
    report = ingest_day(SyntheticSource(), db_path, "BTC-USD", day, max_invalid_share=0.0)

    def check_results() -> dict[str, tuple[bool, dict]]:
        stored = candle_integrity_by_day(db_path, "BTC-USD", [day])[day]
        evaluations = _partition_checks(_EvaluationsByName(), "2024-01-02|BTC-USD", report, stored, 0.95)
        return {name: (passed, metadata) for name, passed, metadata in evaluations}

    results = check_results()
    assert results["stored_rows"][0] and results["stored_rows"][1]["rows_written"] == 1440
    run_write(db_path, lambda connection: connection.execute("DELETE FROM candles"))  # a lost write
    results = check_results()
    assert not results["stored_rows"][0] and results["stored_rows"][1]["stored_rows"] == 0
    assert results["ohlc_consistency"][0]  # the other checks cannot see a missing slice


# --- content integrity: revisions and plausibility -------------------------------------------------------


def files_resources(files: Path, db_path: Path) -> dict:
    return {
        "market_data": MarketDataResource(source="files", files_dir=str(files)),
        "store": DuckDBStoreResource(path=str(db_path)),
    }


def scaled(frame: pl.DataFrame, factor: float, first: datetime, last: datetime) -> pl.DataFrame:
    """open/high/low/close of the minutes in [first, last) times `factor`."""
    inside = pl.col("minute").is_between(first, last, closed="left")
    return frame.with_columns(
        [pl.when(inside).then(pl.col(c) * factor).otherwise(pl.col(c)).alias(c) for c in PRICES]
    )


PRICES = ["open", "high", "low", "close"]
REVISION_DAY, REVISION_KEY = date(2024, 1, 2), "2024-01-02|BTC-USD"


def materialize_file(
    instance: dg.DagsterInstance, files: Path, db_path: Path, frame: pl.DataFrame, run_config=None, **kwargs
) -> dg.ExecuteInProcessResult:
    frame.write_parquet(files / "BTC-USD.parquet")
    return dg.materialize(
        [raw_candles],
        resources=files_resources(files, db_path),
        instance=instance,
        raise_on_error=False,
        run_config=run_config,
        **{"partition_key": REVISION_KEY, **kwargs},
    )


def test_a_revised_refetch_fails_in_one_line_and_allow_revision_records_the_diff(
    dagster_instance, tmp_path: Path, db_path: Path
) -> None:
    """A re-fetch with the same row count whose page 05:00-09:59 moved by 0.1 %: the run fails naming the
    day, the minutes changed, the largest change and an example minute, and the stored day stays byte-
    identical; `allow_revision: true` stores it and puts the diff in the materialization's metadata."""
    start, _ = day_bounds(REVISION_DAY)
    candles = SyntheticSource().fetch("BTC-USD", *day_bounds(REVISION_DAY))
    files = tmp_path / "files"
    files.mkdir()
    first = materialize_file(dagster_instance, files, db_path, candles)
    assert first.success
    [materialization] = first.asset_materializations_for_node("raw_candles")
    assert materialization.metadata["revised_minutes"].value == 0
    before = read_candles(db_path, ["BTC-USD"])

    revised = scaled(candles, 1.001, start + timedelta(hours=5), start + timedelta(hours=10))
    refused = materialize_file(dagster_instance, files, db_path, revised)
    assert not refused.success
    [failure] = [e for e in refused.all_events if e.is_step_failure]
    message = failure.step_failure_data.error.message
    line = next(text for text in message.splitlines() if "refusing to revise" in text)
    assert line.endswith(failure.step_failure_data.user_failure_data.description)  # the whole error, one line
    assert "refusing to revise candles of BTC-USD: " in line
    assert (
        "2024-01-02 300 of 1440 stored minutes changed, largest relative change 0.001 (open x1.001) at "
        in line
    )
    assert "2024-01-02T05:00:00+00:00: stored o/h/l/c/v " in line and ", new " in line
    assert line.endswith("stored rows kept (run config allow_revision: true accepts the revision)")
    assert read_candles(db_path, ["BTC-USD"]).equals(before)

    allowed = {"ops": {"raw_candles": {"config": {"allow_revision": True}}}}
    accepted = materialize_file(dagster_instance, files, db_path, revised, allowed)
    assert accepted.success
    [materialization] = accepted.asset_materializations_for_node("raw_candles")
    assert materialization.metadata["revised_minutes"].value == 300
    diff = materialization.metadata["revision"].value
    assert diff["minutes_changed"] == 300 and diff["largest_relative_change"] == pytest.approx(1e-3)
    assert diff["example"]["minute"] == "2024-01-02T05:00:00+00:00" and diff["example"]["column"] == "open"
    assert diff["example"]["new"]["close"] == pytest.approx(1.001 * diff["example"]["stored"]["close"])
    stored = read_candles(db_path, ["BTC-USD"]).select(revised.columns)
    assert stored.equals(revised)
    checks = {e.check_name: e.passed for e in accepted.get_asset_check_evaluations()}
    assert checks["price_jumps"] and checks["median_price_vs_neighbours"]  # a 0.1 % step is plausible


def test_plausibility_checks_fail_on_a_x100_minute_and_a_day_in_cents(
    dagster_instance, tmp_path: Path, db_path: Path
) -> None:
    """Three stored days; the middle one then gets one minute x100 (12:00), then is stored in cents. Both
    fail the blocking checks, which name the minute; the run fails and the checks are recorded."""
    first_day, last_day = date(2024, 1, 1), date(2024, 1, 3)
    candles = SyntheticSource().fetch("BTC-USD", day_bounds(first_day)[0], day_bounds(last_day)[1])
    files = tmp_path / "files"
    files.mkdir()
    three_days = partition_range_tags(first_day, last_day, ("BTC-USD",))
    job = dg.Definitions(
        assets=[raw_candles], resources=files_resources(files, db_path)
    ).resolve_implicit_global_asset_job_def()
    candles.write_parquet(files / "BTC-USD.parquet")
    result = job.execute_in_process(instance=dagster_instance, tags=three_days)
    assert result.success and all(e.passed for e in result.get_asset_check_evaluations())

    noon = day_bounds(REVISION_DAY)[0] + timedelta(hours=12)
    allowed = {"ops": {"raw_candles": {"config": {"allow_revision": True}}}}
    spiked = materialize_file(
        dagster_instance, files, db_path, scaled(candles, 100.0, noon, noon + timedelta(minutes=1)), allowed
    )
    assert not spiked.success  # a blocking check failed
    checks = {e.check_name: e for e in spiked.get_asset_check_evaluations()}
    jumps = checks["price_jumps"]
    assert not jumps.passed and jumps.severity == dg.AssetCheckSeverity.ERROR and jumps.blocking
    assert jumps.metadata["jumps"].value == 2
    assert jumps.metadata["largest_jump"].value["minute"] in (
        "2024-01-02T12:00:00+00:00",
        "2024-01-02T12:01:00+00:00",
    )
    assert "BTC-USD 2024-01-02: 2 minute(s) beyond 500 x the median move" in jumps.description
    assert checks["median_price_vs_neighbours"].passed  # one minute does not move the median

    day_start, day_end = day_bounds(REVISION_DAY)
    cents = materialize_file(
        dagster_instance, files, db_path, scaled(candles, 100.0, day_start, day_end), allowed
    )
    assert not cents.success
    checks = {e.check_name: e for e in cents.get_asset_check_evaluations()}
    assert not checks["price_jumps"].passed
    assert set(checks["price_jumps"].metadata["jump_minutes"].value) == {
        "2024-01-02T00:00:00+00:00",
        "2024-01-03T00:00:00+00:00",
    }
    median = checks["median_price_vs_neighbours"]
    assert not median.passed and median.blocking
    assert median.metadata["first_minute_outside"].value == "2024-01-02T00:00:00+00:00"
    assert median.metadata["ratios"].value["2024-01-01"] == pytest.approx(100, rel=0.1)
    assert "median close" in median.description and "outside [0.5, 2.0]" in median.description


REAL_2024 = SHARED_DATA / "binance_2024-07_mintanam-ftrade"


@pytest.mark.skipif(not REAL_2024.is_dir(), reason=f"real Binance candles not present at {REAL_2024}")
def test_plausibility_checks_pass_on_the_real_days_of_the_august_2024_crash(
    dagster_instance, tmp_path: Path, db_path: Path
) -> None:
    """Real BTC and ETH candles of 2024-08-03 .. 08-07 (the 5 August crash), served as BTC-USD and ETH-USD
    by the files source, in one single-run backfill: every check of every partition passes."""
    files = tmp_path / "files"
    files.mkdir()
    for real, symbol in (("BTC_USDT", "BTC-USD"), ("ETH_USDT", "ETH-USD")):
        shutil.copy(REAL_2024 / f"{real}-1m.feather", files / f"{symbol}.feather")
    first_day, last_day = date(2024, 8, 3), date(2024, 8, 7)
    job = dg.Definitions(
        assets=[raw_candles], resources=files_resources(files, db_path)
    ).resolve_implicit_global_asset_job_def()
    result = job.execute_in_process(
        instance=dagster_instance, tags=partition_range_tags(first_day, last_day, ("BTC-USD", "ETH-USD"))
    )
    assert result.success
    evaluations = result.get_asset_check_evaluations()
    assert len(evaluations) == 2 * 5 * len(CANDLE_CHECKS)
    assert [f"{e.partition} {e.check_name}" for e in evaluations if not e.passed] == []
    crash = next(
        e for e in evaluations if e.partition == "2024-08-05|ETH-USD" and e.check_name == "price_jumps"
    )
    assert crash.metadata["previous_day_stored"].value and crash.metadata["next_day_stored"].value
