"""Samples as window end indices into one contiguous float32 array; windows are gathered per batch only.

A sample is the row `end`: its window is rows `end - seq_len + 1 .. end`, its label is whether the close
rises over the next `horizon` rows. Only arrays of end indices are ever held, never all windows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

    from trading_assets.ml.config import TrainConfig


@dataclass(frozen=True)
class Samples:
    ends: np.ndarray  # int64 row index of each window's last row, ascending
    labels: np.ndarray  # float32 0/1


@dataclass(frozen=True)
class Splits:
    train: Samples
    val: Samples
    test: Samples


@dataclass(frozen=True)
class Scaler:
    mean: np.ndarray
    std: np.ndarray

    def transform(self, x: np.ndarray, in_place: bool = False) -> np.ndarray:
        """Standardised float32 rows (a copy, or float32 `x` itself when `in_place`); non-finite values
        (warm-up rows) become 0. No temporaries: at two years each would be another ~130 MB."""
        out = np.subtract(x, self.mean, dtype=np.float32, out=x if in_place else None)
        out /= self.std
        return np.nan_to_num(out, copy=False, nan=0.0, posinf=0.0, neginf=0.0)

    def to_dict(self, feature_names: list[str]) -> dict[str, dict[str, float]]:
        return {
            name: {"mean": float(m), "std": float(s)}
            for name, m, s in zip(feature_names, self.mean, self.std, strict=True)
        }

    @classmethod
    def from_dict(cls, values: dict[str, dict[str, float]], feature_names: list[str]) -> Scaler:
        mean = np.array([values[name]["mean"] for name in feature_names], dtype=np.float32)
        std = np.array([values[name]["std"] for name in feature_names], dtype=np.float32)
        return cls(mean, std)


def make_samples(
    close: np.ndarray, usable: np.ndarray, seq_len: int, horizon: int, dead_band: float
) -> Samples:
    """Ends whose window and label are usable; moves with |return| <= dead_band are dropped when dead_band > 0.

    `usable[i]` says the window ending at row i spans no long gap and no warm-up; requiring it at
    `end + horizon` too keeps the label's span free of gaps.
    """
    ends = np.arange(seq_len - 1, len(close) - horizon, dtype=np.int64)
    ends = ends[usable[ends] & usable[ends + horizon]]
    change = close[ends + horizon] / close[ends] - 1.0
    if dead_band > 0:
        keep = np.abs(change) > dead_band
        ends, change = ends[keep], change[keep]
    return Samples(ends, (change > 0).astype(np.float32))


def chronological_splits(samples: Samples, train_fraction: float, val_fraction: float, purge: int) -> Splits:
    """70/15/15 by sample count; a part's first samples within `purge` rows of the previous part's last
    sample are dropped, so no window or label overlaps across parts."""
    n = len(samples.ends)
    cut1, cut2 = int(n * train_fraction), int(n * (train_fraction + val_fraction))
    if cut1 < 1 or cut2 <= cut1 or cut2 >= n:
        raise ValueError(f"{n} samples are too few to split into train/validation/test")
    parts = []
    for start, stop in ((0, cut1), (cut1, cut2), (cut2, n)):
        ends, labels = samples.ends[start:stop], samples.labels[start:stop]
        if start > 0:
            keep = ends >= samples.ends[start - 1] + purge
            ends, labels = ends[keep], labels[keep]
        if len(ends) == 0:
            raise ValueError("a split is empty after purging; more data or a shorter seq_len is needed")
        parts.append(Samples(ends, labels))
    return Splits(*parts)


def evenly_spread(samples: Samples, limit: int | None) -> Samples:
    """At most `limit` of the samples (None: all), evenly spaced over them, in order."""
    if limit is None or len(samples.ends) <= limit:
        return samples
    pick = np.unique(np.linspace(0, len(samples.ends) - 1, limit).round().astype(np.int64))
    return Samples(samples.ends[pick], samples.labels[pick])


def calibration_windows(val: Samples, config: TrainConfig) -> Samples:
    """The validation windows the temperature is fitted on (`calibration_max_samples`, evenly spread)."""
    return evenly_spread(val, config.calibration_max_samples)


def fit_scaler(x: np.ndarray, train: Samples, seq_len: int, chunk_rows: int = 65_536) -> Scaler:
    """Mean and std per feature over the rows the training windows cover (finite values only).

    Summed in float64 over chunks of `chunk_rows` rows, so the extra memory is a chunk's, not a float64
    copy of two years of rows (that copy and its temporaries peaked at ~0.7 GB).
    """
    rows = x[max(0, int(train.ends[0]) - seq_len + 1) : int(train.ends[-1]) + 1]
    chunks = range(0, len(rows), chunk_rows)
    count, total = np.zeros(rows.shape[1]), np.zeros(rows.shape[1])
    for start in chunks:
        chunk = rows[start : start + chunk_rows].astype(np.float64)
        finite = np.isfinite(chunk)
        count += finite.sum(axis=0)
        total += np.where(finite, chunk, 0.0).sum(axis=0)
    count = np.maximum(count, 1)
    mean = total / count
    squares = np.zeros(rows.shape[1])
    for start in chunks:
        chunk = rows[start : start + chunk_rows].astype(np.float64)
        squares += np.where(np.isfinite(chunk), (chunk - mean) ** 2, 0.0).sum(axis=0)
    std = np.sqrt(squares / count)
    std = np.where(std > 1e-12, std, 1.0)
    return Scaler(mean.astype(np.float32), std.astype(np.float32))


def gather_windows(x: torch.Tensor, ends: torch.Tensor, seq_len: int) -> torch.Tensor:
    """(len(ends), seq_len, features) copy of the windows ending at `ends` of the (rows, features) tensor."""
    import torch  # the torch models' helper; the rest of this module is numpy

    offsets = torch.arange(1 - seq_len, 1, device=ends.device)
    return x[ends[:, None] + offsets]


def windows_of_rows(x: np.ndarray, seq_len: int) -> np.ndarray:
    """Read-only view (rows - seq_len + 1, seq_len, features) of every window of a contiguous array."""
    x = np.ascontiguousarray(x)
    return np.lib.stride_tricks.sliding_window_view(x, seq_len, axis=0).transpose(0, 2, 1)
