"""The one hyperparameter dataclass of the training core."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class TrainConfig:
    """Hyperparameters of one training; stored in the artifact's manifest.

    `samples_per_epoch` caps the training windows drawn (without replacement, fresh each epoch); None uses
    every window. The learning rate follows a one-cycle schedule peaking at `learning_rate`.
    `train_seq_len` (None: seq_len) trains on the last steps of each window only, cutting the cost per
    sample; validation, test and inference always see seq_len steps, and the model function is unchanged.
    """

    seq_len: int = 60
    train_seq_len: int | None = None
    horizon: int = 1
    dead_band: float = 0.0  # drop samples whose |close return over the horizon| is at most this
    train_fraction: float = 0.70
    val_fraction: float = 0.15
    batch_size: int = 64
    max_epochs: int = 15
    patience: int = 5
    samples_per_epoch: int | None = 200_000
    learning_rate: float = 3e-3
    weight_decay: float = 0.0
    seed: int = 0
    bidirectional: bool = True
    hidden: int = 64
    dropout: float = 0.2
    d_model: int = 64
    heads: int = 4
    layers: int = 2
    logistic_c: float = 1.0
    logistic_max_samples: int = 100_000
    eval_batch_size: int = 2048
    calibration_bins: int = 15
    fee_bps: float = 5.0  # backtest: exchange fee per unit of position change
    slippage_bps: float = 1.0  # backtest: price impact per unit of position change, on top of the fee
    concurrent_trainings: int | None = None  # None: TA_CONCURRENT_TRAININGS, else 1
    device: str = "auto"  # "auto" picks CUDA when available

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
