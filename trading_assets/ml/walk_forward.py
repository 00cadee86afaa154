"""Walk-forward evidence: the test part cut into K consecutive folds, each scored by a model trained only on
data before it.

The model that serves is trained as always (train part, validation part for early stopping and the
temperature) and scores fold 1, which starts right after its validation part. Before each later fold, the
previous fold's model is refitted on everything before that fold (a warm fine-tune of a torch model: the
newer folds' windows plus a replay of the training part, at most as many epochs as the cold training ran; the
logistic model refits cold, it is cheap), its temperature fitted on the validation part again. Every fold's
training windows end `purge` = seq_len + horizon rows before the fold's first window, so no window or label
of a fold was seen by the model that scores it (nothing after a fold ever trains its model, so no embargo
is needed on the far side). The gates judge the pooled predictions of all K folds; the manifest keeps each
fold's figures.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

from trading_assets.ml import metrics
from trading_assets.ml.config import TrainConfig
from trading_assets.ml.data import Samples, Splits, calibration_windows
from trading_assets.ml.model_types import CATALOGUE

if TYPE_CHECKING:  # torch's modules: imported where a model trains, not with the code location
    from trading_assets.ml.fit import Fitted, ProgressCallback


@dataclass(frozen=True)
class FoldPredictions:
    """One fold: its samples and the calibrated logits of the model trained before it."""

    index: int  # 1..K
    samples: Samples
    calibrated_logits: np.ndarray
    raw_logits: np.ndarray
    temperature: float
    refit: str  # "serving model" | "warm refit" | "cold refit"
    trained_samples: int
    seconds: float = 0.0  # the refit and its scoring (0 for the serving model's fold: trained anyway)


def fold_parts(test: Samples, folds: int) -> list[Samples]:
    """The test part cut into `folds` consecutive parts of about equal size."""
    if folds < 1 or len(test.ends) < folds:
        raise ValueError(f"{len(test.ends)} test samples cannot be cut into {folds} walk-forward folds")
    cuts = np.linspace(0, len(test.ends), folds + 1).round().astype(np.int64)
    return [Samples(test.ends[a:b], test.labels[a:b]) for a, b in zip(cuts[:-1], cuts[1:], strict=True)]


def fold_recipe(config: TrainConfig) -> TrainConfig:
    """How a torch fold model is refitted: the warm recipe, never more epochs than the cold training ran."""
    return replace(config.warm(), max_epochs=min(config.warm_epochs, config.max_epochs))


def training_before(splits: Splits, fold: Samples, purge: int) -> Samples:
    """The training part plus the earlier test samples whose windows and labels end `purge` rows before the
    fold's first window."""
    newer = splits.test.ends < fold.ends[0] - purge
    return Samples(
        np.concatenate([splits.train.ends, splits.test.ends[newer]]),
        np.concatenate([splits.train.labels, splits.test.labels[newer]]),
    )


def walk_forward(
    model_type: str,
    scaled: np.ndarray,
    splits: Splits,
    config: TrainConfig,
    folds: int,
    serving: Fitted,
    serving_temperature: float,
    progress: ProgressCallback | None = None,
) -> list[FoldPredictions]:
    """The K folds' out-of-sample predictions (see the module docstring); `serving` scored the whole test part."""
    parts = fold_parts(splits.test, folds)
    first = parts[0]
    logits = serving.test_logits[: len(first.ends)]
    predictions = [
        FoldPredictions(
            1,
            first,
            logits / serving_temperature,
            logits,
            serving_temperature,
            "serving model",
            len(splits.train.ends),
        )
    ]
    weights = serving.weights
    warm = CATALOGUE[model_type].build is not None
    recipe = fold_recipe(config) if warm else config
    purge = config.seq_len + config.horizon
    for index, part in enumerate(parts[1:], start=2):
        started = time.perf_counter()
        train = training_before(splits, part, purge)
        fitted = CATALOGUE[model_type].fit(
            scaled,
            Splits(train, splits.val, part),
            recipe,
            progress,
            weights if warm else None,
            len(splits.train.ends) if warm else 0,
        )
        temperature = metrics.fit_temperature(
            fitted.val_logits, calibration_windows(splits.val, recipe).labels
        )
        predictions.append(
            FoldPredictions(
                index,
                part,
                fitted.test_logits / temperature,
                fitted.test_logits,
                temperature,
                "warm refit" if warm else "cold refit",
                len(train.ends),
                time.perf_counter() - started,
            )
        )
        weights = fitted.weights
    return predictions
