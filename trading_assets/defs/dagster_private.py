"""Every name this package takes from Dagster's private modules (`dagster._...`), in one place.

Dagster 1.13 does not export these at the top level; a Dagster upgrade may move or change them. The pin is
`DAGSTER_VERSION` (pyproject.toml pins the same); `trading_assets_tests/defs/test_dagster_private.py` fails
on another version and names what to re-check here.
"""

from dagster._core.definitions.asset_checks.asset_check_evaluation import (
    AssetCheckEvaluationTargetMaterializationData as TargetMaterialization,
)
from dagster._core.definitions.selector import JobSubsetSelector
from dagster._core.instance.ref import InstanceRef
from dagster._core.storage.asset_check_execution_record import (
    AssetCheckExecutionRecord,
    AssetCheckExecutionRecordStatus,
)
from dagster._core.storage.event_log.schema import AssetCheckExecutionsTable
from dagster._core.storage.event_log.sqlite.sqlite_event_log import (
    SQLITE_BUSY_TIMEOUT_SECONDS,
    SqliteEventLogStorage,
    SqliteEventLogStorageWatchdog,
)
from dagster._core.storage.sqlite_storage import DagsterSqliteStorage
from dagster._core.workspace.context import WorkspaceProcessContext
from dagster._core.workspace.load_target import WorkspaceFileTarget
from dagster._serdes import ConfigurableClassData, serialize_value
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
    "SqliteEventLogStorage": "defs/sqlite_storage.py: the SQLite event log whose _connect (one engine per "
    "statement) is overridden to keep an engine per shard; re-check _connect, _initdb, _db_lock, "
    "_initialized_dbs and conn_string_for_shard",
    "SQLITE_BUSY_TIMEOUT_SECONDS": "defs/sqlite_storage.py: the busy timeout Dagster's SQLite engines use",
    "SqliteEventLogStorageWatchdog": "defs/sqlite_storage.py: the watcher of a run's event log (the UI's live "
    "log), also woken by the write-ahead log; re-check its __init__ (_log_path) and _process_log, and "
    "SqliteEventLogStorage.watch (_obs, _watchers)",
    "DagsterSqliteStorage": "defs/sqlite_storage.py: the SQLite storage whose event log is replaced "
    "(its __init__ sets _event_log_storage)",
    "InstanceRef": "defs/sqlite_storage.py: InstanceRef.config_defaults, the default storages of an "
    "instance directory, which TunedSqliteInstance.config_defaults changes",
    "ConfigurableClassData": "defs/sqlite_storage.py: how an instance names its storage classes",
    "AssetCheckExecutionsTable": "defs/event_log.py: the table of check executions, whose planned rows "
    "are inserted with the event serialized once (re-check _store_asset_check_evaluation_planned)",
    "serialize_value": "defs/event_log.py: how Dagster serializes a stored event",
}

__all__ = [
    "DAGSTER_VERSION",
    "USES",
    "AssetCheckExecutionRecord",
    "AssetCheckExecutionsTable",
    "AssetCheckExecutionRecordStatus",
    "ConfigurableClassData",
    "DagsterSqliteStorage",
    "InstanceRef",
    "JobSubsetSelector",
    "SQLITE_BUSY_TIMEOUT_SECONDS",
    "SerializableErrorInfo",
    "SqliteEventLogStorage",
    "SqliteEventLogStorageWatchdog",
    "TargetMaterialization",
    "serialize_value",
    "WorkspaceFileTarget",
    "WorkspaceProcessContext",
]
