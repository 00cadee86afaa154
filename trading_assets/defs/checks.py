"""Per-partition check results for runs that materialize many partitions at once (single-run backfills).

Dagster ties a check result to the materialization it checked ("target materialization"); only a result
that targets a partition's latest materialization counts as current for automation
(`AutomationCondition.all_deps_blocking_checks_passed()`) and in the UI. Dagster fills that in for
`AssetCheckResult` in single-partition steps only, so these evaluations carry it themselves.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import dagster as dg

from trading_assets.defs.dagster_private import TargetMaterialization


def partition_check_specs(
    asset: dg.AssetKey,
    checks: Mapping[str, tuple[str, bool]],
    partitions_def: dg.PartitionsDefinition,
) -> list[dg.AssetCheckSpec]:
    """One check spec per entry of `checks` (name -> (description, blocking)) on the partitions of `asset`."""
    return [
        dg.AssetCheckSpec(
            name, asset=asset, description=description, blocking=blocking, partitions_def=partitions_def
        )
        for name, (description, blocking) in checks.items()
    ]


class PartitionChecks:
    """Builds the check evaluations of one asset's partitions in this run, each pointing at the partition's
    materialization made by this run. Create it after the step has yielded its MaterializeResult."""

    def __init__(self, context: dg.AssetExecutionContext, asset_key: dg.AssetKey) -> None:
        self.asset_key = asset_key
        self.targets = _materializations_of_run(context, asset_key, context.partition_keys)
        self.descriptions = {
            spec.name: spec.description or ""
            for spec in context.assets_def.check_specs
            if spec.asset_key == asset_key
        }

    def evaluation(
        self,
        partition: str,
        name: str,
        passed: bool,
        severity: dg.AssetCheckSeverity,
        metadata: Mapping[str, object],
        description: str | None = None,
    ) -> dg.AssetCheckEvaluation:
        return dg.AssetCheckEvaluation(
            asset_key=self.asset_key,
            check_name=name,
            passed=passed,
            partition=partition,
            severity=severity,
            blocking=severity == dg.AssetCheckSeverity.ERROR,
            metadata=dict(metadata),
            description=description or self._default_description(name, passed),
            target_materialization_data=self.targets.get(partition),
        )

    def _default_description(self, name: str, passed: bool) -> str:
        """What an evaluation without its own description says: the verdict and what the check asks."""
        return f"{'passed' if passed else 'failed'}: {self.descriptions.get(name, name)}"


def _materializations_of_run(
    context: dg.AssetExecutionContext, asset_key: dg.AssetKey, partitions: Sequence[str]
) -> dict[str, TargetMaterialization]:
    """The materialization of each partition written by this run (newest first, one query)."""
    records = context.instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=asset_key, asset_partitions=list(partitions)),
        limit=2 * len(partitions),
    ).records
    targets: dict[str, TargetMaterialization] = {}
    for record in records:
        if record.run_id == context.run.run_id and record.partition_key not in targets:
            targets[record.partition_key] = TargetMaterialization(
                storage_id=record.storage_id, run_id=record.run_id, timestamp=record.timestamp
            )
    return targets
