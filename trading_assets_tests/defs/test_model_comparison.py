"""The ensemble's model comparison says why a model type is left out: its failed blocking gates."""

import dagster as dg

from trading_assets.defs.assets.ensemble import _exclusion_reason
from trading_assets.defs.checks import TargetMaterialization


def record(instance: dg.DagsterInstance, model_type: str, gates: dict[str, bool]) -> None:
    asset = dg.AssetKey(f"{model_type}_model")
    instance.report_runless_asset_event(dg.AssetMaterialization(asset, partition="BTC-USD"))
    latest = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=asset, asset_partitions=["BTC-USD"]), limit=1
    ).records[0]
    target = TargetMaterialization(
        storage_id=latest.storage_id, run_id=latest.run_id, timestamp=latest.timestamp
    )
    for name, passed in gates.items():
        instance.report_runless_asset_event(
            dg.AssetCheckEvaluation(
                asset_key=asset, check_name=name, passed=passed, partition="BTC-USD",
                severity=dg.AssetCheckSeverity.ERROR, blocking=True, target_materialization_data=target,
                description=f"{name} {'passed' if passed else 'FAILED'}: measured 0.5100, threshold 0.6800",
            )
        )  # fmt: skip


def test_the_reason_names_the_failed_gate_with_measured_and_threshold(dagster_instance) -> None:
    record(dagster_instance, "lstm", {"accuracy_gate": False, "calibration_gate": True})
    record(dagster_instance, "logistic", {"accuracy_gate": True, "calibration_gate": True})
    assert _exclusion_reason(dagster_instance, "lstm", "BTC-USD") == (
        "excluded: accuracy_gate FAILED: measured 0.5100, threshold 0.6800"
    )
    assert _exclusion_reason(dagster_instance, "logistic", "BTC-USD") == "not promoted"
    assert _exclusion_reason(dagster_instance, "transformer", "BTC-USD") == "not trained"
    assert _exclusion_reason(dagster_instance, "lstm", "ETH-USD") == "not trained"
