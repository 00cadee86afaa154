"""The model-type catalogue: one record per model type, as `features/registry.py` is for features.

A record holds what every layer needs to know about a type: its name (artifact directories, registry
slots, Dagster asset keys `<name>_model` / `promoted_<name>_model`, CLI choices, ensemble weight keys, the
`member` of a recorded signal), a description, its fit (scaled rows + splits -> weights and logits), how its
artifact loads (weights + manifest -> a scorer with `logits(windows)`), its default ensemble weight and its
Dagster kind. Training, loading, the CLI, the Dagster assets, the ensemble, the dry-run and the benchmarks
loop over `CATALOGUE`; none of them names a type. Adding a model type = its module (network or estimator
with a fit and a load function) + one record here.

Names a type had before stay readable through `ALIASES`, the one table mapping a former name to today's:
manifests, registry slots (`models/promoted/<former name>/...`), ensemble files and run config that say
`sklearn` mean `logistic`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from trading_assets.ml.errors import UnknownModelType

if TYPE_CHECKING:
    import numpy as np
    from torch import nn

    from trading_assets.ml.config import TrainConfig
    from trading_assets.ml.data import Splits
    from trading_assets.ml.fit import Fitted, ProgressCallback
    from trading_assets.ml.models import TorchBuilder


class DirectionScorer(Protocol):
    """A loaded model: raw logits that the close rises, for scaled windows (batch, seq_len, features)."""

    def logits(self, windows: np.ndarray) -> np.ndarray: ...


if TYPE_CHECKING:
    #: (scaled rows, chronological splits, config, progress, initial weights of a warm start or None,
    #: replayed old samples) -> the fitted model
    FitFunction = Callable[
        [np.ndarray, Splits, TrainConfig, ProgressCallback | None, dict[str, Any] | None, int], Fitted
    ]
    #: (weights, manifest, training config, feature count, manifest path) -> the scorer; ModelArtifactError
    #: (one line naming the file) when the weights do not fit the manifest
    LoadFunction = Callable[[dict[str, Any], dict[str, Any], TrainConfig, int, Path], DirectionScorer]


@dataclass(frozen=True)
class ModelType:
    """One model type; `fit` and `load` import its module (torch / scikit-learn) when first called."""

    name: str
    description: str
    fit: FitFunction
    load: LoadFunction
    default_weight: float  # in the ensemble, before renormalising over the promoted members
    dagster_kind: str
    build: TorchBuilder | None = None  # the network of a torch type (the training benchmark builds it alone)
    #: the type's own training defaults over TrainConfig's shared ones (measured: bench-results/retrain.md)
    recipe: Mapping[str, Any] = field(default_factory=dict)

    def train_config(self, shared: TrainConfig) -> TrainConfig:
        """The config this type trains with: `shared` (run config, settings) with the type's recipe over it."""
        return replace(shared, **self.recipe)


# The functions below import torch / scikit-learn when a model is built, fitted or loaded, so reading the
# catalogue (the command line's choices) costs no heavy import.


def _fit_torch(build: TorchBuilder, *args: Any) -> Fitted:
    from trading_assets.ml.fit import fit_torch_model

    return fit_torch_model(build, *args)


def _load_torch(build: TorchBuilder, *args: Any) -> DirectionScorer:
    from trading_assets.ml.models import load_torch_model

    return load_torch_model(build, *args)


def _fit_logistic(*args: Any) -> Fitted:
    from trading_assets.ml.logistic import fit_logistic_model

    return fit_logistic_model(*args)


def _load_logistic(*args: Any) -> DirectionScorer:
    from trading_assets.ml.logistic import load_logistic_model

    return load_logistic_model(*args)


def _torch_type(
    name: str,
    description: str,
    build: TorchBuilder,
    default_weight: float,
    recipe: Mapping[str, Any] | None = None,
) -> ModelType:
    return ModelType(
        name=name,
        description=description,
        fit=partial(_fit_torch, build),
        load=partial(_load_torch, build),
        default_weight=default_weight,
        dagster_kind="pytorch",
        build=build,
        recipe=dict(recipe or {}),
    )


def _lstm(features: int, config: TrainConfig) -> nn.Module:
    from trading_assets.ml.models import LSTMDirectionModel

    return LSTMDirectionModel(features, config.hidden, config.bidirectional, config.dropout)


def _transformer(features: int, config: TrainConfig) -> nn.Module:
    from trading_assets.ml.models import TransformerDirectionModel

    return TransformerDirectionModel(
        features, config.d_model, config.heads, config.layers, config.dropout, config.patch
    )


LSTM = _torch_type(
    "lstm",
    "2-layer (bidirectional) LSTM over the window -> last step -> MLP head",
    _lstm,
    default_weight=0.35,
    # trains on the last 20 steps of each 60-step window (validated and served on all 60) at lr 1e-3
    recipe={"train_seq_len": 20, "learning_rate": 1e-3},
)
TRANSFORMER = _torch_type(
    "transformer",
    "Transformer encoder over 10-minute tokens (sinusoidal positions, pre-norm) -> [last token, mean] -> MLP head",
    _transformer,
    default_weight=0.40,
    # lr 1e-3: at 3e-3 a two-year training on the CPU peaked in its first epoch and stopped at the sixth
    # (test log loss 0.4974); at 1e-3 it improves through all 15 epochs (0.4923), bench-results/retrain.md
    recipe={"learning_rate": 1e-3},
)
LOGISTIC = ModelType(
    name="logistic",
    description="logistic regression on the last step, the step before, the mean of the last 5 and the "
    "window mean",
    fit=_fit_logistic,
    load=_load_logistic,
    default_weight=0.25,
    dagster_kind="scikitlearn",
)

CATALOGUE: dict[str, ModelType] = {
    model_type.name: model_type for model_type in (LSTM, TRANSFORMER, LOGISTIC)
}
MODEL_TYPES: tuple[str, ...] = tuple(CATALOGUE)
DEFAULT_WEIGHTS: dict[str, float] = {
    name: model_type.default_weight for name, model_type in CATALOGUE.items()
}
#: former name -> today's name; artifacts, registry slots, ensemble files and run config may hold either
ALIASES: dict[str, str] = {"sklearn": LOGISTIC.name}


def canonical_name(name: str) -> str:
    """Today's name of the model type called `name` now or before; UnknownModelType otherwise."""
    canonical = ALIASES.get(name, name)
    if canonical not in CATALOGUE:
        raise UnknownModelType(f"unknown model type {name!r} (known: {', '.join(MODEL_TYPES)})")
    return canonical


def model_type(name: str) -> ModelType:
    """The catalogue's record of `name` (today's or a former name)."""
    return CATALOGUE[canonical_name(name)]


def canonical_weights(weights: Mapping[str, float]) -> dict[str, float]:
    """Ensemble weights keyed by today's names; refuses an unknown type or one type given under two names."""
    canonical: dict[str, float] = {}
    for name, weight in weights.items():
        key = canonical_name(name)
        if key in canonical:
            raise UnknownModelType(f"weights name the {key} model type twice ({name!r} is a former name)")
        canonical[key] = weight
    return canonical


def stored_path(root: Path, name: str, *parts: str) -> Path:
    """`root/<name>/<parts>`, or `root/<former name>/<parts>` where only that exists (written before the
    type was renamed): a registry slot keeps its history across a rename."""
    current = Path(root, name, *parts)
    if current.exists():
        return current
    former = [Path(root, old, *parts) for old, new in ALIASES.items() if new == name]
    return next((path for path in former if path.exists()), current)
