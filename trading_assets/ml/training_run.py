"""What one run of a `<type>_model` asset trains with; `bench retrain` calls the same function, so the benchmark
measures the assets' own defaults."""

from __future__ import annotations

from typing import Any

from trading_assets.ml.config import TrainConfig
from trading_assets.ml.model_types import CATALOGUE

#: Trainings that may run at once (per run, and the executor's tag limit); each uses cores / TRAINING_SLOTS
#: torch threads.
TRAINING_SLOTS = 2


def run_train_config(model_type: str, *, warm_start: bool = False, **fields: Any) -> TrainConfig:
    """`fields` (TrainConfig's names, e.g. the run config's epochs as `max_epochs`) over TrainConfig's defaults,
    sharing the machine with `TRAINING_SLOTS` trainings, and `model_type`'s recipe over that."""
    shared = TrainConfig(**fields, concurrent_trainings=TRAINING_SLOTS, warm_start=warm_start)
    return CATALOGUE[model_type].train_config(shared)
