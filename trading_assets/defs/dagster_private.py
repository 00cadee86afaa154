"""Every name this package takes from Dagster's private modules (`dagster._...`), in one place.

Dagster 1.13 does not export these at the top level; a Dagster upgrade may move or change them. The pin is
`DAGSTER_VERSION` (pyproject.toml pins the same); `trading_assets_tests/defs/test_dagster_private.py` fails
on another version and names what to re-check here.
"""

from dagster._core.definitions.asset_checks.asset_check_evaluation import (
    AssetCheckEvaluationTargetMaterializationData as TargetMaterialization,
)
from dagster._core.definitions.selector import JobSubsetSelector
from dagster._core.storage.asset_check_execution_record import (
    AssetCheckExecutionRecord,
    AssetCheckExecutionRecordStatus,
)
from dagster._core.workspace.context import WorkspaceProcessContext
from dagster._core.workspace.load_target import WorkspaceFileTarget
from dagster._utils.error import SerializableErrorInfo

#: The Dagster release these names were checked against.
DAGSTER_VERSION = "1.13.27"

#: What each name is used for: re-check these uses when DAGSTER_VERSION changes.
USES = {
    "TargetMaterialization": "defs/checks.py: per-partition check evaluations name the materialization they "
    "checked (AssetCheckEvaluation(target_materialization_data=...))",
    "AssetCheckExecutionRecord": "defs/sensors.py: a failed check execution turned into an alert",
    "AssetCheckExecutionRecordStatus": "defs/sensors.py: filter check executions by status",
    "SerializableErrorInfo": "defs/sensors.py: the type of a failed run's error (root cause of an alert)",
    "JobSubsetSelector": "demo/runs.py: select the assets of a run launched through the code location",
    "WorkspaceProcessContext": "demo/runs.py: load workspace.yaml's code location as the webserver does",
    "WorkspaceFileTarget": "demo/runs.py: the workspace.yaml target of WorkspaceProcessContext",
}

__all__ = [
    "DAGSTER_VERSION",
    "USES",
    "AssetCheckExecutionRecord",
    "AssetCheckExecutionRecordStatus",
    "JobSubsetSelector",
    "SerializableErrorInfo",
    "TargetMaterialization",
    "WorkspaceFileTarget",
    "WorkspaceProcessContext",
]
