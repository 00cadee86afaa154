"""`trading-assets bench gates`: the promotion gates on real 1-minute candles.

Every file of the three real data sets under `--data` (default `../shared/data/real-1m` beside the
repository; a set that is absent is skipped and listed in `skipped`), every model type of the catalogue:
the file's candles become a feature matrix as the features assets compute it (`compute_features` from the
first UTC midnight of the file, the first `MAX_LOOKBACK` minutes being warm-up; minutes the exchange omitted
are filled and flagged, and windows over long gaps are not used) and train through `train(matrix,
TrainSpec(...))` in this process, one training at a time, judged under `PromotionPolicy(min_accuracy=0.51,
folds=--folds)` (the README's TA_MIN_ACCURACY=0.51, every other threshold at its default) and
`CostPolicy(fee_bps=10.0)` (Binance's taker fee: the data are Binance candles; slippage and half spread at
their defaults, long/flat).

Each model trains with its catalogue recipe over the shared defaults (so the label's horizon is
TrainConfig's, 5 minutes) with `--epochs` x `--samples-per-epoch` (default 3 x 20,000; the full recipe the
model assets train with is 15 epochs x 200,000 windows). Run it on one core: `taskset -c 1 trading-assets
bench gates ...` took 715 s for the 21 trainings on the shared 2-core machine (one torch thread:
`torch_threads` in the JSON); unpinned, with the other core busy, the same trainings ran 5-8 times slower
(two threads each waiting for the other).

Per training the JSON gives: data set, symbol, model, feature rows, folds, pooled calibrated accuracy and
base rate (the majority class's share), the strongest rival (naive rule or model in service) and its
accuracy, each gate with passed / measured value / the bound it decided on / threshold, the gates that
refused it, the break-even fee in bps (`metrics["backtest"]["break_even_fee_bps"]`: the per-side fee at
which the point-estimate excess over the strictest constant is 0; null when it never trades), net return
and excess over the best constant position, seconds. A bound of -inf (too few samples for evidence) is
written as null. A training that raises is recorded with its error and traceback, and the run goes on.
Summary: trainings, promoted (every gate passed), errors, and `markdown`: the README's table.
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import sys
import tempfile
import time
import traceback
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from trading_assets.ml.config import TrainConfig
from trading_assets.ml.model_types import MODEL_TYPES
from trading_assets.ml.policy import CostPolicy, PromotionPolicy

#: The real data sets, in the order the table lists them (platform facts, "Real market data").
DATASETS: tuple[str, ...] = (
    "binance_2026-03_paparocketeer-freqtrade-bot",
    "binance_2024-07_mintanam-ftrade",
    "freqtrade_testdata",
)
DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real-1m"
#: The README's setting for this table; every other threshold of the policy at its default.
MIN_ACCURACY = 0.51
#: Binance's taker fee per side (ccxt's fee table: 0.001): the data are Binance candles.
FEE_BPS = 10.0
#: What the model assets train with (TrainConfig's shared defaults), for the JSON's note.
FULL_RECIPE = {"max_epochs": TrainConfig().max_epochs, "samples_per_epoch": TrainConfig().samples_per_epoch}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder holding the real data sets")
    parser.add_argument("--datasets", nargs="+", choices=DATASETS, default=list(DATASETS))
    parser.add_argument("--models", nargs="+", choices=MODEL_TYPES, default=list(MODEL_TYPES))
    parser.add_argument("--folds", type=int, default=4, help="walk-forward folds the gates judge")
    parser.add_argument("--epochs", type=int, default=3, help="maximum epochs (the full recipe: 15)")
    parser.add_argument(
        "--samples-per-epoch", type=int, default=20_000, help="training windows per epoch (full: 200,000)"
    )
    parser.add_argument("--min-accuracy", type=float, default=MIN_ACCURACY, help="the accuracy gate's bar")
    parser.add_argument("--fee-bps", type=float, default=FEE_BPS, help="fee per side in basis points")
    parser.add_argument("--days", type=int, help="only the first DAYS days of each file (default: all)")


def run(args: argparse.Namespace) -> dict[str, Any]:
    from trading_assets.ml.fit import pick_device, thread_budget
    from trading_assets_bench import BenchmarkRefused

    policy = PromotionPolicy(min_accuracy=args.min_accuracy, folds=args.folds)
    costs = CostPolicy(fee_bps=args.fee_bps)
    shared = TrainConfig(max_epochs=args.epochs, samples_per_epoch=args.samples_per_epoch)
    files, skipped = data_files(Path(args.data), args.datasets)
    if not files:
        raise BenchmarkRefused(f"no real candles found under {args.data}: {'; '.join(skipped)}")
    started = time.perf_counter()
    records: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-gates-") as directory:
        for dataset, path in files:
            records += bench_file(
                path, dataset, args.models, policy, costs, shared, Path(directory), days=args.days
            )
    promoted = [r for r in records if r.get("promoted")]
    errors = [r for r in records if "error" in r]
    return {
        "benchmark": "gates",
        "data": str(args.data),
        "datasets": sorted({dataset for dataset, _ in files}, key=DATASETS.index),
        "skipped": skipped,
        "models": args.models,
        "device": str(pick_device(shared.device)),
        "cpu_cores": os.cpu_count(),
        "torch_threads": thread_budget(shared.concurrent_trainings),  # taskset -c N: one core, one thread
        "policy": policy.model_dump(),
        "costs": costs.model_dump(),
        "recipe": {
            "this_run": {"max_epochs": args.epochs, "samples_per_epoch": args.samples_per_epoch},
            "full": FULL_RECIPE,
            "note": "each model type's catalogue recipe over the shared defaults with this run's epochs and "
            "windows per epoch; the model assets train with the full recipe (15 epochs x 200,000 windows)",
        },
        "train_configs": {model: _train_config(model, shared).to_dict() for model in args.models},
        "days": args.days,
        "total_seconds": round(time.perf_counter() - started, 1),
        "trainings": len(records),
        "promoted": len(promoted),
        "promoted_trainings": [f"{r['dataset']} {r['symbol']} {r['model']}" for r in promoted],
        "errors": len(errors),
        "markdown": markdown_table(records),
        "records": records,
    }


def data_files(root: Path, datasets: list[str]) -> tuple[list[tuple[str, Path]], list[str]]:
    """(data set, file) of every `*-1m.feather` of each set present, and a line for each set skipped."""
    files, skipped = [], []
    for dataset in datasets:
        found = sorted((root / dataset).glob("*-1m.feather"))
        if not found:
            skipped.append(f"{dataset}: absent (no *-1m.feather under {root / dataset})")
        files += [(dataset, path) for path in found]
    return files, skipped


def symbol_of(path: Path) -> str:
    """`BTC_USDT-1m.feather` -> `BTC-USDT` (the project's symbol spelling, safe in artifact paths)."""
    return path.name.removesuffix(".feather").removesuffix("-1m").replace("_", "-")


def read_candles(path: Path, days: int | None = None):
    """The file's candles as the pipeline reads them (`minute` in UTC microseconds), from its first UTC
    midnight on (the first day of features starts there), `days` days at most."""
    import polars as pl

    candles = (
        pl.read_ipc(path)
        .rename({"date": "minute"})
        .with_columns(pl.col("minute").dt.cast_time_unit("us"))
        .sort("minute")
    )
    start = first_midnight(candles["minute"][0])
    end = start + timedelta(days=days) if days is not None else None
    candles = candles.filter(pl.col("minute") >= start)
    return candles.filter(pl.col("minute") < end) if end is not None else candles


def first_midnight(minute: datetime) -> datetime:
    """The first UTC midnight at or after `minute`."""
    midnight = datetime(minute.year, minute.month, minute.day, tzinfo=UTC)
    return midnight if midnight == minute else midnight + timedelta(days=1)


def matrix_of(candles):
    """Candles -> the model-feature matrix, as the features assets compute it; history starts at the first
    candle's UTC midnight, so its first MAX_LOOKBACK minutes are warm-up (not usable)."""
    from trading_assets.features.pipeline import compute_features
    from trading_assets.features.store import feature_matrix

    start = candles["minute"][0]
    end = candles["minute"][-1] + timedelta(minutes=1)
    return feature_matrix(compute_features(candles, start, end, history_start=start.date()))


def _train_config(model: str, shared: TrainConfig) -> TrainConfig:
    from trading_assets.ml.model_types import CATALOGUE

    return CATALOGUE[model].train_config(shared)


def bench_file(
    path: Path,
    dataset: str,
    models: list[str],
    policy: PromotionPolicy,
    costs: CostPolicy,
    shared: TrainConfig,
    models_dir: Path,
    days: int | None = None,
) -> list[dict[str, Any]]:
    """One record per model type trained on the file's candles (see the module docstring); a training that
    raises gives a record with its `error` and `traceback`."""
    symbol = symbol_of(path)
    candles = read_candles(path, days)
    matrix = matrix_of(candles)
    data = {
        "dataset": dataset,
        "file": path.name,
        "symbol": symbol,
        "first_minute": _minute_text(matrix.minutes[0]),
        "last_minute": _minute_text(matrix.minutes[-1]),
        "rows": len(matrix.x),
        "usable_rows": int(matrix.usable.sum()),
        "filled_minutes": int((~matrix.observed).sum()),
    }
    records = []
    for model in models:
        started = time.perf_counter()
        _say(f"{dataset} {symbol} {model}: {data['rows']} rows, training")
        try:
            record = train_and_judge(matrix, symbol, model, policy, costs, shared, models_dir)
        except Exception as error:  # a benchmark reports the failure and goes on with the others
            record = {"error": f"{type(error).__name__}: {error}", "traceback": traceback.format_exc()}
        record = {**data, "model": model, **record, "seconds": round(time.perf_counter() - started, 1)}
        _say(
            f"{dataset} {symbol} {model}: "
            + (record["error"] if "error" in record else f"refused by {record['refused_by'] or 'none'}")
            + f" ({record['seconds']} s)"
        )
        records.append(record)
    return records


def train_and_judge(
    matrix,
    symbol: str,
    model: str,
    policy: PromotionPolicy,
    costs: CostPolicy,
    shared: TrainConfig,
    models_dir: Path,
) -> dict[str, Any]:
    """Train one model type on `matrix` and summarise how the gates judged it."""
    from trading_assets.ml.train import TrainSpec, train

    spec = TrainSpec(model, symbol, models_dir, _train_config(model, shared), policy, costs)
    result = train(matrix, spec)
    shutil.rmtree(result.artifact_dir, ignore_errors=True)  # only the judgement is kept
    report = result.metrics
    calibrated, skill, backtest = report["calibrated"], report["skill"], report["backtest"]
    rival = skill["rivals"][skill["strongest_rival"]]
    gates = {
        gate.name: {
            "passed": gate.passed,
            "measured": _number(gate.measured),
            "bound": _number(gate.bound),
            "threshold": gate.threshold,
            **({"rival": gate.rival} if gate.rival else {}),
        }
        for gate in result.gates
    }
    refused_by = [gate.name for gate in result.gates if not gate.passed]
    return {
        "folds": report["evaluation"]["folds"],
        "samples": report["evaluation"]["samples"],
        "fold_accuracies": [_number(fold["accuracy"]) for fold in report["folds"]],
        "epochs_run": result.epochs_run,
        "accuracy": _number(calibrated["accuracy"]),
        "base_rate": _number(calibrated["base_rate"]),
        "ece": _number(calibrated["ece"]),
        "strongest_rival": skill["strongest_rival"],
        "rival_accuracy": _number(rival["rival_accuracy"]),
        "margin": _number(skill["margin"]),
        "margin_lower_bound": _number(skill["margin_lower_bound"]),
        "gates": gates,
        "refused_by": refused_by,
        "promoted": not refused_by,
        "break_even_fee_bps": _number(backtest["break_even_fee_bps"], 2),
        "net_return": _number(backtest["return"]),
        "buy_and_hold_return": _number(backtest["buy_and_hold_return"]),
        "best_constant": backtest["best_constant"],
        "excess_return": _number(backtest["excess_return"]),
        "excess_lower_bound": _number(backtest["excess_lower_bound"]),
        "trades": backtest["trades"],
        "time_in_market": _number(backtest["time_in_market"]),
        "backtest_periods": backtest["periods"],
        "train_seconds": round(result.seconds, 1),
    }


def markdown_table(records: list[dict[str, Any]]) -> str:
    """data set | symbol | model | accuracy | refused by | break-even fee bps, one row per training."""
    lines = [
        "| data set | symbol | model | accuracy | refused by | break-even fee bps |",
        "|---|---|---|---:|---|---:|",
    ]
    for r in records:
        if "error" in r:
            accuracy, refused, fee = "", f"error: {r['error'].splitlines()[0]}", ""
        else:
            accuracy = f"{r['accuracy']:.4f}"
            refused = ", ".join(name.removesuffix("_gate") for name in r["refused_by"]) or "none (promoted)"
            fee = "none" if r["break_even_fee_bps"] is None else f"{r['break_even_fee_bps']:.1f}"
        lines.append(f"| {r['dataset']} | {r['symbol']} | {r['model']} | {accuracy} | {refused} | {fee} |")
    return "\n".join(lines)


def _number(value: float | None, digits: int = 6) -> float | None:
    """Rounded; None for None and for a non-finite value (a bound of -inf: too few samples for evidence)."""
    if value is None or not math.isfinite(value):
        return None
    return round(float(value), digits)


def _minute_text(minute) -> str:
    import numpy as np

    return str(np.datetime_as_string(np.datetime64(minute).astype("datetime64[m]"))) + "Z"


def _say(line: str) -> None:
    """Progress on stderr (stdout carries the JSON)."""
    print(f"[bench gates] {line}", file=sys.stderr, flush=True)
