"""`trading-assets demo`: the whole chain, offline, into the project's persistent Dagster instance.

candles -> features -> the three models per symbol -> gates -> promotion -> ensemble -> a short dry-run.
Each stage is a Dagster run in DAGSTER_HOME (default <project>/dagster_home), so the UI shows them all.
"""

from __future__ import annotations

import os
from datetime import UTC, date, datetime, timedelta

from trading_assets.settings import PROJECT_ROOT, load_settings

MODEL_TYPES = ("lstm", "transformer", "sklearn")


def demo_days(days: int, end_day: date | None = None) -> tuple[date, date]:
    """`days` complete UTC days ending at `end_day` (default: yesterday, the last complete day): (first, last)."""
    last = end_day or datetime.now(UTC).date() - timedelta(days=1)
    return last - timedelta(days=days - 1), last


def run_demo(
    days: int = 14,
    epochs: int = 2,
    iterations: int = 3,
    sleep_seconds: float = 2.0,
    end_day: date | None = None,
) -> int:
    os.environ.setdefault("DAGSTER_HOME", str(PROJECT_ROOT / "dagster_home"))
    import dagster as dg

    from trading_assets.definitions import defs
    from trading_assets.partitions import partition_range_tags

    settings = load_settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    first, last = demo_days(days, end_day)
    print(
        f"trading-assets demo: source={settings.source} (predictability {settings.synthetic_predictability}), "
        f"symbols={', '.join(settings.symbols)}, {first} .. {last}"
    )
    instance = dg.DagsterInstance.get()
    job = defs.resolve_implicit_global_asset_job_def()

    def run(label: str, assets: list[str], **target: object) -> dg.ExecuteInProcessResult:
        result = job.execute_in_process(
            instance=instance,
            asset_selection=[dg.AssetKey(a) for a in assets],
            raise_on_error=False,
            **target,
        )
        checks = result.get_asset_check_evaluations()
        failed = [f"{e.asset_key.to_user_string()}:{e.check_name}" for e in checks if not e.passed]
        verdict = "succeeded" if result.success else "did not complete"
        print(f"  {label}: run {result.run_id[:8]} {verdict}; {len(checks) - len(failed)}/{len(checks)} checks passed"
              + (f"; failed: {', '.join(failed)}" if failed else ""))  # fmt: skip
        return result

    # Candles of one extra day first, so the first day's features have their full lookback.
    stages = [
        run(
            "raw_candles",
            ["raw_candles"],
            tags=partition_range_tags(first - timedelta(days=1), last, settings.symbols),
        ),
        run("features", ["features"], tags=partition_range_tags(first, last, settings.symbols)),
    ]
    if not all(stage.success for stage in stages):
        return 1
    model_config = {"epochs": epochs, "samples_per_epoch": 3000, "train_start": first.isoformat()}
    model_assets = [f"{t}_model" for t in MODEL_TYPES] + [f"promoted_{t}_model" for t in MODEL_TYPES]
    for symbol in settings.symbols:
        run(
            f"models + gates + promotion {symbol}",
            model_assets,
            partition_key=symbol,
            run_config={"ops": {asset: {"config": model_config} for asset in model_assets}},
        )
        run(f"ensemble {symbol}", ["ensemble"], partition_key=symbol)
    return _dry_run(settings, iterations, sleep_seconds)


def _dry_run(settings, iterations: int, sleep_seconds: float) -> int:
    from trading_assets.market.sources import SourceOptions, build_source
    from trading_assets.promotion.ensemble import NoPromotedMembers, read_ensemble
    from trading_assets.runtime.dryrun import DryRunRuntime, run_iterations

    deployable = []
    for symbol in settings.symbols:
        try:
            spec = read_ensemble(settings.models_dir, symbol)
        except NoPromotedMembers:
            print(f"  {symbol}: nothing promoted, no ensemble: left out of the dry-run")
            continue
        print(
            f"  {symbol}: ensemble of "
            + ", ".join(f"{m.model_type} {m.weight:.2f} ({m.version_at_build})" for m in spec.members)
        )
        deployable.append(symbol)
    if not deployable:
        print("no symbol has a promoted model: nothing to score")
        return 1
    runtime = DryRunRuntime(
        build_source(SourceOptions.from_settings(settings)), settings.duckdb_path, settings.models_dir,
        deployable, settings.history_start,
    )  # fmt: skip
    run_iterations(runtime, iterations, sleep_seconds)
    print(
        f"\nSignals are in the `signals` table of {settings.duckdb_path}; promoted models in {settings.models_dir / 'promoted'}"
    )
    print(
        f"Open the UI: DAGSTER_HOME={os.environ['DAGSTER_HOME']} .venv/bin/dagster dev -w workspace.yaml"
        "  (http://127.0.0.1:3000)"
    )
    return 0
