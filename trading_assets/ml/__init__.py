"""Training core (pure PyTorch / scikit-learn): per-symbol direction models and their checked artifacts.

The model types are catalogued in `model_types.py`. Importing the package is cheap (the command line reads
the catalogue without torch); the names below load their module when first used.
"""

from importlib import import_module
from typing import Any

_EXPORTS = {
    "CATALOGUE": "model_types",
    "MODEL_TYPES": "model_types",
    "ModelType": "model_types",
    "EpochProgress": "fit",
    "LoadedModel": "inference",
    "ModelArtifactError": "errors",
    "TrainConfig": "config",
    "TrainResult": "train",
    "load_model": "inference",
    "thread_budget": "fit",
    "TrainSpec": "train",
    "train_symbol": "train",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f"{__name__}.{_EXPORTS[name]}"), name)
