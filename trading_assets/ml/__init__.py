"""Training core (pure PyTorch / scikit-learn): per-symbol direction models and their checked artifacts."""

from trading_assets.ml.artifacts import ModelArtifactError
from trading_assets.ml.config import MODEL_TYPES, TrainConfig
from trading_assets.ml.fit import EpochProgress, thread_budget
from trading_assets.ml.inference import LoadedModel, load_model
from trading_assets.ml.train import TrainResult, train_features, train_model, train_symbol

__all__ = [
    "MODEL_TYPES",
    "EpochProgress",
    "LoadedModel",
    "ModelArtifactError",
    "TrainConfig",
    "TrainResult",
    "load_model",
    "thread_budget",
    "train_features",
    "train_model",
    "train_symbol",
]
