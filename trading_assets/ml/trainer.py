"""Torch training loop: Adam + one-cycle LR, BCE from logits, early stopping, seeded, thread budget."""

from __future__ import annotations

import copy
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from trading_assets.ml.config import TrainConfig
from trading_assets.ml.data import Samples, Splits, gather_windows
from trading_assets.ml.models import TorchBuilder, parameter_count
from trading_assets.settings import load_settings

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class EpochProgress:
    epoch: int
    max_epochs: int
    loss: float
    val_loss: float
    val_accuracy: float
    samples_per_s: float
    eta_s: float


@dataclass(frozen=True)
class FitOutcome:
    learning_curve: list[dict[str, float]]
    epochs_run: int
    best_epoch: int
    train_seconds: float
    samples_per_s: float


@dataclass(frozen=True)
class Fitted:
    """What a model type's fit hands to training: weights to store, logits on the validation and test parts."""

    weights: dict[str, Any]
    is_torch: bool  # weights are a torch state_dict (weights.pt), else plain arrays (weights.npz)
    architecture: dict[str, Any]  # {"summary": ..., "parameter_count": ...}
    val_logits: np.ndarray
    test_logits: np.ndarray
    outcome: FitOutcome


ProgressCallback = Callable[[EpochProgress], None]


def thread_budget(concurrent_trainings: int | None = None) -> int:
    """Torch threads for one of N trainings sharing this process's cores: about cores / N, at least 1.

    N defaults to the setting `concurrent_trainings` (TA_CONCURRENT_TRAININGS, default 1).
    """
    if concurrent_trainings is None:
        concurrent_trainings = load_settings().concurrent_trainings
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, cores // max(1, concurrent_trainings))


def pick_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def fit_torch_model(
    build: TorchBuilder, x: np.ndarray, splits: Splits, config: TrainConfig, progress: ProgressCallback | None
) -> Fitted:
    """The fit of every torch model type: build the network (seeded), train it, score validation and test."""
    torch.set_num_threads(thread_budget(config.concurrent_trainings))
    torch.manual_seed(config.seed)
    device = pick_device(config.device)
    model = build(x.shape[1], config).to(device)
    xt = torch.from_numpy(x).to(device)
    outcome = fit_torch(model, xt, splits.train, splits.val, config, progress)
    val_logits, test_logits = (
        predict_logits(model, xt, part.ends, config.seq_len, config.eval_batch_size)
        for part in (splits.val, splits.test)
    )
    architecture = {"summary": str(model), "parameter_count": parameter_count(model)}
    return Fitted(model.cpu().state_dict(), True, architecture, val_logits, test_logits, outcome)


def train_step(
    model: nn.Module, optimizer: torch.optim.Optimizer, xb: torch.Tensor, yb: torch.Tensor
) -> torch.Tensor:
    """One optimisation step; returns the (detached) batch loss."""
    optimizer.zero_grad(set_to_none=True)
    loss = nn.functional.binary_cross_entropy_with_logits(model(xb), yb)
    loss.backward()
    optimizer.step()
    return loss.detach()


@torch.no_grad()
def predict_logits(
    model: nn.Module, x: torch.Tensor, ends: np.ndarray, seq_len: int, batch_size: int
) -> np.ndarray:
    """Eval-mode logits of the windows ending at `ends`, batch by batch."""
    model.eval()
    ends_t = torch.from_numpy(ends).to(x.device)
    out = [
        model(gather_windows(x, ends_t[i : i + batch_size], seq_len)) for i in range(0, len(ends), batch_size)
    ]
    return torch.cat(out).float().cpu().numpy()


def _per_epoch(count: int, config: TrainConfig) -> int:
    return count if config.samples_per_epoch is None else min(count, config.samples_per_epoch)


def fit_torch(
    model: nn.Module,
    x: torch.Tensor,
    train: Samples,
    val: Samples,
    config: TrainConfig,
    progress: ProgressCallback | None = None,
) -> FitOutcome:
    """Train in place and restore the weights of the epoch with the lowest validation loss."""
    generator = torch.Generator().manual_seed(config.seed)
    ends = torch.from_numpy(train.ends).to(x.device)
    labels = torch.from_numpy(train.labels).to(x.device)
    per_epoch = _per_epoch(len(ends), config)
    steps_per_epoch = -(-per_epoch // config.batch_size)
    optimizer = torch.optim.Adam(
        model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
    )
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, config.learning_rate, total_steps=steps_per_epoch * config.max_epochs
    )
    train_len = config.train_seq_len or config.seq_len
    curve: list[dict[str, float]] = []
    best = (float("inf"), 0, copy.deepcopy(model.state_dict()))
    train_seconds, seen = 0.0, 0
    for epoch in range(1, config.max_epochs + 1):
        started = time.perf_counter()
        model.train()
        order = torch.randperm(len(ends), generator=generator)[:per_epoch].to(x.device)
        losses = torch.zeros((), device=x.device)
        for batch in order.split(config.batch_size):
            losses += train_step(model, optimizer, gather_windows(x, ends[batch], train_len), labels[batch])
            schedule.step()
        if x.device.type == "cuda":
            torch.cuda.synchronize(x.device)  # queued GPU work belongs to this epoch's time
        train_seconds += time.perf_counter() - started
        seen += len(order)
        entry = _evaluate(model, x, val, config, epoch, float(losses) / steps_per_epoch)
        curve.append(entry)
        if entry["val_loss"] < best[0]:
            best = (entry["val_loss"], epoch, copy.deepcopy(model.state_dict()))
        _report(progress, entry, config, seen / train_seconds, train_seconds / epoch)
        if epoch - best[1] >= config.patience:
            break
    model.load_state_dict(best[2])
    return FitOutcome(curve, len(curve), best[1], train_seconds, seen / max(train_seconds, 1e-9))


def _evaluate(
    model: nn.Module, x: torch.Tensor, val: Samples, config: TrainConfig, epoch: int, loss: float
) -> dict[str, float]:
    logits = predict_logits(model, x, val.ends, config.seq_len, config.eval_batch_size)
    z = torch.from_numpy(logits).double()
    val_loss = float(nn.functional.binary_cross_entropy_with_logits(z, torch.from_numpy(val.labels).double()))
    accuracy = float(np.mean((logits > 0) == (val.labels > 0.5)))
    return {"epoch": epoch, "loss": loss, "val_loss": val_loss, "val_accuracy": accuracy}


def _report(
    progress: ProgressCallback | None,
    entry: dict[str, float],
    config: TrainConfig,
    rate: float,
    epoch_s: float,
) -> None:
    epoch = int(entry["epoch"])
    update = EpochProgress(
        epoch, config.max_epochs, entry["loss"], entry["val_loss"], entry["val_accuracy"], rate,
        epoch_s * (config.max_epochs - epoch),
    )  # fmt: skip
    logger.info(
        "epoch %d/%d loss %.4f val_loss %.4f val_acc %.3f %.0f samples/s ETA %.0f s",
        update.epoch, update.max_epochs, update.loss, update.val_loss, update.val_accuracy,
        update.samples_per_s, update.eta_s,
    )  # fmt: skip
    if progress is not None:
        progress(update)
