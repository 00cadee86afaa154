"""`bench retrain`'s code path on a few days (not timed): history built as the assets build it, then every
model type trained through the assets' defaults in its own process, and the warm week."""

import argparse
import json
from datetime import date

import pytest

from trading_assets.cli import main
from trading_assets_bench import retrain


@pytest.mark.e2e  # the retrain benchmark: every training in its own process, then the warm week
def test_bench_retrain_trains_each_model_and_reports_it(tmp_path, capsys):
    out = tmp_path / "retrain.json"
    args = ["--days", "2", "--symbols", "BTC-USD", "--models", "lstm", "--parallel", "1"]
    args += [
        "--max-epochs",
        "1",
        "--samples-per-epoch",
        "256",
        "--warm",
        "--repeats",
        "2",
        "--json",
        str(out),
    ]
    assert main(["bench", "retrain", *args]) == 0
    result = json.loads(out.read_text())
    assert result["benchmark"] == "retrain" and result["device"] == "cpu" and result["cpu_cores"] >= 1
    lstm_config = result["train_configs"]["lstm"]
    assert lstm_config["max_epochs"] == 1 and lstm_config["seq_len"] == 60
    assert lstm_config["train_seq_len"] == 20  # the catalogue's LSTM recipe over the assets' defaults
    assert len(result["cold"]["trainings"]) == 2  # --repeats
    cold = {row["model"]: row for row in result["cold"]["trainings"]}
    assert set(cold) == {"lstm"} and cold["lstm"]["windows_seen"] == 256
    for row in cold.values():
        assert row["mode"] == "cold" and row["peak_rss_mb"] > 0 and row["test_samples"] > 0
        assert list(row["peak_rss_mb_by_phase"]) == ["read", "fit", "score"]
        assert 0 < max(row["peak_rss_mb_by_phase"].values()) <= row["peak_rss_mb"]
        assert {"seconds", "epochs", "windows_per_s", "best_val_loss", "test_log_loss", "test_ece"} <= set(
            row
        )
    warm = {row["model"]: row for row in result["warm_week"]["warm"]["trainings"]}
    assert (
        warm["lstm"]["mode"] == "warm"
        and result["warm_week"]["cold_same_data"]["trainings"][0]["mode"] == "cold"
    )
    assert warm["lstm"]["parent_version"] == cold["lstm"]["artifact"].rsplit("/", 1)[1]
    assert result["warm_week"]["last_day"] == "2025-12-07"


def test_recipe_deltas_judge_quality_against_the_first_recipe():
    measured = {
        name: {"recipe": name, "seconds": s, "test_log_loss": loss, "test_accuracy": acc, "artifact": "x"}
        for name, s, loss, acc in (("before", 10, 0.5, 0.8), ("a", 5, 0.5019, 0.796), ("b", 4, 0.503, 0.8))
    }
    rows = {row.get("seconds"): row for row in retrain._with_deltas(measured)}
    assert (
        rows[5]["quality_holds"] and rows[5]["seconds_ratio"] == 0.5 and rows[5]["compared_with"] == "before"
    )
    assert not rows[4]["quality_holds"] and rows[4]["log_loss_delta"] == 0.003
    assert "artifact" not in rows[10]


def test_the_benchmark_trains_with_the_model_assets_own_defaults():
    from trading_assets.defs.assets.models import model_run_config
    from trading_assets.ml.model_types import MODEL_TYPES
    from trading_assets.settings import Settings

    settings = Settings(train_epochs=3, train_samples_per_epoch=1000)
    run_config = model_run_config(settings)()
    for model_type in MODEL_TYPES:
        assert retrain.asset_defaults(settings, model_type) == run_config.train_config(model_type)
    assert run_config.policy_in_force(settings) == (settings.policy, settings.costs_in_force())


def test_history_is_fixed_whatever_the_date():
    parser = argparse.ArgumentParser()
    retrain.add_arguments(parser)
    assert parser.parse_args([]).end_day == date(2025, 11, 30)


def test_the_rss_sampler_names_the_phases_of_a_training():
    with retrain.RssSampler(interval=0.01) as validated:
        validated.next_segment()  # the log line after the read
        validated.next_segment()  # a validation
        validated.next_segment()  # the last validation
    assert list(validated.peaks()) == ["read", "fit", "score"]
    with retrain.RssSampler(interval=0.01) as unvalidated:
        unvalidated.next_segment()
    assert list(unvalidated.peaks()) == ["read", "fit_and_score"]
    assert 0 < min(unvalidated.peaks().values()) <= round(retrain.peak_rss_mb()) + 1  # peaks are rounded MiB
