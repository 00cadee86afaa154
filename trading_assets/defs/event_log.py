"""What the project's event-log storages (SQLite and PostgreSQL) change in how Dagster stores a run's events.

When a run starts, Dagster stores one "check evaluation planned" event per asset check, naming the run's
partitions, and inserts a row per (check, partition) into the check executions table. Dagster 1.13 gives
every such row its own serialization of the event (`serialize_value` inside the row loop), and the event
holds the whole partition subset: a run over 731 days x 1 symbol serialized 731 times an event of 731 keys,
~2 s per check, ~20 CPU-seconds per run of `raw_candles` + `features` (docs/backfill-speed.md). The rows
are the same here; the event is serialized once.
"""

from __future__ import annotations

from typing import Any

import dagster as dg

from trading_assets.defs.dagster_private import (
    AssetCheckExecutionRecordStatus,
    AssetCheckExecutionsTable,
    serialize_value,
)


class PlannedChecksSerializedOnce:
    """Mixin for a subclass of Dagster's SQL event log storage (it provides `index_connection` and
    `_event_insert_timestamp`): the planned check rows of a run share one serialized event."""

    def _store_asset_check_evaluation_planned(self, event: dg.EventLogEntry, event_id: int | None) -> None:
        planned: Any = event.get_dagster_event().event_specific_data
        subset = planned.partitions_subset
        partition_keys = subset.get_partition_keys() if subset else [None]
        serialized = serialize_value(event)
        row = {
            "asset_key": planned.asset_key.to_string(),
            "check_name": planned.check_name,
            "run_id": event.run_id,
            "execution_status": AssetCheckExecutionRecordStatus.PLANNED.value,
            "evaluation_event": serialized,
            "evaluation_event_timestamp": self._event_insert_timestamp(event),  # type: ignore[attr-defined]
            "evaluation_event_storage_id": event_id,
        }
        with self.index_connection() as conn:  # type: ignore[attr-defined]
            conn.execute(
                AssetCheckExecutionsTable.insert().values(
                    [{**row, "partition": partition_key} for partition_key in partition_keys]
                )
            )
