"""The promoted-model registry under models/promoted/.

Layout for one (model type, symbol):

    models/promoted/<model_type>/<symbol>/versions/<version>/   copies of promoted artifacts (immutable)
    models/promoted/<model_type>/<symbol>/CURRENT.json          the service stack (see below)
    models/promoted/<model_type>/<symbol>/.lock                 serialises changes of CURRENT.json
    models/promoted/history.jsonl                               audit log of every promotion and rollback

CURRENT.json holds {"stack": [versions], "position": i, "current": stack[i]} ("current" is for
readers; the stack and position decide). The version in service is stack[position]. Promotion drops the versions above the position (as
a browser drops its forward history), pushes the new version and serves it; rollback moves the position
one down (rollback twice = two versions back), roll forward one up. Promoting the version already in
service changes nothing.

CURRENT.json is the one place that says what is served. It is written to a temporary file, fsynced and
renamed over the old one (os.replace), so a reader sees the old or the new state, never half of one.
history.jsonl is an audit log that nothing reads to decide what is served: a torn line there (a crash
in the middle of an append) cannot break a rollback; `history` skips such a line with a warning and the
next append starts on a fresh line.

A promoted copy is staged in a temporary sibling, verified and renamed into place. Promotion re-checks the
artifact (by loading it: the manifest's signature taken at training, manifest schema, weights checksum,
features, finite weights, temperature > 0) and its gates; a model that fails a blocking gate is refused.
The slot is the manifest's (model type, symbol); an artifact in the training layout
(<models>/<type>/<symbol>/<version>) whose manifest names another type or symbol than its folder is refused,
and so is a version already in a slot whose manifest names another model. Any refusal of the artifact
is an ArtifactRefused (both a PromotionRefused and a ModelArtifactError), one line naming the file.
Rollback and roll forward load the target the same way before moving; a target that fails is refused and
CURRENT stays as it was. They do not re-run the gates: the target passed them when it was promoted.

A registry written before the stack existed (a plain CURRENT file) reads as a stack of that one version.
"""

from __future__ import annotations

import fcntl
import getpass
import json
import os
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from trading_assets.atomic import write_text_atomically
from trading_assets.ml.artifacts import MANIFEST, ModelArtifactError, read_manifest
from trading_assets.ml.gates import blocking_failures, recorded_gates
from trading_assets.ml.inference import LoadedModel, load_model
from trading_assets.ml.model_types import UnknownModelType, canonical_name, stored_path
from trading_assets.ml.policy import CostPolicy, PolicyError, PromotionPolicy, check_judged_not_looser

PROMOTED_DIR = "promoted"
STATE_FILE = "CURRENT.json"
LEGACY_CURRENT_FILE = "CURRENT"
LOCK_FILE = ".lock"
HISTORY_FILE = "history.jsonl"


class PromotionRefused(RuntimeError):
    """The artifact failed a gate or its checks, or there is nothing to roll back (or forward) to."""


class ArtifactRefused(PromotionRefused, ModelArtifactError):
    """Promotion refused because of the artifact itself (manifest signature or schema, weights, folder):
    caught as a PromotionRefused by the promotion asset and as a ModelArtifactError by the command line."""


class NotPromoted(LookupError):
    """Nothing is promoted for a (model type, symbol)."""


@dataclass(frozen=True)
class PromotedModel:
    model_type: str
    symbol: str
    version: str
    directory: Path
    manifest: dict[str, Any]


@dataclass(frozen=True)
class ServiceStack:
    """Promoted versions in the order they were served; `versions[position]` is in service."""

    versions: tuple[str, ...]
    position: int

    @property
    def current(self) -> str:
        return self.versions[self.position]

    def pushed(self, version: str) -> ServiceStack:
        if self.versions and self.current == version:
            return self
        kept = self.versions[: self.position + 1]
        return ServiceStack((*kept, version), len(kept))


def promoted_root(models_dir: Path) -> Path:
    return Path(models_dir) / PROMOTED_DIR


def _slot(models_dir: Path, model_type: str, symbol: str) -> Path:
    """The slot of (model_type, symbol); one written under the type's former name keeps serving."""
    return stored_path(promoted_root(models_dir), model_type, symbol.replace("/", "-"))


def promote(
    artifact: Path,
    models_dir: Path,
    feature_names: list[str],
    schema_hash: str,
    promoted_by: str,
    policy: PromotionPolicy,
    costs: CostPolicy,
    reason: str = "",
) -> PromotedModel:
    """Copy `artifact` into the registry, verify the copy (checksum, features, the gates recorded in its
    manifest), make it current. Refused (PromotionRefused, one line) when the model was judged under a policy
    or costs looser than `policy` and `costs` (the policy in force, costs resolved to the venue's fee);
    ArtifactRefused (one line naming the file) when the artifact itself is refused: its manifest edited
    after training or unsigned, its weights not the ones trained, or it lies in another symbol's folder."""
    try:
        manifest = read_manifest(artifact)
    except ModelArtifactError as error:
        raise ArtifactRefused(str(error)) from None
    model_type, symbol = manifest["model_type"], manifest["symbol"]
    _check_source_folder(Path(artifact), Path(models_dir), model_type, symbol)
    try:
        check_judged_not_looser(manifest.get("gates", {}), policy, costs)
    except PolicyError as error:
        raise PromotionRefused(f"{model_type} model for {symbol} ({Path(artifact).name}): {error}") from None
    slot = _slot(models_dir, model_type, symbol)
    version = Path(artifact).name
    target = slot / "versions" / version
    try:
        if target.exists():  # promoted before (versions are immutable): verify what is there
            _verify(target, feature_names, schema_hash, model_type, symbol)
        else:
            _copy_verified(Path(artifact), target, feature_names, schema_hash, model_type, symbol)
    except ModelArtifactError as error:
        raise ArtifactRefused(str(error)) from None
    with _locked(slot):
        stack = service_stack(models_dir, model_type, symbol)
        _write_state(slot, stack.pushed(version) if stack is not None else ServiceStack((version,), 0))
    _append_history(
        models_dir,
        action="promote",
        model_type=model_type,
        symbol=symbol,
        version=version,
        promoted_by=promoted_by,
        reason=reason,
        source=str(artifact),
        metrics={
            k: manifest["metrics"]["calibrated"][k] for k in ("accuracy", "ece", "base_rate", "samples")
        },
    )
    return current(models_dir, model_type, symbol)


def service_stack(models_dir: Path, model_type: str, symbol: str) -> ServiceStack | None:
    """The service stack of (model_type, symbol), or None when nothing was ever promoted."""
    slot = _slot(models_dir, model_type, symbol)
    path = slot / STATE_FILE
    if not path.is_file():
        legacy = slot / LEGACY_CURRENT_FILE
        return ServiceStack((legacy.read_text().strip(),), 0) if legacy.is_file() else None
    try:
        raw = json.loads(path.read_text())
        stack = ServiceStack(tuple(raw["stack"]), raw["position"])
    except (ValueError, KeyError, TypeError) as error:
        raise ModelArtifactError(f"{path}: not a registry state file: {error!r}") from error
    names_ok = all(isinstance(v, str) and v and Path(v).name == v and v != ".." for v in stack.versions)
    if not names_ok or not isinstance(stack.position, int) or not 0 <= stack.position < len(stack.versions):
        raise ModelArtifactError(
            f"{path}: stack {raw['stack']!r} / position {raw['position']!r} are not valid"
        )
    return stack


def current_version(models_dir: Path, model_type: str, symbol: str) -> str | None:
    """The version in service, read from the state file alone (no artifact is opened)."""
    stack = service_stack(models_dir, model_type, symbol)
    return stack.current if stack else None


def current(models_dir: Path, model_type: str, symbol: str) -> PromotedModel | None:
    """The promoted model in service for (model_type, symbol), or None."""
    version = current_version(models_dir, model_type, symbol)
    if version is None:
        return None
    directory = version_dir(models_dir, model_type, symbol, version)
    return PromotedModel(model_type, symbol, version, directory, read_manifest(directory))


def load_current(
    models_dir: Path, model_type: str, symbol: str, feature_names: list[str], schema_hash: str
) -> tuple[str, LoadedModel]:
    """The version in service and its model, loaded and checked as an artifact of this symbol and type.

    Raises NotPromoted when nothing is promoted, ModelArtifactError (one line naming the file) when the
    version in service is missing from the registry or its artifact is refused.
    """
    version = current_version(models_dir, model_type, symbol)
    if version is None:
        raise NotPromoted(
            f"no {model_type} model of {symbol} is promoted ({_slot(models_dir, model_type, symbol) / STATE_FILE} "
            "does not exist): only promoted models are served"
        )
    directory = version_dir(models_dir, model_type, symbol, version)
    return version, load_model(directory, feature_names, schema_hash, symbol=symbol, model_type=model_type)


def rollback(
    models_dir: Path,
    model_type: str,
    symbol: str,
    promoted_by: str,
    feature_names: list[str],
    schema_hash: str,
    reason: str = "",
) -> PromotedModel:
    """Serve the version served before the current one, after verifying it loads; returns it."""
    return _move(models_dir, model_type, symbol, _Step(-1), promoted_by, feature_names, schema_hash, reason)


def roll_forward(
    models_dir: Path,
    model_type: str,
    symbol: str,
    promoted_by: str,
    feature_names: list[str],
    schema_hash: str,
    reason: str = "",
) -> PromotedModel:
    """Undo a rollback: serve the version above the current one on the stack, after verifying it loads."""
    return _move(models_dir, model_type, symbol, _Step(+1), promoted_by, feature_names, schema_hash, reason)


def pin(
    models_dir: Path,
    model_type: str,
    symbol: str,
    version: str,
    promoted_by: str,
    feature_names: list[str],
    schema_hash: str,
    reason: str = "",
) -> PromotedModel:
    """Serve `version`, one of the versions on the service stack (promoted before), after verifying it
    loads; the stack keeps its order, so rollback and roll forward move on from there."""
    return _move(models_dir, model_type, symbol, version, promoted_by, feature_names, schema_hash, reason)


@dataclass(frozen=True)
class _Step:
    """A move along the service stack (-1: back, +1: forward)."""

    offset: int


def _target(stack: ServiceStack | None, move: _Step | str, model_type: str, symbol: str) -> int:
    """The stack position `move` leads to; PromotionRefused (one line) when there is none."""
    what = f"roll {'back' if move.offset < 0 else 'forward'} to" if isinstance(move, _Step) else f"pin {move}"
    if stack is None:
        raise PromotionRefused(f"nothing promoted for {model_type} {symbol}: nothing to {what}")
    if isinstance(move, str):
        if move not in stack.versions:
            raise PromotionRefused(
                f"{model_type} {symbol}: cannot pin {move}: not one of the promoted versions "
                f"{list(stack.versions)} (promote a trained version first)"
            )
        return stack.versions.index(move)
    target = stack.position + move.offset
    if not 0 <= target < len(stack.versions):
        end = (
            "only promoted version"
            if len(stack.versions) == 1
            else ("oldest" if move.offset < 0 else "newest")
        )
        raise PromotionRefused(
            f"{model_type} {symbol}: {stack.current} is the {end} of {list(stack.versions)}: nothing to {what}"
        )
    return target


def _move(
    models_dir: Path,
    model_type: str,
    symbol: str,
    move: _Step | str,
    promoted_by: str,
    feature_names: list[str],
    schema_hash: str,
    reason: str,
) -> PromotedModel:
    slot = _slot(models_dir, model_type, symbol)
    moved = "pinned" if isinstance(move, str) else ("rolled back" if move.offset < 0 else "rolled forward")
    with _locked(slot):
        stack = service_stack(models_dir, model_type, symbol)
        target = _target(stack, move, model_type, symbol)
        version = stack.versions[target]
        try:
            load_model(
                version_dir(models_dir, model_type, symbol, version),
                feature_names,
                schema_hash,
                symbol=symbol,
                model_type=model_type,
            )
        except ModelArtifactError as error:
            raise PromotionRefused(
                f"{model_type} {symbol}: not {moved} to {version}, {stack.current} stays in service: {error}"
            ) from error
        _write_state(slot, ServiceStack(stack.versions, target))
    _append_history(
        models_dir,
        action="pin" if isinstance(move, str) else ("rollback" if move.offset < 0 else "roll_forward"),
        model_type=model_type,
        symbol=symbol,
        version=version,
        promoted_by=promoted_by,
        reason=reason,
        source=stack.current,
        metrics={},
    )
    return current(models_dir, model_type, symbol)


def history(models_dir: Path) -> list[dict[str, Any]]:
    """Every promotion and rollback recorded; a line that is not a JSON object is skipped with a warning."""
    path = promoted_root(models_dir) / HISTORY_FILE
    if not path.exists():
        return []
    entries = []
    for number, line in enumerate(path.read_text(errors="replace").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except ValueError:
            entry = None
        if not isinstance(entry, dict):
            warnings.warn(
                f"{path}:{number}: skipped a line that is not a JSON record (torn write?)", stacklevel=2
            )
            continue
        entries.append(entry)
    return entries


def version_dir(models_dir: Path, model_type: str, symbol: str, version: str) -> Path:
    directory = _slot(models_dir, model_type, symbol) / "versions" / version
    if not directory.is_dir():
        raise ModelArtifactError(
            f"{_slot(models_dir, model_type, symbol) / STATE_FILE}: serves version {version}, which is not in "
            f"the promoted registry ({directory} does not exist)"
        )
    return directory


def _append_history(models_dir: Path, **entry: Any) -> None:
    """Append one JSON line in one write; after a torn last line, start on a fresh line."""
    path = promoted_root(models_dir) / HISTORY_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {"at": datetime.now(UTC).isoformat(), "user": getpass.getuser(), **entry}
    line = json.dumps(record, sort_keys=True) + "\n"
    with path.open("a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        handle.seek(0, os.SEEK_END)
        if handle.tell() > 0:
            handle.seek(-1, os.SEEK_END)
            if handle.read(1) != b"\n":
                line = "\n" + line
        handle.write(line.encode())
        handle.flush()
        os.fsync(handle.fileno())


def _check_source_folder(artifact: Path, models_dir: Path, model_type: str, symbol: str) -> None:
    """Refuse an artifact in the training layout <models_dir>/<type>/<symbol>/<version> whose manifest names
    another type or symbol than its folders (moved, or its manifest rewritten and re-signed): promoting it
    would serve it in a slot its folder does not say. An artifact elsewhere is judged by its manifest."""
    try:
        parts = artifact.resolve().relative_to(models_dir.resolve()).parts
    except ValueError:
        return
    if len(parts) != 3 or parts[0] == PROMOTED_DIR:
        return
    try:
        folder_type = canonical_name(parts[0])
    except UnknownModelType:
        return
    if (folder_type, parts[1]) != (model_type, symbol.replace("/", "-")):
        raise ArtifactRefused(
            f"{artifact / MANIFEST}: a {model_type} model of {symbol}, but it lies in the folder of "
            f"{folder_type} {parts[1]} ({artifact.parent}): not promoted into either slot"
        )


def _verify(
    directory: Path, feature_names: list[str], schema_hash: str, model_type: str, symbol: str
) -> None:
    """Raise unless the artifact loads as a `model_type` model of `symbol` (signature, checksum, features,
    architecture) and passes every gate it records."""
    manifest = load_model(
        directory, feature_names, schema_hash, symbol=symbol, model_type=model_type
    ).manifest
    try:
        failures = blocking_failures(recorded_gates(manifest))
    except ValueError as error:
        raise PromotionRefused(f"{directory}: {error}") from error
    if failures:
        raise PromotionRefused(
            f"{manifest['model_type']} model for {manifest['symbol']} ({directory.name}) is not promoted: "
            + "; ".join(failure.describe() for failure in failures)
        )


def _copy_verified(
    source: Path, target: Path, feature_names: list[str], schema_hash: str, model_type: str, symbol: str
) -> None:
    """Copy into a temporary sibling, verify the copy, then rename it into place."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        shutil.copytree(source, staging, dirs_exist_ok=True)
        _verify(staging, feature_names, schema_hash, model_type, symbol)
        os.rename(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


@contextmanager
def _locked(slot: Path) -> Iterator[None]:
    """Holds the slot's lock: one promote / rollback / roll forward at a time reads and writes its state."""
    slot.mkdir(parents=True, exist_ok=True)
    with (slot / LOCK_FILE).open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _write_state(slot: Path, stack: ServiceStack) -> None:
    state = {"current": stack.current, "position": stack.position, "stack": list(stack.versions)}
    write_text_atomically(slot / STATE_FILE, json.dumps(state, indent=2) + "\n")
