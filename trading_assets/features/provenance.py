"""Which data a model was trained on, and reading exactly those rows again.

A model's manifest records `data_snapshot` (`data_snapshot(matrix)`): the stored rows its feature matrix came
from (symbol, [start, end), the backend), the number of rows and a SHA-256 of the matrix as trained on (before
any scaling). On a DuckLake it also records the snapshot the training read, and `read_training_rows` reads the
same rows from that snapshot however much was written since (DuckLake's time travel, as long as the snapshot
has not been expired). The embedded DuckDB file keeps no history: `read_training_rows` reads the rows now
stored and refuses them (`DataChangedError`) when their hash differs from the manifest's.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import numpy as np

from trading_assets.features.store import FeatureMatrix, read_feature_matrix
from trading_assets.store.duckdb_store import LakeStore, Store


class DataChangedError(LookupError):
    """The stored rows differ from those a model was trained on (the embedded file keeps no snapshots)."""


def matrix_sha256(matrix: FeatureMatrix) -> str:
    """SHA-256 of the matrix's feature names and rows (float32 features, minutes as UTC microseconds, close,
    usable and observed flags): equal for the same rows however they were read."""
    digest = hashlib.sha256()
    digest.update("\x1f".join(matrix.names).encode())
    digest.update(np.int64(len(matrix.x)).tobytes())
    arrays = (
        np.asarray(matrix.x, dtype=np.float32),
        np.asarray(matrix.minutes).astype("datetime64[us]").view(np.int64),
        np.asarray(matrix.close, dtype=np.float64),
        np.asarray(matrix.usable, dtype=bool).view(np.uint8),
        np.asarray(matrix.observed, dtype=bool).view(np.uint8),
    )
    for array in arrays:
        digest.update(memoryview(np.ascontiguousarray(array)).cast("B"))
    return digest.hexdigest()


def data_snapshot(matrix: FeatureMatrix) -> dict[str, Any]:
    """The manifest's record of the training data: where the rows were read (`FeatureMatrix.source`; all
    None for a matrix built in memory), how many, and their `matrix_sha256`."""
    where = (
        matrix.source.to_dict()
        if matrix.source is not None
        else dict.fromkeys(("backend", "table", "symbol", "start", "end", "snapshot"))
    )
    return {**where, "rows": len(matrix.x), "sha256": matrix_sha256(matrix)}


def read_training_rows(store: Store, manifest: Mapping[str, Any]) -> FeatureMatrix:
    """The feature matrix a model was trained on, read again from `store` (the model's manifest names it:
    `data_snapshot`, `feature_names`).

    On a DuckLake the rows come from the snapshot the training read; on the embedded file from what is stored
    now. Either way their SHA-256 must equal the manifest's, else `DataChangedError` says what differs.
    """
    record = manifest.get("data_snapshot")
    if not record or record.get("backend") is None:
        raise LookupError("the manifest records no stored training data (data_snapshot): nothing to re-read")
    snapshot = record.get("snapshot")
    if snapshot is not None and not isinstance(store, LakeStore):
        raise LookupError(f"the model was trained on DuckLake snapshot {snapshot}; {store} is not a DuckLake")
    matrix = read_feature_matrix(
        store,
        record["symbol"],
        datetime.fromisoformat(record["start"]),
        datetime.fromisoformat(record["end"]),
        tuple(manifest["feature_names"]),
        snapshot=snapshot,
    )
    digest = matrix_sha256(matrix)
    if digest != record["sha256"]:
        where = f"snapshot {snapshot} of {store}" if snapshot is not None else str(store)
        raise DataChangedError(
            f"the {record['symbol']} features in [{record['start']}, {record['end']}) of {where} differ from "
            f"the rows the model was trained on: {len(matrix.x)} rows with sha256 {digest[:12]}…, trained on "
            f"{record['rows']} rows with sha256 {record['sha256'][:12]}…"
        )
    return matrix
