"""Torch training loop: Adam + one-cycle LR, BCE from logits, early stopping, seeded, thread budget."""

from __future__ import annotations

import copy
import json
import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from trading_assets.ml.config import TrainConfig
from trading_assets.ml.data import Samples, Splits, calibration_windows, evenly_spread, gather_windows
from trading_assets.ml.models import TorchBuilder, logits_in_batches, parameter_count

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class EpochProgress:
    """One epoch's progress; `log_line` is how a run logs it and `from_log_line` reads it back (the demo's
    live display)."""

    epoch: int
    max_epochs: int
    loss: float
    val_loss: float
    val_accuracy: float
    samples_per_s: float
    eta_s: float

    def log_line(self, model_type: str, symbol: str) -> str:
        """`lstm BTC-USD: epoch 3/15, loss 0.6712, val loss 0.6790, val acc 0.571, 2,950 windows/s, eta 41 s
        {json}`: readable, with the exact figures as JSON at the end."""
        return (
            f"{model_type} {symbol}: epoch {self.epoch}/{self.max_epochs}, loss {self.loss:.4f}, val loss "
            f"{self.val_loss:.4f}, val acc {self.val_accuracy:.3f}, {self.samples_per_s:,.0f} windows/s, eta "
            f"{self.eta_s:.0f} s {json.dumps(asdict(self))}"
        )

    @classmethod
    def from_log_line(cls, message: str) -> tuple[str, EpochProgress] | None:
        """(model type, progress) from a line `log_line` wrote; None for any other line."""
        head, brace, rest = (message or "").partition(" {")
        if not brace or ": epoch " not in head:
            return None
        try:
            return head.split(" ", 1)[0], cls(**json.loads("{" + rest))
        except (ValueError, TypeError):
            return None


@dataclass(frozen=True)
class FitOutcome:
    learning_curve: list[dict[str, float]]
    epochs_run: int
    best_epoch: int
    train_seconds: float
    samples_per_s: float
    windows_seen: int = 0


@dataclass(frozen=True)
class Fitted:
    """What a model type's fit hands to training: weights to store, logits of the calibration windows
    (`calibration_windows` of the validation part) and of the whole test part."""

    weights: dict[str, Any]
    is_torch: bool  # weights are a torch state_dict (weights.pt), else plain arrays (weights.npz)
    architecture: dict[str, Any]  # {"summary": ..., "parameter_count": ...}
    val_logits: np.ndarray
    test_logits: np.ndarray
    outcome: FitOutcome


ProgressCallback = Callable[[EpochProgress], None]


def thread_budget(concurrent_trainings: int) -> int:
    """Torch threads for one of N trainings sharing this process's cores: about cores / N, at least 1."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, cores // max(1, concurrent_trainings))


def pick_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def fit_torch_model(
    build: TorchBuilder,
    x: np.ndarray,
    splits: Splits,
    config: TrainConfig,
    progress: ProgressCallback | None,
    initial: dict[str, Any] | None = None,
    replayed: int = 0,
) -> Fitted:
    """The fit of every torch model type: build the network (seeded; from `initial` weights for a warm start,
    whose first `replayed` training samples are the replayed old data), train it, score validation and test."""
    torch.set_num_threads(thread_budget(config.concurrent_trainings))
    torch.manual_seed(config.seed)
    device = pick_device(config.device)
    model = build(x.shape[1], config)
    if initial is not None:
        model.load_state_dict(initial)
    model = model.to(device)
    xt = torch.from_numpy(x).to(device)
    outcome = train_epochs(model, xt, splits.train, splits.val, config, progress, replayed)
    val_logits, test_logits = (
        predict_logits(model, xt, part.ends, config.seq_len, config.eval_batch_size)
        for part in (calibration_windows(splits.val, config), splits.test)
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


def predict_logits(
    model: nn.Module, x: torch.Tensor, ends: np.ndarray, seq_len: int, batch_size: int
) -> np.ndarray:
    """Eval-mode logits of the windows ending at `ends`, batch by batch."""
    ends_t = torch.from_numpy(ends).to(x.device)
    return logits_in_batches(
        model,
        len(ends),
        batch_size,
        lambda start, stop: gather_windows(x, ends_t[start:stop], seq_len),
        x.device,
    )


def _per_epoch(count: int, config: TrainConfig) -> int:
    return count if config.samples_per_epoch is None else min(count, config.samples_per_epoch)


def draw_windows(count: int, draws: int, sampling: str, generator: torch.Generator) -> torch.Tensor:
    """`draws` distinct indices into range(count) in random order: uniformly ("random"), or one from each
    of `draws` equal stretches of the range ("even"), so a partial epoch still covers the whole history."""
    if sampling == "random":
        return torch.randperm(count, generator=generator)[:draws]
    edges = torch.linspace(0.0, float(count), draws + 1, dtype=torch.float64)
    picks = edges[:-1] + torch.rand(draws, generator=generator, dtype=torch.float64) * edges.diff()
    picks = picks.long().clamp_(max=count - 1)
    return picks[torch.randperm(draws, generator=generator)]


def epoch_windows(
    count: int, per_epoch: int, config: TrainConfig, generator: torch.Generator, replayed: int = 0
) -> torch.Tensor:
    """Indices of one epoch's training windows. With `replayed` > 0 (a warm start: the first `replayed`
    windows are those the parent trained on), `replay_fraction` of them come from those, the rest from the
    newer windows."""
    newer = count - replayed
    if replayed == 0 or newer == 0:
        return draw_windows(count, per_epoch, config.window_sampling, generator)
    from_replay = min(replayed, round(per_epoch * config.replay_fraction))
    from_newer = min(newer, per_epoch - from_replay)
    drawn = torch.cat(
        [
            draw_windows(replayed, from_replay, config.window_sampling, generator),
            replayed + draw_windows(newer, from_newer, config.window_sampling, generator),
        ]
    )
    return drawn[torch.randperm(len(drawn), generator=generator)]


def train_epochs(
    model: nn.Module,
    x: torch.Tensor,
    train: Samples,
    val: Samples,
    config: TrainConfig,
    progress: ProgressCallback | None = None,
    replayed: int = 0,
) -> FitOutcome:
    """Train in place and restore the weights of the validation with the lowest loss.

    Validates `evals_per_epoch` times per epoch (on at most `val_max_samples` validation windows) and stops
    after `patience` validations without a new best.
    A warm start (`config.warm_start`) validates the starting weights first: they stay if nothing beats them.
    `replayed`: the first that many training samples are the parent's (see `epoch_windows`).
    """
    generator = torch.Generator().manual_seed(config.seed)
    run = _TrainingRun.start(model, x, train, evenly_spread(val, config.val_max_samples), config, progress)
    epoch = 0
    while epoch < config.max_epochs and run.since_best < config.patience:
        epoch += 1
        model.train()
        order = epoch_windows(len(run.ends), run.per_epoch, config, generator, replayed).to(x.device)
        run.epoch(epoch, order.split(config.batch_size))
    model.load_state_dict(run.best_weights)
    rate = run.seen / max(run.train_seconds, 1e-9)
    return FitOutcome(run.curve, epoch, math.ceil(run.best_at), run.train_seconds, rate, run.seen)


@dataclass
class _TrainingRun:
    """One `train_epochs` run: the model and its data, optimiser and schedule, and what it has learnt so far
    (the learning curve, the best validation and its weights, time and windows spent)."""

    model: nn.Module
    x: torch.Tensor
    ends: torch.Tensor
    labels: torch.Tensor
    val: Samples
    config: TrainConfig
    progress: ProgressCallback | None
    optimizer: torch.optim.Optimizer
    schedule: torch.optim.lr_scheduler.LRScheduler
    per_epoch: int
    best_weights: dict[str, Any]
    best_loss: float = float("inf")
    best_at: float = 0.0
    curve: list[dict[str, float]] = field(default_factory=list)
    train_seconds: float = 0.0
    seen: int = 0
    since_best: int = 0

    @classmethod
    def start(
        cls,
        model: nn.Module,
        x: torch.Tensor,
        train: Samples,
        val: Samples,
        config: TrainConfig,
        progress: ProgressCallback | None,
    ) -> _TrainingRun:
        """Adam with a one-cycle schedule over every step of `max_epochs`; a warm start's starting weights
        validated first, as the best so far."""
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
        weights = copy.deepcopy(model.state_dict())
        run = cls(model, x, ends, labels, val, config, progress, optimizer, schedule, per_epoch, weights)
        if config.warm_start:
            run.curve.append(_evaluate(model, x, val, config, 0, float("nan")))
            run.best_loss = run.curve[0]["val_loss"]
        return run

    def epoch(self, epoch: int, batches: tuple[torch.Tensor, ...]) -> None:
        """Train on `batches`, validating `evals_per_epoch` times on the way; stop early after `patience`
        validations without a new best."""
        evals = self.config.evals_per_epoch
        for part, (first, stop) in enumerate(_evaluation_points(len(batches), evals), start=1):
            loss = self._train_batches(batches[first:stop])
            at = epoch if evals == 1 else round(epoch - 1 + part / evals, 4)
            entry = _evaluate(self.model, self.x, self.val, self.config, at, loss)
            self._record(entry, at)
            rate = self.seen / max(self.train_seconds, 1e-9)
            _report(self.progress, entry, self.config, rate, self.train_seconds / (epoch - 1 + part / evals))
            if self.since_best >= self.config.patience:
                break

    def _train_batches(self, batches: tuple[torch.Tensor, ...]) -> float:
        """One optimisation step per batch of window indices; their mean loss. Counts the time and windows."""
        started = time.perf_counter()
        self.model.train()
        losses = torch.zeros((), device=self.x.device)
        train_len = self.config.train_seq_len or self.config.seq_len
        for batch in batches:
            windows = gather_windows(self.x, self.ends[batch], train_len)
            losses += train_step(self.model, self.optimizer, windows, self.labels[batch])
            self.schedule.step()
        if self.x.device.type == "cuda":
            torch.cuda.synchronize(self.x.device)  # queued GPU work belongs to this part's time
        self.train_seconds += time.perf_counter() - started
        self.seen += sum(len(batch) for batch in batches)
        return float(losses) / max(len(batches), 1)

    def _record(self, entry: dict[str, float], at: float) -> None:
        """Add a validation to the curve; keep the weights when it is a new best."""
        self.curve.append(entry)
        self.since_best += 1
        if entry["val_loss"] < self.best_loss:
            self.best_loss, self.best_at, self.since_best = entry["val_loss"], at, 0
            self.best_weights = copy.deepcopy(self.model.state_dict())


def _evaluation_points(batches: int, evals: int) -> list[tuple[int, int]]:
    """(first, stop) batch ranges of an epoch split into `evals` parts of about equal size."""
    cuts = np.linspace(0, batches, min(evals, batches) + 1).round().astype(int)
    return list(zip(cuts[:-1].tolist(), cuts[1:].tolist(), strict=True))


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
    epoch = math.ceil(entry["epoch"])
    update = EpochProgress(
        epoch,
        config.max_epochs,
        entry["loss"],
        entry["val_loss"],
        entry["val_accuracy"],
        rate,
        epoch_s * (config.max_epochs - epoch),
    )
    logger.info(
        "epoch %d/%d loss %.4f val_loss %.4f val_acc %.3f %.0f samples/s ETA %.0f s",
        update.epoch,
        update.max_epochs,
        update.loss,
        update.val_loss,
        update.val_accuracy,
        update.samples_per_s,
        update.eta_s,
    )
    if progress is not None:
        progress(update)
