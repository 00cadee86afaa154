import argparse
import importlib.util

import numpy as np
import pytest

from trading_assets_bench import training


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    training.add_arguments(parser)
    return parser.parse_args(list(argv))


def test_make_data_is_the_baselines():
    if not training.DEFAULT_BASELINE.is_file():
        pytest.skip(f"{training.DEFAULT_BASELINE} is absent (../shared not checked out)")
    spec = importlib.util.spec_from_file_location("baseline_recipe", training.DEFAULT_BASELINE)
    baseline = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(baseline)
    for ours, theirs in zip(training.make_data(3000, 7, 3), baseline.make_data(3000, 7, 3), strict=True):
        np.testing.assert_array_equal(ours, theirs)


@pytest.mark.e2e  # the training benchmark, run until it reaches its target loss
def test_write_data_then_throughput_and_time_to_target(tmp_path):
    path = tmp_path / "data.npz"
    training.run(_args("--write-data", str(path), "--rows", "3000", "--features", "5"))
    args = _args(
        "--data", str(path), "--seq-len", "10", "--seconds", "0.3", "--warmup", "0.1", "--skip-baseline"
    )
    result = training.run(args)
    assert result["rows"] == 3000 and result["training_windows"] == 2991 and result["samples_per_s"] > 0
    assert {"peak_rss_mb", "loss_first", "loss_last"} <= set(result)
    args = _args("--data", str(path), "--seq-len", "10", "--target-val-loss", "0.8", "--skip-baseline")
    result = training.run(args)
    assert result["reached"] and result["samples_to_target"] >= 10_000 and result["val_loss"] <= 0.8


def test_validation_windows_are_the_baselines():
    ends = training.validation_ends(100_000, 60)
    assert len(ends) == 4096 and ends[0] == 85_059 and ends[-1] == 99_999


def test_pairs_alternate_ours_and_the_baseline(tmp_path):
    if not training.DEFAULT_BASELINE.is_file():
        pytest.skip(f"{training.DEFAULT_BASELINE} is absent (../shared not checked out)")
    args = _args("--rows", "3000", "--seq-len", "10", "--seconds", "0.3", "--warmup", "0.1", "--pairs", "2")
    result = training.run(args)
    assert len(result["pairs"]) == 2
    for pair in result["pairs"]:
        assert pair["ratio"] == pytest.approx(pair["samples_per_s"] / pair["baseline_samples_per_s"])
    assert result["ratio_min"] <= result["ratio_median"] <= result["ratio_max"]
    with pytest.raises(ValueError, match="drop --skip-baseline"):
        training.run(_args("--rows", "3000", "--pairs", "2", "--skip-baseline"))
