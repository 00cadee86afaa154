"""`trading-assets bench training`: the project's LSTM trainer against the old pipeline's recipe, same run.

Throughput (default): steady-state training samples/s after a warm-up, peak RSS, mean loss over the first
and last tenth of steps, with the same model function as the lstm_model asset and index-tensor windows.
Time to quality (--target-val-loss): the baseline's protocol (first 85 % of rows train; BCE on 4,096
validation windows evenly spaced over the last 15 %, in eval mode, after every 10,000 training samples;
the clock counts training only). The project's recipe there: batch 64, Adam 1e-3, index-tensor windows,
and training on the last --train-seq-len (20) steps of each window, the model function unchanged.
The baseline recipe runs as a subprocess on identical data; ratios are ours / baseline. `--pairs N`
alternates the two N times and reports every pair's ratio and the median (steadier on a shared machine).
On a GPU (--device auto picks CUDA when present) the same run also measures the project's trainer on the
CPU and reports the GPU's speedup over it.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from trading_assets.ml.config import TrainConfig
from trading_assets.ml.data import gather_windows
from trading_assets.ml.fit import pick_device, thread_budget, train_step
from trading_assets.ml.model_types import LSTM
from trading_assets_bench import BenchmarkRefused

#: The old pipeline's recipe, outside this repository (next to a checkout in ../shared); --baseline overrides.
DEFAULT_BASELINE = Path(__file__).resolve().parents[1] / ".." / "shared" / "bench" / "baseline_recipe.py"
EVAL_EVERY = 10_000
VAL_WINDOWS = 4096


def make_data(rows: int = 200_000, features: int = 31, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Identical to baseline_recipe.make_data (a test checks it): features and a label learnable from the past."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((rows, features), dtype=np.float32)
    c = np.cumsum(np.concatenate([[0.0], x[:, 0].astype(np.float64)]))
    mean5 = np.zeros(rows)
    mean5[4:] = (c[5:] - c[:-5]) / 5.0
    lag10 = np.zeros(rows, dtype=np.float32)
    lag10[10:] = x[:-10, 2]
    logit = 2.0 * mean5 + 0.8 * x[:, 1] - 0.5 * lag10 + 0.5 * rng.standard_normal(rows)
    return x, (logit > 0).astype(np.float32)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = TrainConfig()
    parser.add_argument("--arch", default="bi", choices=["bi", "uni"])
    parser.add_argument("--seq-len", type=int, default=defaults.seq_len)
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    parser.add_argument(
        "--learning-rate",
        type=float,
        default=LSTM.recipe["learning_rate"],
        help="constant Adam learning rate (default: the LSTM recipe's peak)",
    )
    parser.add_argument(
        "--train-seq-len",
        type=int,
        default=LSTM.recipe["train_seq_len"],
        help="target mode: train on the last N steps of each window (validation always sees --seq-len steps)",
    )
    parser.add_argument("--seconds", type=float, default=20.0, help="measured training time (throughput)")
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--rows", type=int, default=200_000, help="rows of synthetic data")
    parser.add_argument("--features", type=int, default=31)
    parser.add_argument("--data", type=Path, help="npz with arrays x (rows, features) and y (rows,)")
    parser.add_argument("--write-data", type=Path, help="write the synthetic data to this npz and stop")
    parser.add_argument("--target-val-loss", type=float, help="measure time to this validation BCE")
    parser.add_argument("--max-seconds", type=float, default=900.0, help="training time limit (target mode)")
    parser.add_argument("--baseline", type=Path, default=DEFAULT_BASELINE, help="baseline_recipe.py")
    parser.add_argument("--skip-baseline", action="store_true", help="measure the project's trainer only")
    parser.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda")
    parser.add_argument(
        "--pairs",
        type=int,
        default=1,
        help="throughput: measure ours then the baseline this many times in turn; report each pair's ratio",
    )


def run(args: argparse.Namespace) -> dict[str, Any]:
    if args.write_data:
        x, y = make_data(args.rows, args.features)
        np.savez(args.write_data, x=x, y=y)
        return {"written": str(args.write_data), "rows": args.rows, "features": args.features}
    if not args.skip_baseline:
        _check_baseline(args.baseline)
    torch.set_num_threads(thread_budget(1))
    device = pick_device(args.device)
    if args.target_val_loss is None:
        x, y = _load(args)
        if args.pairs > 1:
            return paired_throughput(args, x, y, device)
        ours = _with_cpu(measure_throughput, args, x, y, device)
        return _with_baseline(ours, args, _baseline_throughput_args(args))
    with tempfile.TemporaryDirectory() as scratch:
        data = args.data or _write(Path(scratch) / "data.npz", args)
        x, y = _load_npz(data)
        ours = _with_cpu(measure_time_to_target, args, x, y, device)
        baseline_args = ["--data", str(data), "--target-val-loss", str(args.target_val_loss)]
        return _with_baseline(ours, args, [*baseline_args, "--max-seconds", str(args.max_seconds)])


Measure = Callable[[argparse.Namespace, np.ndarray, np.ndarray, torch.device], dict[str, Any]]


def _with_cpu(
    measure: Measure, args: argparse.Namespace, x: np.ndarray, y: np.ndarray, device: torch.device
) -> dict:
    """Measure on `device`; on a GPU also measure the same trainer on the CPU and add the speedup."""
    ours = measure(args, x, y, device)
    if device.type == "cpu":
        return ours
    on_cpu = measure(args, x, y, torch.device("cpu"))
    key = "samples_per_s" if "samples_per_s" in ours else "seconds_to_target"
    speedup = ours[key] / on_cpu[key] if key == "samples_per_s" else on_cpu[key] / max(ours[key], 1e-9)
    return {**ours, "cpu": on_cpu, "gpu_speedup_over_cpu": speedup}


def paired_throughput(
    args: argparse.Namespace, x: np.ndarray, y: np.ndarray, device: torch.device
) -> dict[str, Any]:
    """Ours, then the baseline, `args.pairs` times in turn: each ratio compares two runs made back to back,
    so a change in machine load between pairs moves both sides; the median ratio is the figure to judge."""
    if args.skip_baseline:
        raise ValueError("--pairs compares with the baseline: drop --skip-baseline")
    pairs = []
    for _ in range(args.pairs):
        ours = measure_throughput(args, x, y, device)
        measured = _with_baseline(ours, args, _baseline_throughput_args(args))
        pairs.append(
            {
                "samples_per_s": ours["samples_per_s"],
                "baseline_samples_per_s": measured["baseline"]["samples_per_s"],
                "ratio": measured["ratios"]["samples_per_s"],
            }
        )
    ratios = [pair["ratio"] for pair in pairs]
    return {
        "benchmark": "training_pairs",
        "arch": args.arch,
        "batch_size": args.batch_size,
        "seconds_per_side": args.seconds,
        "device": str(device),
        "pairs": pairs,
        "ratio_median": statistics.median(ratios),
        "ratio_min": min(ratios),
        "ratio_max": max(ratios),
    }


def _sync(device: torch.device) -> None:
    """Wait for queued GPU work so wall-clock readings include it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _load(args: argparse.Namespace) -> tuple[np.ndarray, np.ndarray]:
    return _load_npz(args.data) if args.data else make_data(args.rows, args.features)


def _load_npz(path: Path) -> tuple[np.ndarray, np.ndarray]:
    with np.load(path, allow_pickle=False) as arrays:
        return np.ascontiguousarray(arrays["x"], dtype=np.float32), arrays["y"].astype(np.float32)


def _write(path: Path, args: argparse.Namespace) -> Path:
    x, y = make_data(args.rows, args.features)
    np.savez(path, x=x, y=y)
    return path


def _model_and_optimizer(
    args: argparse.Namespace, features: int, device: torch.device
) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    """The lstm_model asset's model function (the catalogue's LSTM builder) and the trainer's optimiser."""
    torch.manual_seed(0)
    config = TrainConfig(seq_len=args.seq_len, bidirectional=args.arch == "bi")
    model = LSTM.build(features, config).to(device).train()
    return model, torch.optim.Adam(model.parameters(), lr=args.learning_rate)


def _batches(ends: torch.Tensor, batch_size: int, device: torch.device) -> Iterator[torch.Tensor]:
    """Window ends in random order, epoch after epoch, as index tensors (no per-sample Dataset)."""
    generator = torch.Generator().manual_seed(0)
    while True:
        for batch in ends[torch.randperm(len(ends), generator=generator)].split(batch_size):
            yield batch.to(device, non_blocking=True)


def measure_throughput(
    args: argparse.Namespace, x: np.ndarray, y: np.ndarray, device: torch.device
) -> dict[str, Any]:
    model, optimizer = _model_and_optimizer(args, x.shape[1], device)
    xt, yt = torch.from_numpy(x).to(device), torch.from_numpy(y).to(device)
    losses: list[torch.Tensor] = []
    samples, started, measuring = 0, time.perf_counter(), False
    for batch in _batches(torch.arange(args.seq_len - 1, len(x)), args.batch_size, device):
        losses.append(train_step(model, optimizer, gather_windows(xt, batch, args.seq_len), yt[batch]))
        if not measuring:
            if time.perf_counter() - started >= args.warmup:
                _sync(device)
                measuring, started = True, time.perf_counter()
            continue
        samples += len(batch)
        if time.perf_counter() - started >= args.seconds:
            break
    _sync(device)
    result = _throughput_result(args, x, model, samples, time.perf_counter() - started, losses)
    return {**result, "device": str(device)}


def _throughput_result(
    args: argparse.Namespace,
    x: np.ndarray,
    model: torch.nn.Module,
    samples: int,
    elapsed: float,
    losses: list,
) -> dict[str, Any]:
    values = torch.stack(losses).cpu().numpy()
    tenth = max(1, len(values) // 10)
    return {
        "recipe": "trading-assets",
        "arch": args.arch,
        "params": sum(p.numel() for p in model.parameters()),
        "seq_len": args.seq_len,
        "batch_size": args.batch_size,
        "rows": len(x),
        "training_windows": len(x) - args.seq_len + 1,
        "features": x.shape[1],
        "threads": torch.get_num_threads(),
        "samples_per_s": samples / elapsed,
        "measured_s": elapsed,
        "loss_first": float(values[:tenth].mean()),
        "loss_last": float(values[-tenth:].mean()),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def validation_ends(rows: int, seq_len: int) -> np.ndarray:
    """The baseline's 4,096 validation windows: ends evenly spaced over the last 15 % of rows."""
    return np.linspace(int(rows * 0.85) + seq_len - 1, rows - 1, VAL_WINDOWS).astype(np.int64)


def measure_time_to_target(
    args: argparse.Namespace, x: np.ndarray, y: np.ndarray, device: torch.device
) -> dict[str, Any]:
    """Train until the validation BCE reaches the target; the clock stops for every evaluation."""
    model, optimizer = _model_and_optimizer(args, x.shape[1], device)
    xt, yt = torch.from_numpy(x).to(device), torch.from_numpy(y).to(device)
    ends = torch.arange(args.seq_len - 1, int(len(x) * 0.85))
    train_len = min(args.train_seq_len, args.seq_len)
    val_ends = torch.from_numpy(validation_ends(len(x), args.seq_len)).to(device)
    val_x, val_y = gather_windows(xt, val_ends, args.seq_len), yt[val_ends]
    trained_s, seen, next_eval, val_loss, evals = 0.0, 0, EVAL_EVERY, float("nan"), []
    _sync(device)
    segment_started = time.perf_counter()
    for batch in _batches(ends, args.batch_size, device):
        train_step(model, optimizer, gather_windows(xt, batch, train_len), yt[batch])
        seen += len(batch)
        if seen < next_eval:
            continue
        _sync(device)
        trained_s += time.perf_counter() - segment_started
        next_eval += EVAL_EVERY
        val_loss = _val_loss(model, val_x, val_y)
        evals.append((seen, round(trained_s, 2), round(val_loss, 4)))
        if val_loss <= args.target_val_loss or trained_s >= args.max_seconds:
            break
        model.train()
        segment_started = time.perf_counter()
    reached = val_loss <= args.target_val_loss
    return {
        "recipe": "trading-assets",
        "device": str(device),
        "arch": args.arch,
        "batch_size": args.batch_size,
        "learning_rate": args.learning_rate,
        "train_seq_len": train_len,
        "target_val_loss": args.target_val_loss,
        "reached": reached,
        "seconds_to_target": trained_s,
        "samples_to_target": seen,
        "val_loss": val_loss,
        "evals": evals,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


@torch.no_grad()
def _val_loss(model: torch.nn.Module, val_x: torch.Tensor, val_y: torch.Tensor) -> float:
    """Mean BCE over the validation windows, in chunks of 1,024 to keep the activations' peak memory low."""
    model.eval()
    logits = torch.cat([model(chunk) for chunk in val_x.split(1024)])
    return float(torch.nn.functional.binary_cross_entropy_with_logits(logits, val_y))


def _baseline_throughput_args(args: argparse.Namespace) -> list[str]:
    """The baseline's throughput mode always makes its own synthetic data: give it the same shape."""
    rows, features = _load_npz(args.data)[0].shape if args.data else (args.rows, args.features)
    return [
        "--rows",
        str(rows),
        "--features",
        str(features),
        "--seconds",
        str(args.seconds),
        "--warmup",
        str(args.warmup),
    ]


def _with_baseline(ours: dict[str, Any], args: argparse.Namespace, extra: list[str]) -> dict[str, Any]:
    if args.skip_baseline:
        return ours
    baseline = run_baseline(args.baseline, ["--arch", args.arch, "--seq-len", str(args.seq_len), *extra])
    ratios = (
        {"samples_per_s": ours["samples_per_s"] / baseline["samples_per_s"]}
        if "samples_per_s" in ours
        else {}
    )
    if "seconds_to_target" in ours and baseline["reached"] and ours["reached"]:
        ratios["seconds_to_target"] = ours["seconds_to_target"] / baseline["seconds_to_target"]
    return {**ours, "baseline": baseline, "ratios": ratios}


def run_baseline(script: Path, arguments: list[str]) -> dict[str, Any]:
    """Run baseline_recipe.py in a subprocess and return its JSON line.

    It starts through a shell that forks it: Linux carries a process's peak RSS across exec, so a child
    exec'd straight from this (large) process would report this process's peak as its own.
    """
    _check_baseline(script)
    command = [sys.executable, str(script), *arguments, "--json"]
    done = subprocess.run(
        ["/bin/sh", "-c", '"$@"; exit $?', "sh", *command], capture_output=True, text=True, check=True
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def _check_baseline(script: Path) -> None:
    """Refuse before measuring anything when the baseline recipe (outside this repository) is absent."""
    if not Path(script).is_file():
        raise BenchmarkRefused(
            f"baseline recipe {Path(script).resolve()} not found: pass --baseline PATH or --skip-baseline"
        )
