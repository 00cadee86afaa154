"""`trading-assets bench retrain`: what a user waits for when every model of every symbol is retrained.

Synthetic 1-minute history (the settings' seed and predictability) of `--days` days ending on `--end-day` is
ingested and its features built as the assets do (`ingest_days`, `build_feature_days`) into a temporary
DuckDB; then every model type of every symbol trains through `train_symbol` with the model assets' run config
defaults (`asset_defaults`: `run_train_config`, as the assets call it), `--parallel` trainings at a time
(default: the assets' training slots), each in its own process so its peak RSS is its own. The JSON gives
total seconds and, per training: seconds, epochs, windows seen, windows/s, best validation loss, calibrated
test accuracy / log loss / ECE, peak RSS (and where it was reached: `peak_rss_mb_by_phase`). `--repeats N`
trains each model N times (peak memory is not the same in every run).

`--warm`: after the cold retrain, one more week is ingested and every model is retrained warm from the cold
one (its parent), and cold again on the same data, to compare cost and test metrics.
`--recipes`: the lever comparison instead: each named recipe (overrides of the defaults, `RECIPES`) trains
every model, one after another per model (back to back, so machine load changes hit all recipes alike), on
the same data with the same seed, and each is compared with the first one named (`before`: the defaults
this project trained with before the retrain-cost work).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import resource
import shutil
import tempfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from datetime import date, timedelta
from pathlib import Path
from typing import Any, NamedTuple

from trading_assets.ml.config import TrainConfig
from trading_assets.ml.model_types import MODEL_TYPES
from trading_assets.ml.policy import CostPolicy, PromotionPolicy
from trading_assets.ml.training_run import TRAINING_SLOTS, run_train_config

#: the policy and costs every training of a run is judged under
Judging = tuple[PromotionPolicy, CostPolicy]

#: A fixed last day, so the synthetic history (and every figure) is the same on any date.
END_DAY = date(2025, 11, 30)
INGEST_BATCH_DAYS = 30
PAGE_BYTES = resource.getpagesize()
#: Overrides of the model assets' defaults, measured against them by `--recipes`.
RECIPES: dict[str, dict[str, Any]] = {
    "default": {},
    # every model type on the shared defaults before the retrain-cost work: full windows at lr 3e-3, one
    # token per minute, every validation window scored each epoch and for the temperature, in batches of 2,048
    "before": {
        "train_seq_len": None,
        "learning_rate": 3e-3,
        "patch": 1,
        "val_max_samples": None,
        "calibration_max_samples": None,
        "eval_batch_size": 2048,
    },
    "patch_5": {"patch": 5},
    "temperature_on_whole_val": {"calibration_max_samples": None},
    "lr_3e-3": {"learning_rate": 3e-3},
    "epochs_8": {"max_epochs": 8},
    "short_windows": {"train_seq_len": 20, "learning_rate": 1e-3},
    "short_windows_4_evals": {
        "train_seq_len": 20,
        "learning_rate": 1e-3,
        "evals_per_epoch": 4,
        "patience": 4,
    },
    "short_windows_4_evals_even": {
        "train_seq_len": 20,
        "learning_rate": 1e-3,
        "evals_per_epoch": 4,
        "patience": 4,
        "window_sampling": "even",
    },
}


class Job(NamedTuple):
    """One training: a model type of a symbol, with the config it trains with."""

    symbol: str
    model: str
    config: TrainConfig


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--days", type=int, default=730, help="days of history per symbol")
    parser.add_argument("--end-day", type=date.fromisoformat, default=END_DAY, help="last day of history")
    parser.add_argument("--symbols", nargs="+", help="symbols (default: TA_SYMBOLS)")
    parser.add_argument("--models", nargs="+", choices=MODEL_TYPES, default=list(MODEL_TYPES))
    parser.add_argument(
        "--parallel", type=int, help="trainings at once (default: the assets' training slots)"
    )
    parser.add_argument("--warm", action="store_true", help="then one more week: warm and cold retrain")
    parser.add_argument("--recipes", nargs="+", choices=list(RECIPES), help="compare these recipes instead")
    parser.add_argument(
        "--samples-per-epoch",
        type=int,
        help="override the defaults' windows per epoch (at reduced --days, 200,000 x days / 730 keeps the "
        "share of the history an epoch sees as at two years)",
    )
    parser.add_argument("--max-epochs", type=int, help="override the defaults' maximum epochs")
    parser.add_argument(
        "--repeats", type=int, default=1, help="train each model this many times (peak memory varies by run)"
    )
    parser.add_argument(
        "--warm-samples-per-epoch", type=int, help="override the defaults' windows per warm epoch (likewise)"
    )


def run(args: argparse.Namespace) -> dict[str, Any]:
    from trading_assets.ml.fit import pick_device
    from trading_assets.settings import load_settings

    settings = load_settings()  # this command's entry point: the same settings the model assets get
    args.symbols = args.symbols or list(settings.symbols)
    overrides = {
        "samples_per_epoch": args.samples_per_epoch,
        "max_epochs": args.max_epochs,
        "warm_samples_per_epoch": args.warm_samples_per_epoch,
    }
    overrides = {k: v for k, v in overrides.items() if v is not None}
    configs = {model: replace(asset_defaults(settings, model), **overrides) for model in args.models}
    device = next(iter(configs.values())).device
    parallel = args.parallel or TRAINING_SLOTS
    first = args.end_day - timedelta(days=args.days - 1)
    root = Path(tempfile.mkdtemp(prefix="bench-retrain-"))
    try:
        db_path = root / "bench.duckdb"
        started = time.perf_counter()
        build_history(settings, db_path, args.symbols, first, args.end_day, first)
        data_seconds = time.perf_counter() - started
        head = {
            "benchmark": "retrain",
            "device": str(pick_device(device)),
            "days": args.days,
            "first_day": first.isoformat(),
            "last_day": args.end_day.isoformat(),
            "symbols": args.symbols,
            "models": args.models,
            "data_seconds": round(data_seconds, 1),
            "train_configs": {model: config.to_dict() for model, config in configs.items()},
            "cpu_cores": os.cpu_count(),  # figures move with whatever else these cores run
        }
        jobs = [
            Job(symbol, model, configs[model]) for symbol in args.symbols for model in args.models
        ] * args.repeats
        if args.recipes:
            return {**head, **compare_recipes(db_path, jobs, args.recipes, root, first, args.end_day)}
        judging = (settings.policy, settings.costs_in_force())  # a run config without overrides: in force
        window = (first, args.end_day)
        cold = _timed_trainings(db_path, jobs, judging, root / "models", window, parallel)
        result = {**head, "parallel": parallel, "total_seconds": cold["total_seconds"], "cold": cold}
        if args.warm:
            result["warm_week"] = warm_week(
                settings, db_path, jobs, judging, root, cold, first, args, parallel
            )
        return result
    finally:
        shutil.rmtree(root, ignore_errors=True)


def asset_defaults(settings, model_type: str) -> TrainConfig:
    """What a `<type>_model` run with its run config's defaults trains with: the settings' epochs and windows
    per epoch, the rest TrainConfig's defaults."""
    return run_train_config(
        model_type, max_epochs=settings.train_epochs, samples_per_epoch=settings.train_samples_per_epoch
    )


def build_history(
    settings, db_path: Path, symbols: list[str], first: date, last: date, history_start: date
) -> None:
    """Candles and features of `symbols` over [first, last], as the raw_candles and features assets make them."""
    from trading_assets.features.build import build_feature_days
    from trading_assets.market.ingest import ingest_days
    from trading_assets.market.synthetic import SyntheticSource

    source = SyntheticSource(
        settings.source_options.synthetic_seed, settings.source_options.synthetic_predictability
    )
    days = [first + timedelta(days=offset) for offset in range((last - first).days + 1)]
    for symbol in symbols:
        for start in range(0, len(days), INGEST_BATCH_DAYS):
            batch = days[start : start + INGEST_BATCH_DAYS]
            ingest_days(source, db_path, symbol, batch, settings.max_invalid_share)
            build_feature_days(db_path, symbol, batch, history_start)


def _train_and_measure(
    db_path: Path,
    symbol: str,
    model_type: str,
    config: TrainConfig,
    models_dir: Path,
    judging: Judging,
    window: tuple[date, date],
    parent: Path | None = None,
) -> dict[str, Any]:
    """One training in this (child) process, summarised; peak RSS is this process's high-water mark, and
    `peak_rss_mb_by_phase` where it was reached (sampled every 50 ms)."""
    started = time.perf_counter()
    from trading_assets.ml.train import TrainSpec, train_symbol  # the model assets' own call

    spec = TrainSpec(model_type, symbol, models_dir, config, *judging, parent=parent)
    with RssSampler() as sampler:
        result = train_symbol(
            db_path,
            *window,
            spec,
            progress=lambda _update: sampler.next_segment(),
            log=lambda _line: sampler.next_segment(),
        )
    calibrated = result.metrics["calibrated"]
    return {
        "symbol": symbol,
        "model": model_type,
        "mode": result.manifest["training_mode"],
        "parent_version": result.manifest["parent_version"],
        "seconds": round(time.perf_counter() - started, 1),
        "train_seconds": round(result.seconds, 1),
        "epochs": result.epochs_run,
        "best_epoch": result.best_epoch,
        "windows_seen": result.manifest["windows_seen"],
        "windows_per_s": round(result.samples_per_s, 1),
        "best_val_loss": round(min(entry["val_loss"] for entry in result.learning_curve), 5),
        "first_val_loss": round(result.learning_curve[0]["val_loss"], 5),
        "test_accuracy": round(calibrated["accuracy"], 5),
        "test_log_loss": round(calibrated["log_loss"], 5),
        "test_ece": round(calibrated["ece"], 5),
        "test_samples": calibrated["samples"],
        "folds": result.metrics["evaluation"]["folds"],
        "fold_refit_seconds": round(sum(fold["refit_seconds"] for fold in result.metrics["folds"]), 1),
        "gates_failed": [gate.name for gate in result.gates if not gate.passed],
        "gates_passed": all(gate.passed for gate in result.gates),
        "peak_rss_mb": round(peak_rss_mb()),
        "peak_rss_mb_by_phase": sampler.peaks(),
        "artifact": str(result.artifact_dir),
    }


def peak_rss_mb() -> float:
    """This process's peak RSS: VmHWM (per address space, so not inherited across exec), else ru_maxrss."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class RssSampler:
    """This process's peak RSS by phase of a training, sampled every `interval` seconds in a thread.

    Segments: the first is "read" (the feature rows, until train_symbol's log line); each `next_segment()`
    (a progress update, i.e. after a validation) closes one as "fit" (training and validating); the last,
    after the final validation, is "score" (the best weights' calibration and test scoring, the artifact);
    a model type without validations (logistic) has one "fit_and_score" after "read".
    A sampled peak can miss a spike shorter than `interval` that VmHWM (`peak_rss_mb`) holds."""

    def __init__(self, interval: float = 0.05) -> None:
        self._interval = interval
        self._segment = ("read", 0.0)
        self._peaks: dict[str, float] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample_until_stopped, daemon=True)

    def next_segment(self, closed_as: str = "fit") -> None:
        self._sample()
        with self._lock:
            name, peak = self._segment
            if name == "read" or (name == "fit_and_score" and closed_as == "score"):
                closed_as = name
            self._peaks[closed_as] = max(self._peaks.get(closed_as, 0.0), peak)
            self._segment = ("fit_and_score" if name == "read" else "fit", 0.0)

    def peaks(self) -> dict[str, int]:
        """MiB per phase, in order."""
        order = ("read", "fit", "score", "fit_and_score")
        return {name: round(self._peaks[name]) for name in order if name in self._peaks}

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.next_segment(closed_as="score")

    def _sample_until_stopped(self) -> None:
        while not self._stop.wait(self._interval):
            self._sample()

    def _sample(self) -> None:
        resident_mb = int(Path("/proc/self/statm").read_text().split()[1]) * PAGE_BYTES / 2**20
        with self._lock:
            name, peak = self._segment
            self._segment = (name, max(peak, resident_mb))


def _timed_trainings(
    db_path: Path,
    jobs: list[Job],
    judging: Judging,
    models_dir: Path,
    window: tuple[date, date],
    parallel: int,
    parents: dict[tuple[str, str], Path] | None = None,
) -> dict[str, Any]:
    """Every job, `parallel` at a time, each in a fresh process (spawned: no forked torch)."""
    started = time.perf_counter()
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=parallel, mp_context=context, max_tasks_per_child=1) as pool:
        futures = [
            pool.submit(
                _train_and_measure,
                db_path,
                job.symbol,
                job.model,
                job.config,
                models_dir,
                judging,
                window,
                (parents or {}).get((job.symbol, job.model)),
            )
            for job in jobs
        ]
        trainings = [future.result() for future in futures]
    return {"total_seconds": round(time.perf_counter() - started, 1), "trainings": trainings}


def warm_week(
    settings,
    db_path: Path,
    jobs: list[Job],
    judging: Judging,
    root: Path,
    cold: dict[str, Any],
    first: date,
    args: argparse.Namespace,
    parallel: int,
) -> dict[str, Any]:
    """One more week of history; every model retrained warm from its cold parent, then cold, on it."""
    last = args.end_day + timedelta(days=7)
    build_history(settings, db_path, args.symbols, args.end_day + timedelta(days=1), last, first)
    parents = {(t["symbol"], t["model"]): Path(t["artifact"]) for t in cold["trainings"]}
    window = (first, last)
    warm_jobs = [job._replace(config=replace(job.config, warm_start=True)) for job in jobs]
    warm = _timed_trainings(db_path, warm_jobs, judging, root / "warm", window, parallel, parents)
    recold = _timed_trainings(db_path, jobs, judging, root / "recold", window, parallel)
    return {
        "last_day": last.isoformat(),
        "warm": warm,
        "cold_same_data": recold,
        "warm_seconds_share_of_cold": round(warm["total_seconds"] / recold["total_seconds"], 3),
    }


def compare_recipes(
    db_path: Path,
    jobs: list[Job],
    recipes: list[str],
    root: Path,
    first: date,
    last: date,
) -> dict[str, Any]:
    """Each recipe on each job, back to back per job; deltas of each against the first recipe on the same job."""
    judging = (PromotionPolicy(), CostPolicy(fee_bps=10.0))
    rows = []
    for job in jobs:
        measured = {}
        for name in recipes:
            recipe = job._replace(config=replace(job.config, **RECIPES[name]))
            [row] = _timed_trainings(db_path, [recipe], judging, root / name, (first, last), 1)["trainings"]
            measured[name] = {"recipe": name, **row}
        rows.extend(_with_deltas(measured))
    return {"recipes": {name: RECIPES[name] for name in recipes}, "comparison": rows}


def _with_deltas(measured: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    base = next(iter(measured.values()))
    for row in measured.values():
        row["compared_with"] = base["recipe"]
        row["seconds_ratio"] = round(row["seconds"] / base["seconds"], 3)
        row["log_loss_delta"] = round(row["test_log_loss"] - base["test_log_loss"], 5)
        row["accuracy_delta"] = round(row["test_accuracy"] - base["test_accuracy"], 5)
        row["quality_holds"] = row["log_loss_delta"] <= 0.002 and row["accuracy_delta"] >= -0.005
        row.pop("artifact")
    return list(measured.values())
