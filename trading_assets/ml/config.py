"""The one hyperparameter dataclass of the training core.

The fields a run may set (`RUN_OPTIONS`: the model assets' run config, the `train` command, the TA_TRAIN_*
settings) declare their help and bounds here, with their default (`_option`); everything that offers them
renders them from this declaration, and `TrainConfig` checks the bounds.
"""

from __future__ import annotations

import typing
from dataclasses import Field, asdict, dataclass, field, fields, replace
from typing import Any

WINDOW_SAMPLINGS = ("random", "even")


def _option(default: Any, help_text: str, **bounds: float) -> Any:
    """A field a run may set: its default, its help and its bounds (`ge`/`le`), declared once."""
    return field(default=default, metadata={"help": help_text, "bounds": bounds})


@dataclass(frozen=True)
class TrainConfig:
    """Hyperparameters of one training; stored in the artifact's manifest.

    `samples_per_epoch` caps the training windows drawn (without replacement, fresh each epoch); None uses
    every window. The learning rate follows a one-cycle schedule peaking at `learning_rate`.
    `train_seq_len` (None: seq_len) trains on the last steps of each window only, cutting the cost per
    sample; validation, test and inference always see seq_len steps, and the model function is unchanged.
    `evals_per_epoch` validates that many times per epoch; `patience` counts validations without a new best.
    `val_max_samples` (None: all) caps the validation windows those validations score, evenly spread over
    the validation part. `calibration_max_samples` (None: all) likewise caps the validation windows the
    temperature is fitted on (one parameter: 20,000 windows fix it as well as 157,000 do at two years, and
    cost an eighth of the scoring). The gates always judge the whole test part.
    `window_sampling`: "random" draws an epoch's windows uniformly; "even" draws one window from each of
    `samples_per_epoch` equal stretches of the training history, so every epoch covers all of it.
    `warm_start` asks for a warm retrain (see `TrainSpec.parent`): the parent's weights and scaler are
    the start, and it trains `warm_epochs` x `warm_samples_per_epoch` windows at `warm_learning_rate`, each
    epoch drawing `replay_fraction` of them from training windows the parent trained on, the rest newer.
    """

    seq_len: int = _option(60, "minutes of features per window", ge=1)
    train_seq_len: int | None = None
    #: minutes ahead the label looks; 5: a 1-minute direction whose drift pays its costs cannot exist on a
    #: market without serial correlation (market/venues.py), a 5-minute one can (docs/data.md, "The demo market")
    horizon: int = _option(5, "minutes ahead the label looks", ge=1)
    dead_band: float = 0.0  # drop samples whose |close return over the horizon| is at most this
    train_fraction: float = 0.70
    val_fraction: float = 0.15
    batch_size: int = _option(64, "training windows per step", ge=1)
    max_epochs: int = _option(15, "maximum training epochs (early stopping may end sooner)", ge=1)
    patience: int = 5
    samples_per_epoch: int | None = _option(200_000, "training windows sampled per epoch", ge=1)
    learning_rate: float = 3e-3
    evals_per_epoch: int = 1
    val_max_samples: int | None = 20_000
    calibration_max_samples: int | None = 20_000
    window_sampling: str = "random"  # "random" | "even"
    warm_start: bool = False
    warm_epochs: int = 3
    warm_samples_per_epoch: int = 20_000
    warm_learning_rate: float = 3e-4
    replay_fraction: float = 0.5
    weight_decay: float = 0.0
    seed: int = _option(0, "random seed (sampling, initialisation)", ge=0)
    bidirectional: bool = True
    hidden: int = 64
    dropout: float = 0.2
    d_model: int = 64
    heads: int = 4
    layers: int = 2
    patch: int = 10  # Transformer: consecutive minutes per token (seq_len / patch positions)
    logistic_c: float = 1.0
    logistic_max_samples: int = 100_000
    eval_batch_size: int = 256  # scoring: faster than 2,048 on CPU and ~0.5 GB less peak memory (LSTM)
    calibration_bins: int = 15
    concurrent_trainings: int = _option(
        1, "trainings sharing this machine's cores (each gets cores / N torch threads)", ge=1
    )
    device: str = "auto"  # "auto" picks CUDA when available

    def __post_init__(self) -> None:
        for option in fields(self):
            problem = out_of_bounds(option, getattr(self, option.name))
            if problem:
                raise ValueError(f"{option.name}={getattr(self, option.name)!r} {problem}")
        if self.window_sampling not in WINDOW_SAMPLINGS:
            raise ValueError(
                f"window_sampling must be one of {WINDOW_SAMPLINGS}, not {self.window_sampling!r}"
            )
        if self.evals_per_epoch < 1 or not 0.0 <= self.replay_fraction < 1.0:
            raise ValueError(
                f"evals_per_epoch must be >= 1 ({self.evals_per_epoch}), replay_fraction in [0, 1) "
                f"({self.replay_fraction})"
            )

    def warm(self) -> TrainConfig:
        """The recipe a warm start runs (`warm_start` on, the warm epochs, samples and learning rate)."""
        return replace(
            self,
            warm_start=True,
            max_epochs=self.warm_epochs,
            samples_per_epoch=self.warm_samples_per_epoch,
            learning_rate=self.warm_learning_rate,
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        """The config a manifest recorded; a field it lacks (added later) takes the value it trained with."""
        kept = {name: value for name, value in values.items() if name not in FIELDS_REMOVED}
        return cls(**{**FIELDS_ADDED_LATER, **kept})


#: Fields added after artifacts were written, with the value those artifacts were trained with.
FIELDS_ADDED_LATER: dict[str, Any] = {"patch": 1, "val_max_samples": None, "calibration_max_samples": None}
#: Fields older artifacts recorded that training no longer reads (costs moved to `ml.policy.CostPolicy`).
FIELDS_REMOVED = frozenset({"fee_bps", "slippage_bps"})


#: The run options (their names in the run config and on the command line) and the fields they set.
RUN_OPTIONS: dict[str, str] = {
    "epochs": "max_epochs",
    "samples_per_epoch": "samples_per_epoch",
    "batch_size": "batch_size",
    "seq_len": "seq_len",
    "horizon": "horizon",
    "seed": "seed",
}


def run_option(name: str) -> tuple[Any, Any, str, dict[str, float]]:
    """(type, default, help, bounds) of the TrainConfig field `name`, as declared."""
    declared = {option.name: option for option in fields(TrainConfig)}[name]
    kind = typing.get_type_hints(TrainConfig)[name]
    return kind, declared.default, declared.metadata["help"], dict(declared.metadata["bounds"])


def out_of_bounds(option: Field, value: Any) -> str | None:
    """`must be >= 1` when `value` lies outside the field's declared bounds (None passes: "all")."""
    bounds = option.metadata.get("bounds", {})
    if value is None:
        return None
    if "ge" in bounds and not value >= bounds["ge"]:
        return f"must be >= {bounds['ge']}"
    if "le" in bounds and not value <= bounds["le"]:
        return f"must be <= {bounds['le']}"
    return None
