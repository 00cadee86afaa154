"""The weighted ensemble of a symbol's promoted members.

The ensemble file (models/promoted/ensemble/<symbol>.json) stores the symbol, the member types and their
weights; never a path. The versions promoted when it was built are kept for information only. At scoring
time `EnsembleScorer` resolves each member through the registry, (symbol, type) -> the version in service
now, so a promotion, rollback or roll forward is served from the next tick on without rebuilding the
ensemble. Loaded models are cached by (type, version): a tick where nothing changed loads nothing.

A member that cannot be served (nothing promoted, its artifact refused) makes `members` raise with one line
naming the file: the symbol is not scored rather than scored by a partial ensemble whose weights nobody
chose. Other symbols have their own scorers and are not affected.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from trading_assets.atomic import write_text_atomically
from trading_assets.ml.inference import LoadedModel
from trading_assets.ml.model_types import DEFAULT_WEIGHTS, UnknownModelType, canonical_name, canonical_weights
from trading_assets.promotion.registry import (
    PromotedModel,
    current,
    current_version,
    load_current,
    promoted_root,
)

#: the key of the ensemble's probability next to its members' (`score_latest`, the recorded signals)
ENSEMBLE = "ensemble"


class NoPromotedMembers(LookupError):
    """No model of any member type is promoted for the symbol."""


class EnsembleFileError(ValueError):
    """The ensemble file is not an ensemble of the symbol asked for."""


@dataclass(frozen=True)
class EnsembleMember:
    model_type: str
    weight: float
    #: the version in service when the ensemble was built; information only (scoring resolves CURRENT)
    version_at_build: str


@dataclass(frozen=True)
class EnsembleSpec:
    symbol: str
    members: list[EnsembleMember]
    schema_hash: str
    built_at: str

    @property
    def weights(self) -> dict[str, float]:
        return {member.model_type: member.weight for member in self.members}


@dataclass(frozen=True)
class ServedMember:
    """A member as served at one tick: the version in service and its loaded model."""

    model_type: str
    version: str
    weight: float
    model: LoadedModel


def build_ensemble(
    models_dir: Path, symbol: str, weights: dict[str, float] = DEFAULT_WEIGHTS
) -> EnsembleSpec:
    """Members = what is promoted for `symbol`; weights (keyed by model type, today's or a former name)
    renormalised over them. Written to the registry."""
    weights = canonical_weights(weights)
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
            EnsembleMember(model.model_type, weights[model.model_type] / total, model.version)
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
    """The symbol's ensemble, refused (one line naming the file) unless it is an ensemble of `symbol`.

    A member under a former type name (`ml.model_types.ALIASES`) reads as today's name.
    Only types and weights are read: a path in the file (as files written before members were resolved
    through the registry held) is ignored, never loaded.
    """
    path = ensemble_path(models_dir, symbol)
    if not path.is_file():
        raise NoPromotedMembers(
            f"no ensemble for {symbol} at {path}: none has been built from its promoted models"
        )
    try:
        raw = json.loads(path.read_text())
        spec = EnsembleSpec(
            symbol=raw["symbol"],
            members=[_member(member) for member in raw["members"]],
            schema_hash=raw["schema_hash"],
            built_at=raw["built_at"],
        )
    except UnknownModelType as error:
        raise EnsembleFileError(f"{path}: {error}") from error
    except (ValueError, KeyError, TypeError) as error:
        raise EnsembleFileError(f"{path}: not an ensemble file: {error!r}") from error
    if spec.symbol != symbol:
        raise EnsembleFileError(f"{path}: an ensemble of {spec.symbol}, not of {symbol}")
    types = [member.model_type for member in spec.members]
    if not types or len(set(types)) != len(types):
        raise EnsembleFileError(f"{path}: member types {types} are not distinct model types")
    if not all(math.isfinite(m.weight) and m.weight > 0 for m in spec.members):
        raise EnsembleFileError(f"{path}: weights {spec.weights} must be finite and > 0")
    return spec


def _member(raw: dict[str, Any]) -> EnsembleMember:
    at_build = raw.get("version_at_build", raw.get("version", ""))
    return EnsembleMember(canonical_name(str(raw["model_type"])), float(raw["weight"]), str(at_build))


class EnsembleScorer:
    """Scores one symbol with its ensemble's members as promoted at the moment of scoring."""

    def __init__(self, models_dir: Path, symbol: str, feature_names: list[str], schema_hash: str) -> None:
        self.models_dir = Path(models_dir)
        self.symbol = symbol
        self.feature_names = list(feature_names)
        self.schema_hash = schema_hash
        self._loaded: dict[tuple[str, str], LoadedModel] = {}

    def members(self) -> list[ServedMember]:
        """Read the ensemble file and resolve each member to the version in service now.

        Raises NoPromotedMembers / NotPromoted / EnsembleFileError / ModelArtifactError, one line naming
        the file, when any member cannot be served. Only the versions served now stay cached.
        """
        spec = read_ensemble(self.models_dir, self.symbol)
        served, loaded = [], {}
        for member in spec.members:
            version, model = self._resolve(member.model_type)
            loaded[member.model_type, version] = model
            served.append(ServedMember(member.model_type, version, member.weight, model))
        self._loaded = loaded
        return served

    def _resolve(self, model_type: str) -> tuple[str, LoadedModel]:
        version = current_version(self.models_dir, model_type, self.symbol)
        cached = self._loaded.get((model_type, version)) if version is not None else None
        if cached is not None:
            return version, cached
        return load_current(self.models_dir, model_type, self.symbol, self.feature_names, self.schema_hash)


def seq_len_of(members: list[ServedMember]) -> int:
    return max(member.model.seq_len for member in members)


def score_latest(members: list[ServedMember], rows: np.ndarray) -> dict[str, float]:
    """p_up of each member and of the ensemble for the window ending at the last row."""
    probabilities = {
        member.model_type: float(member.model.predict_proba(rows[-member.model.seq_len :])[-1])
        for member in members
    }
    probabilities[ENSEMBLE] = sum(member.weight * probabilities[member.model_type] for member in members)
    return probabilities


def _write_spec(path: Path, spec: EnsembleSpec) -> None:
    write_text_atomically(path, json.dumps(asdict(spec), indent=2, sort_keys=True))
