"""The weighted ensemble of a symbol's promoted members."""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from trading_assets.ml.inference import LoadedModel, load_model
from trading_assets.promotion.registry import PromotedModel, current, promoted_root

DEFAULT_WEIGHTS = {"lstm": 0.35, "transformer": 0.40, "sklearn": 0.25}


class NoPromotedMembers(LookupError):
    """No model of any member type is promoted for the symbol."""


@dataclass(frozen=True)
class EnsembleMember:
    model_type: str
    version: str
    weight: float
    directory: str


@dataclass(frozen=True)
class EnsembleSpec:
    symbol: str
    members: list[EnsembleMember]
    schema_hash: str
    built_at: str

    @property
    def weights(self) -> dict[str, float]:
        return {member.model_type: member.weight for member in self.members}


def build_ensemble(
    models_dir: Path, symbol: str, weights: dict[str, float] = DEFAULT_WEIGHTS
) -> EnsembleSpec:
    """Members = what is promoted for `symbol`; weights renormalised over them. Written to the registry."""
    promoted: list[PromotedModel] = [
        model for model_type in weights if (model := current(models_dir, model_type, symbol)) is not None
    ]
    if not promoted:
        raise NoPromotedMembers(
            f"no promoted model for {symbol} among {sorted(weights)}: promote at least one member first"
        )
    hashes = {model.manifest["schema_hash"] for model in promoted}
    if len(hashes) != 1:
        raise ValueError(
            f"{symbol}: promoted members were trained on different feature schemas {sorted(hashes)}"
        )
    total = sum(weights[model.model_type] for model in promoted)
    spec = EnsembleSpec(
        symbol=symbol,
        members=[
            EnsembleMember(
                model.model_type, model.version, weights[model.model_type] / total, str(model.directory)
            )
            for model in promoted
        ],
        schema_hash=hashes.pop(),
        built_at=datetime.now(UTC).isoformat(),
    )
    _write_spec(ensemble_path(models_dir, symbol), spec)
    return spec


def ensemble_path(models_dir: Path, symbol: str) -> Path:
    return promoted_root(models_dir) / "ensemble" / f"{symbol.replace('/', '-')}.json"


def read_ensemble(models_dir: Path, symbol: str) -> EnsembleSpec:
    path = ensemble_path(models_dir, symbol)
    if not path.is_file():
        raise NoPromotedMembers(f"no ensemble for {symbol} at {path}: materialize the ensemble asset first")
    raw = json.loads(path.read_text())
    return EnsembleSpec(
        symbol=raw["symbol"],
        members=[EnsembleMember(**member) for member in raw["members"]],
        schema_hash=raw["schema_hash"],
        built_at=raw["built_at"],
    )


class EnsembleScorer:
    """Loads an ensemble's members once; scores feature rows into member and ensemble probabilities."""

    def __init__(self, spec: EnsembleSpec, feature_names: list[str], schema_hash: str) -> None:
        self.spec = spec
        self.members: dict[str, LoadedModel] = {
            member.model_type: load_model(Path(member.directory), feature_names, schema_hash)
            for member in spec.members
        }

    @property
    def seq_len(self) -> int:
        return max(model.seq_len for model in self.members.values())

    def score_latest(self, rows: np.ndarray) -> dict[str, float]:
        """p_up of each member and of the ensemble for the window ending at the last row."""
        probabilities = {
            model_type: float(model.predict_proba(rows[-model.seq_len :])[-1])
            for model_type, model in self.members.items()
        }
        weights = self.spec.weights
        probabilities["ensemble"] = sum(weights[name] * p for name, p in probabilities.items())
        return probabilities


def _write_spec(path: Path, spec: EnsembleSpec) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(handle, "w") as stream:
        json.dump(asdict(spec), stream, indent=2, sort_keys=True)
    os.replace(temporary, path)
