"""`bench gates`'s per-file path on three days of real Binance minutes (logistic only, 2 folds): the record
carries what the README's table is made of."""

import pytest

from trading_assets.ml.config import TrainConfig
from trading_assets.ml.gates import GATES
from trading_assets.ml.policy import CostPolicy, PromotionPolicy
from trading_assets_bench import gates as bench
from trading_assets_tests.conftest import SHARED_DATA

DATASET = "binance_2026-03_paparocketeer-freqtrade-bot"
REAL_BTC = SHARED_DATA / DATASET / "BTC_USDT-1m.feather"


def test_bench_file_records_every_gate_and_the_break_even_fee(tmp_path):
    if not REAL_BTC.exists():
        pytest.skip(f"real candles not found at {REAL_BTC} (../shared is absent)")
    policy = PromotionPolicy(min_accuracy=bench.MIN_ACCURACY, folds=2)
    costs = CostPolicy(fee_bps=bench.FEE_BPS)
    [record] = bench.bench_file(
        REAL_BTC, DATASET, ["logistic"], policy, costs, TrainConfig(max_epochs=1), tmp_path, days=3
    )
    assert "error" not in record, record.get("traceback")
    assert record["dataset"] == DATASET and record["symbol"] == "BTC-USDT" and record["model"] == "logistic"
    assert record["rows"] == 3 * 1440 and record["first_minute"] == "2026-03-24T00:00Z"
    assert record["usable_rows"] < record["rows"]  # the warm-up at the start of history
    assert record["folds"] == 2 and len(record["fold_accuracies"]) == 2 and record["samples"] > 0
    assert 0.4 < record["accuracy"] < 0.65 and 0.5 <= record["base_rate"] < 0.65
    assert record["strongest_rival"].startswith("rule ") and 0 < record["rival_accuracy"] < 1
    assert list(record["gates"]) == list(GATES)
    for gate in record["gates"].values():
        assert {"passed", "measured", "bound", "threshold"} <= set(gate)
    assert record["gates"]["accuracy_gate"]["threshold"] == 0.51
    assert record["refused_by"] == [name for name, gate in record["gates"].items() if not gate["passed"]]
    assert record["promoted"] is (not record["refused_by"])
    assert record["refused_by"]  # minute-ahead direction of BTC after 10 bps a side: nothing to promote
    fee = record["break_even_fee_bps"]
    assert fee is None or isinstance(fee, float)
    assert record["best_constant"] in ("flat", "long") and isinstance(record["excess_return"], float)
    assert isinstance(record["net_return"], float) and record["seconds"] > 0
    assert not list(tmp_path.rglob("manifest.json"))  # artifacts are not kept

    table = bench.markdown_table([record]).splitlines()
    assert table[0] == "| data set | symbol | model | accuracy | refused by | break-even fee bps |"
    assert table[2].startswith(f"| {DATASET} | BTC-USDT | logistic | {record['accuracy']:.4f} | ")


def test_absent_data_sets_are_skipped_with_a_line_each(tmp_path):
    (tmp_path / "freqtrade_testdata").mkdir()
    files, skipped = bench.data_files(tmp_path, list(bench.DATASETS))
    assert files == [] and len(skipped) == 3 and all("absent" in line for line in skipped)


def test_a_training_that_raises_is_recorded_in_the_table():
    record = {"dataset": "d", "symbol": "S", "model": "lstm", "error": "ValueError: too few\nmore"}
    assert (
        bench.markdown_table([record]).splitlines()[2]
        == "| d | S | lstm |  | error: ValueError: too few |  |"
    )
