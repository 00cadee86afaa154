"""`raw_candles`: one UTC day of 1-minute candles per symbol, with per-partition quality checks."""

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import dagster as dg
import polars as pl

from trading_assets.defs.checks import PartitionChecks, partition_check_specs
from trading_assets.defs.metadata import ASSET_OWNERS, batch_metadata, iso, markdown_image, markdown_table
from trading_assets.defs.partitions import DAYS_PER_TRANSACTION, Partitions, partition_batches
from trading_assets.defs.resources import DuckDBStoreResource, MarketDataResource
from trading_assets.defs.run_guard import guard_step
from trading_assets.market.candles import MINUTES_PER_DAY, InvalidPartitionError, day_bounds
from trading_assets.market.ingest import IngestReport, ingest_days
from trading_assets.market.integrity import (
    DEFAULT_JUMP_K,
    MEDIAN_RATIO_BOUNDS,
    MedianShift,
    PriceJumps,
    RevisionRefusedError,
    median_shift,
    price_jumps,
)
from trading_assets.plots import candle_coverage_png
from trading_assets.settings import Settings
from trading_assets.store.duckdb_store import (
    ShrinkRefusedError,
    candle_integrity_by_day,
    latest_minutes,
    read_candles,
    stored_minutes_per_day,
)

RAW_CANDLES = dg.AssetKey("raw_candles")

#: name: (description, blocking) of the per-partition checks.
_CHECKS = {
    "coverage": ("Share of the day's 1,440 minutes present (warns below min_coverage).", False),
    "ohlc_consistency": ("Stored candles have low <= open, close <= high and positive prices.", True),
    "no_duplicate_minutes": ("At most one stored candle per (symbol, minute).", True),
    "stored_rows": (
        "The stored (symbol, day) slice holds exactly the rows this run wrote (a lost write fails).",
        True,
    ),
    "price_jumps": (
        "No stored minute lies more than k (run config price_jump_k, default "
        f"{DEFAULT_JUMP_K:g}) times the symbol's median absolute 1-minute log return (this day and the "
        "previous stored day) from the previous candle's close, inside the day or across either day "
        "boundary; names the minute (a page in cents, a x100 print).",
        True,
    ),
    "median_price_vs_neighbours": (
        f"The day's median close lies within {list(MEDIAN_RATIO_BOUNDS)} x the previous and the next stored "
        "day's (a day in other units or of another symbol).",
        True,
    ),
}


def build_candle_assets(
    settings: Settings, partitions: Partitions
) -> tuple[dg.AssetsDefinition, dg.AssetChecksDefinition]:
    """`raw_candles` over the symbol x date partitions, its run config defaulting to the settings' quality
    thresholds, and the freshness check of the configured symbols."""

    class CandleRunConfig(dg.Config):
        """Per-run quality thresholds (defaults from settings / environment).

        `allow_shrink: true` lets the run store fewer candles for a day than the store holds, or none: a
        forced rewrite. Without it such a day fails the step and the stored candles stay.
        `allow_revision: true` accepts new values for stored minutes beyond the revision tolerance
        (`trading_assets.market.integrity`); the diff is recorded in the materialization's metadata.
        Without it such a day fails the step in one line and the stored candles stay.
        `price_jump_k`: the price_jumps check's multiple of the median 1-minute move.
        """

        max_invalid_share: float = settings.max_invalid_share
        min_coverage: float = settings.min_coverage
        allow_shrink: bool = False
        allow_revision: bool = False
        price_jump_k: float = DEFAULT_JUMP_K

    @dg.multi_asset(
        specs=[
            dg.AssetSpec(
                RAW_CANDLES,
                description="One UTC day of validated 1-minute OHLCV candles for one symbol, in DuckDB.",
                group_name="market_data",
                owners=ASSET_OWNERS,
                partitions_def=partitions.symbol_date,
                kinds={"duckdb", "polars"},
            )
        ],
        check_specs=partition_check_specs(RAW_CANDLES, _CHECKS, partitions.symbol_date),
        # Optional outputs: the checks are reported per partition as AssetCheckEvaluation events below.
        can_subset=True,
        partitions_def=partitions.symbol_date,
        backfill_policy=dg.BackfillPolicy.single_run(),
    )
    def raw_candles(
        context: dg.AssetExecutionContext,
        config: CandleRunConfig,
        market_data: MarketDataResource,
        store: DuckDBStoreResource,
    ):
        yield from _materialize(context, config, market_data, store)

    return raw_candles, _freshness_check(settings.symbols, settings.freshness_hours, settings.min_coverage)


def _materialize(context: dg.AssetExecutionContext, config, market_data, store: DuckDBStoreResource):
    run_active = guard_step(context)
    source = market_data.build()
    reports: dict[str, IngestReport] = {}
    for symbol, key_of_day in partition_batches(context.partition_keys, DAYS_PER_TRANSACTION):
        days = list(key_of_day)
        try:
            batch = ingest_days(
                source,
                store.db_path,
                symbol,
                days,
                config.max_invalid_share,
                allow_shrink=config.allow_shrink,
                allow_revision=config.allow_revision,
                before_write=run_active,
            )
        except (InvalidPartitionError, ShrinkRefusedError, RevisionRefusedError) as error:
            raise dg.Failure(description=str(error), metadata=batch_metadata(symbol, days)) from error
        chart = _batch_coverage_chart(store.db_path, symbol, days, config.min_coverage)
        for report in batch:
            key = key_of_day[report.day]
            # the chart on the batch's newest day only: a daily run charts every materialization, while a
            # 730-day backfill adds 24 charts per symbol (~0.4 MB) to the event log instead of 730 (~12 MB)
            extra = {"coverage_chart": chart} if report.day == days[-1] else {}
            context.add_asset_metadata({**_materialization_metadata(report), **extra}, partition_key=key)
            reports[key] = report
        context.log.info(_batch_summary(batch))
    yield dg.MaterializeResult(asset_key=RAW_CANDLES)
    checks = PartitionChecks(context, RAW_CANDLES)
    for symbol, key_of_day in partition_batches(reports, DAYS_PER_TRANSACTION):
        stored = candle_integrity_by_day(store.db_path, symbol, list(key_of_day))
        candles = _stored_around(store.db_path, symbol, list(key_of_day))
        for day, key in key_of_day.items():
            yield from _partition_checks(checks, key, reports[key], stored[day], config.min_coverage)
            yield from _plausibility_checks(
                checks,
                key,
                reports[key],
                price_jumps(candles, day, k=config.price_jump_k),
                median_shift(candles, day),
            )


#: Days either side of a batch that its coverage chart shows when they are stored (context for the batch).
COVERAGE_NEIGHBOUR_DAYS = 7


def _batch_coverage_chart(
    db_path: Path, symbol: str, days: list[date], min_coverage: float
) -> dg.MetadataValue:
    """The share of each day's minutes stored for `symbol`: the batch's `days` (consecutive, just written)
    and the stored days up to `COVERAGE_NEIGHBOUR_DAYS` either side, every day in between drawn, a day with
    nothing stored as missing."""
    window = timedelta(days=COVERAGE_NEIGHBOUR_DAYS)
    stored = stored_minutes_per_day(db_path, symbol, days[0] - window, days[-1] + window)
    first, last = min([*stored, days[0]]), max([*stored, days[-1]])
    shown = [first + timedelta(days=offset) for offset in range((last - first).days + 1)]
    span = str(days[0]) if len(days) == 1 else f"{days[0]} .. {days[-1]}"
    png = candle_coverage_png(
        shown,
        [stored.get(day, 0) / MINUTES_PER_DAY for day in shown],
        min_coverage,
        subject=f"{symbol}, this run: {span}",
        highlight=set(days),
    )
    return markdown_image(f"{symbol} coverage {span}", png)


def _stored_around(db_path: Path, symbol: str, days: list[date]) -> pl.DataFrame:
    """The stored candles of `symbol` from the day before the first of `days` to the day after the last."""
    start = day_bounds(min(days) - timedelta(days=1))[0]
    end = day_bounds(max(days) + timedelta(days=1))[1]
    return read_candles(db_path, [symbol], start, end)


def _batch_summary(batch: list[IngestReport]) -> str:
    first, last = batch[0], batch[-1]
    return (
        f"{first.symbol} {first.day}..{last.day}: {len(batch)} day(s) in one transaction, "
        f"{sum(r.rows_written for r in batch):,} candles, "
        f"lowest coverage {min(r.quality.coverage for r in batch):.1%}, "
        f"{sum(r.validation.rows_invalid for r in batch)} invalid"
    )


def _materialization_metadata(report: IngestReport) -> dict[str, object]:
    quality = report.quality
    return {
        "rows": report.rows_written,
        "first_minute": iso(report.first_minute),
        "last_minute": iso(report.last_minute),
        "coverage_pct": round(100 * quality.coverage, 3),
        "gap_count": quality.gap_count,
        "longest_gap_minutes": quality.longest_gap_minutes,
        "source": report.source,
        "price_low": report.price_low,
        "price_high": report.price_high,
        "invalid_rows": report.validation.rows_invalid,
        "invalid_by_reason": dg.MetadataValue.json(report.validation.invalid_by_reason),
        "preview": markdown_table(report.preview),
        "identical_duplicates_merged": report.validation.identical_duplicates,
        **_revision_metadata(report),
        **_fetch_metadata(report),
    }


def _revision_metadata(report: IngestReport) -> dict[str, object]:
    """How the write changed the day's stored minutes: `revised_minutes` always (0 when nothing was
    stored or nothing changed), the whole diff (minutes changed, largest change, an example minute with
    stored and new values) when a stored day was rewritten."""
    diff = report.revision
    if diff is None:
        return {"revised_minutes": 0}
    return {"revised_minutes": diff.minutes_changed, "revision": dg.MetadataValue.json(diff.as_metadata())}


def _fetch_metadata(report: IngestReport) -> dict[str, object]:
    """Where the day's gaps come from: the pages of a paged source and the spans they covered.

    A missing minute inside a page's span is a gap the exchange answered with; `client_gap_minutes`
    counts minutes outside every span (a gap the client made; 0 unless something is wrong).
    """
    log = report.fetch_log
    if log is None:
        return {}
    start, end = day_bounds(report.day)
    spans = [
        {"start": iso(p.start), "covered_end": iso(p.covered_end), "rows": p.rows, "requests": p.attempts}
        for p in log.pages
    ]
    return {
        "pages": len(log.pages),
        "empty_pages": log.empty_pages,
        "page_retries": log.retries,
        "rows_dropped_outside_window": log.rows_outside_window,
        "exchange_gap_minutes": MINUTES_PER_DAY - report.rows_written - report.validation.rows_invalid,
        "client_gap_minutes": log.uncovered_minutes(start, end),
        "page_spans": dg.MetadataValue.json(spans[:50]),
    }


def _partition_checks(
    checks: PartitionChecks, key: str, report: IngestReport, stored: dict[str, int], min_coverage: float
) -> list[dg.AssetCheckEvaluation]:
    """The checks of one partition: coverage from the ingest report, the rest from the stored rows."""
    gaps = [{"start": iso(gap_start), "minutes": length} for gap_start, length in report.quality.gaps[:50]]

    def evaluation(name: str, passed: bool, severity: dg.AssetCheckSeverity, metadata: dict[str, object]):
        common = {"symbol": report.symbol, "date": report.day.isoformat()}
        return checks.evaluation(key, name, passed, severity, {**common, **metadata})

    return [
        evaluation(
            "coverage",
            report.quality.coverage >= min_coverage,
            dg.AssetCheckSeverity.WARN,
            {
                "coverage": report.quality.coverage,
                "min_coverage": min_coverage,
                "gap_count": report.quality.gap_count,
                "longest_gap_minutes": report.quality.longest_gap_minutes,
                "gaps": dg.MetadataValue.json(gaps),
            },
        ),
        evaluation(
            "ohlc_consistency",
            stored["ohlc_violations"] == 0,
            dg.AssetCheckSeverity.ERROR,
            {"stored_rows": stored["rows"], "violations": stored["ohlc_violations"], "allowed": 0},
        ),
        evaluation(
            "no_duplicate_minutes",
            stored["duplicate_minutes"] == 0,
            dg.AssetCheckSeverity.ERROR,
            {"stored_rows": stored["rows"], "duplicate_minutes": stored["duplicate_minutes"], "allowed": 0},
        ),
        evaluation(
            "stored_rows",
            stored["rows"] == report.rows_written,
            dg.AssetCheckSeverity.ERROR,
            {"stored_rows": stored["rows"], "rows_written": report.rows_written},
        ),
    ]


def _plausibility_checks(
    checks: PartitionChecks, key: str, report: IngestReport, jumps: PriceJumps, shift: MedianShift
) -> list[dg.AssetCheckEvaluation]:
    """price_jumps and median_price_vs_neighbours of one partition, from the stored candles."""
    common = {"symbol": report.symbol, "date": report.day.isoformat()}
    worst = jumps.jumps[0].as_json() if jumps.jumps else None
    ratios = {day.isoformat(): ratio for day, ratio in shift.ratios.items()}
    return [
        checks.evaluation(
            key,
            "price_jumps",
            jumps.passed,
            dg.AssetCheckSeverity.ERROR,
            {
                **common,
                "median_abs_log_return": jumps.scale,
                "k": jumps.k,
                "threshold_log_move": jumps.threshold,
                "steps_checked": jumps.steps_checked,
                "previous_day_stored": jumps.previous_day_stored,
                "next_day_stored": jumps.next_day_stored,
                "jumps": jumps.jump_count,
                "largest_jump": dg.MetadataValue.json(worst),
                "jump_minutes": dg.MetadataValue.json([j.minute.isoformat() for j in jumps.jumps]),
            },
            description=None if jumps.passed else f"{report.symbol} {jumps.describe()}",
        ),
        checks.evaluation(
            key,
            "median_price_vs_neighbours",
            shift.passed,
            dg.AssetCheckSeverity.ERROR,
            {
                **common,
                "median_close": shift.median_close,
                "neighbour_medians": dg.MetadataValue.json(
                    {day.isoformat(): median for day, median in shift.neighbours.items()}
                ),
                "ratios": dg.MetadataValue.json(ratios),
                "bounds": dg.MetadataValue.json(list(shift.bounds)),
                "first_minute_outside": iso(shift.example_minute),
            },
            description=None if shift.passed else f"{report.symbol} {shift.describe()}",
        ),
    ]


def _freshness_check(
    symbols: tuple[str, ...], freshness_hours: float, min_coverage: float
) -> dg.AssetChecksDefinition:
    @dg.asset_check(
        asset=RAW_CANDLES,
        name="freshness",
        description="The newest stored candle of every symbol is younger than freshness_hours; charts each "
        "symbol's coverage over the last 30 days.",
        blocking=False,
    )
    def raw_candles_freshness(store: DuckDBStoreResource) -> dg.AssetCheckResult:
        return _freshness(store.db_path, symbols, freshness_hours, min_coverage)

    return raw_candles_freshness


#: Days of stored candles the freshness check charts per symbol.
COVERAGE_CHART_DAYS = 30


def _coverage_charts(
    db_path: Path, symbols: tuple[str, ...], last_day: date, min_coverage: float
) -> dict[str, dg.MetadataValue]:
    """Per symbol, the share of each of the last `COVERAGE_CHART_DAYS` days' 1,440 minutes that is stored."""
    first_day = last_day - timedelta(days=COVERAGE_CHART_DAYS - 1)
    days = [first_day + timedelta(days=offset) for offset in range(COVERAGE_CHART_DAYS)]
    charts = {}
    for symbol in symbols:
        stored = stored_minutes_per_day(db_path, symbol, first_day, last_day)
        coverage = [stored.get(day, 0) / MINUTES_PER_DAY for day in days]
        charts[f"coverage_{symbol}"] = markdown_image(
            f"{symbol} coverage",
            candle_coverage_png(
                days, coverage, min_coverage, f"{symbol}, the last {COVERAGE_CHART_DAYS} days"
            ),
        )
    return charts


def _freshness(
    db_path: Path, symbols: tuple[str, ...], freshness_hours: float, min_coverage: float
) -> dg.AssetCheckResult:
    now = datetime.now(UTC)
    latest = latest_minutes(db_path, symbols)
    age_hours = {
        symbol: round((now - latest[symbol]).total_seconds() / 3600, 2) if symbol in latest else None
        for symbol in symbols
    }
    stale = [symbol for symbol, age in age_hours.items() if age is None or age > freshness_hours]
    return dg.AssetCheckResult(
        passed=not stale,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "age_hours": dg.MetadataValue.json(age_hours),
            "freshness_hours": freshness_hours,
            "stale_symbols": dg.MetadataValue.json(stale),
            "checked_at": now.isoformat(),
            **_coverage_charts(db_path, symbols, max(latest.values(), default=now).date(), min_coverage),
        },
        description=None
        if not stale
        else f"stale: {', '.join(stale)} (older than {timedelta(hours=freshness_hours)})",
    )
