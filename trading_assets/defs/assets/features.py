"""`features`: the 39 engineered features of one (symbol, day) in the DuckDB feature store."""

from datetime import date

import dagster as dg
import polars as pl

from trading_assets.defs.automation import FEATURES_FOLLOW_CANDLES
from trading_assets.defs.checks import PartitionChecks, partition_check_specs
from trading_assets.defs.metadata import ASSET_OWNERS, batch_metadata, markdown_table
from trading_assets.defs.partitions import DAYS_PER_TRANSACTION, Partitions, partition_batches
from trading_assets.defs.resources import DuckDBStoreResource
from trading_assets.defs.run_guard import guard_step
from trading_assets.features.build import FeatureDayReport, MissingCandlesError, build_feature_days
from trading_assets.features.registry import FEATURE_NAMES, FEATURE_SET_VERSION, MODEL_FEATURES, schema_hash
from trading_assets.features.store import feature_problems, feature_summary, read_feature_days
from trading_assets.settings import Settings

FEATURES_ASSET = dg.AssetKey("features")

#: A day's features read its own candles and the previous day's (the longest lookback).
_CANDLES_OF_DAY_AND_PREVIOUS_DAY = dg.MultiPartitionMapping(
    {
        "date": dg.DimensionPartitionMapping(
            "date", dg.TimeWindowPartitionMapping(start_offset=-1, allow_nonexistent_upstream_partitions=True)
        ),
        "symbol": dg.DimensionPartitionMapping("symbol", dg.IdentityPartitionMapping()),
    }
)

#: name: (description, blocking) of the per-partition checks.
_CHECKS = {
    "finite_values": ("Stored rows have no null, NaN or infinite feature value.", True),
    "value_ranges": ("Bounded features stay in range (RSI in [0, 100], %R in [-100, 0], ...).", True),
    "stored_rows": (
        "The stored (symbol, day) slice holds exactly the rows this run wrote (a lost write fails).",
        True,
    ),
    "usable_coverage": ("Share of the day's minutes usable for training (warns when low).", False),
}


def build_features_asset(settings: Settings, partitions: Partitions) -> dg.AssetsDefinition:
    """`features` over the symbol x date partitions; warm-up counted from the settings' history start."""

    class FeatureRunConfig(dg.Config):
        min_usable_share: float = settings.min_coverage

    @dg.multi_asset(
        specs=[
            dg.AssetSpec(
                FEATURES_ASSET,
                description=f"{len(FEATURE_NAMES)} engineered features ({len(MODEL_FEATURES)} used by models) "
                "of one (symbol, UTC day), computed from the day's candles plus a day of lookback.",
                group_name="feature_store",
                owners=ASSET_OWNERS,
                partitions_def=partitions.symbol_date,
                deps=[dg.AssetDep("raw_candles", partition_mapping=_CANDLES_OF_DAY_AND_PREVIOUS_DAY)],
                kinds={"duckdb", "polars"},
                automation_condition=FEATURES_FOLLOW_CANDLES,
            )
        ],
        check_specs=partition_check_specs(FEATURES_ASSET, _CHECKS, partitions.symbol_date),
        can_subset=True,
        partitions_def=partitions.symbol_date,
        backfill_policy=dg.BackfillPolicy.single_run(),
    )
    def features(context: dg.AssetExecutionContext, config: FeatureRunConfig, store: DuckDBStoreResource):
        yield from _materialize(context, store, settings.history_start, config.min_usable_share)

    return features


def _materialize(
    context: dg.AssetExecutionContext,
    store: DuckDBStoreResource,
    history_start: date,
    min_usable_share: float,
):
    run_active = guard_step(context)
    reports: dict[str, FeatureDayReport] = {}
    # Days in order, so a backfill that also materializes raw_candles reads complete lookbacks.
    for symbol, key_of_day in partition_batches(context.partition_keys, DAYS_PER_TRANSACTION):
        days = list(key_of_day)
        try:
            batch = build_feature_days(store.db_path, symbol, days, history_start, run_active)
        except (MissingCandlesError, ValueError) as error:
            raise dg.Failure(description=str(error), metadata=batch_metadata(symbol, days)) from error
        for report in batch:
            key = key_of_day[report.day]
            context.add_asset_metadata(_metadata(report), partition_key=key)
            reports[key] = report
        context.log.info(
            f"{symbol} {days[0]}..{days[-1]}: features of {len(batch)} day(s) in one transaction, "
            f"{sum(report.rows for report in batch):,} rows"
        )
    yield dg.MaterializeResult(asset_key=FEATURES_ASSET)
    checks = PartitionChecks(context, FEATURES_ASSET)
    for symbol, key_of_day in partition_batches(reports, DAYS_PER_TRANSACTION):
        stored = read_feature_days(store.db_path, symbol, list(key_of_day))
        for day, key in key_of_day.items():
            yield from _partition_checks(checks, key, reports[key], stored[day], min_usable_share)


def _metadata(report: FeatureDayReport) -> dict[str, object]:
    frame = report.frame
    summary = feature_summary(frame).select(
        "feature", pl.col("mean", "std", "min", "max").round(6), pl.col("share_filled").round(4)
    )
    return {
        "rows": report.rows,
        "usable_rows": int(frame["usable"].sum()),
        "filled_minutes": int(frame["filled"].sum()),
        "warmup_rows": int(frame["warmup"].sum()),
        "candles_read": report.candles_read,
        "feature_set_version": FEATURE_SET_VERSION,
        "schema_hash": schema_hash(),
        "features": len(FEATURE_NAMES),
        "model_features": len(MODEL_FEATURES),
        "feature_summary": markdown_table(summary),
    }


def _partition_checks(
    checks: PartitionChecks,
    key: str,
    report: FeatureDayReport,
    stored: pl.DataFrame,
    min_usable_share: float,
) -> list[dg.AssetCheckEvaluation]:
    """The checks of one partition, on the rows read back from the store."""
    problems = feature_problems(stored, report.day)
    finite = problems.non_finite
    ranges = [*problems.missing_columns, *problems.out_of_bounds, *problems.minutes]
    usable_share = float(stored["usable"].mean()) if stored.height else 0.0
    common = {"symbol": report.symbol, "date": report.day.isoformat(), "stored_rows": stored.height}

    def evaluation(name: str, passed: bool, severity: dg.AssetCheckSeverity, metadata: dict[str, object]):
        return checks.evaluation(key, name, passed, severity, {**common, **metadata})

    return [
        evaluation(
            "finite_values",
            not finite,
            dg.AssetCheckSeverity.ERROR,
            {"problems": dg.MetadataValue.json(finite)},
        ),
        evaluation(
            "value_ranges",
            not ranges,
            dg.AssetCheckSeverity.ERROR,
            {"problems": dg.MetadataValue.json(ranges)},
        ),
        evaluation(
            "stored_rows",
            stored.height == report.rows,
            dg.AssetCheckSeverity.ERROR,
            {"rows_written": report.rows},
        ),
        evaluation(
            "usable_coverage",
            usable_share >= min_usable_share,
            dg.AssetCheckSeverity.WARN,
            {"usable_share": usable_share, "min_usable_share": min_usable_share},
        ),
    ]
