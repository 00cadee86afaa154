import math

import numpy as np
import pytest
import torch

from trading_assets.ml.config import TrainConfig
from trading_assets.ml.data import chronological_splits, fit_scaler, gather_windows, make_samples
from trading_assets.ml.fit import (
    draw_windows,
    epoch_windows,
    predict_logits,
    thread_budget,
    train_epochs,
)
from trading_assets.ml.model_types import LSTM


@pytest.mark.parametrize(("cores", "concurrent", "expected"), [(8, 4, 2), (8, 1, 8), (2, 3, 1), (16, 3, 5)])
def test_thread_budget_shares_cores(monkeypatch, cores, concurrent, expected):
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: set(range(cores)))
    assert thread_budget(concurrent) == expected


def test_thread_budget_of_default_config_uses_every_core(monkeypatch):
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: set(range(12)))
    assert thread_budget(TrainConfig().concurrent_trainings) == 12


def _fit(market, config, progress=None):
    samples = make_samples(market.close, market.usable, config.seq_len, config.horizon, 0.0)
    splits = chronological_splits(samples, 0.7, 0.15, config.seq_len + config.horizon)
    x = torch.from_numpy(fit_scaler(market.x, splits.train, config.seq_len).transform(market.x))
    torch.manual_seed(config.seed)
    model = LSTM.build(x.shape[1], config)
    return model, train_epochs(model, x, splits.train, splits.val, config, progress), x, splits


def test_training_is_reproducible_and_reports_each_epoch(market, tiny_config):
    updates = []
    first, outcome, _, _ = _fit(market, tiny_config, updates.append)
    second, _, _, _ = _fit(market, tiny_config)
    for name, value in first.state_dict().items():
        assert torch.equal(value, second.state_dict()[name]), name
    assert [u.epoch for u in updates] == [1, 2, 3] == [e["epoch"] for e in outcome.learning_curve]
    assert all(u.samples_per_s > 0 and u.eta_s >= 0 and 0 <= u.val_accuracy <= 1 for u in updates)
    assert updates[-1].eta_s == 0


def test_best_weights_are_restored_and_patience_stops_early(market, tiny_config):
    config = type(tiny_config)(
        **{**tiny_config.to_dict(), "max_epochs": 15, "patience": 1, "learning_rate": 0.05}
    )
    model, outcome, x, splits = _fit(market, config)
    assert outcome.epochs_run < 15
    best = min(outcome.learning_curve, key=lambda e: e["val_loss"])
    assert outcome.best_epoch == best["epoch"]
    logits = torch.from_numpy(predict_logits(model, x, splits.val.ends, config.seq_len, 256)).double()
    val_loss = torch.nn.functional.binary_cross_entropy_with_logits(
        logits, torch.from_numpy(splits.val.labels).double()
    )
    assert float(val_loss) == pytest.approx(best["val_loss"], rel=1e-6)
    assert np.isfinite(outcome.samples_per_s)


def test_train_seq_len_shortens_training_windows_only(market, tiny_config, monkeypatch):
    from trading_assets.ml import fit

    lengths = []

    def recording(x, ends, seq_len):
        lengths.append(seq_len)
        return gather_windows(x, ends, seq_len)

    monkeypatch.setattr(fit, "gather_windows", recording)
    config = type(tiny_config)(**{**tiny_config.to_dict(), "train_seq_len": 4, "max_epochs": 1})
    _fit(market, config)
    assert set(lengths) == {4, 10} and lengths[-1] == 10 and lengths[0] == 4


def test_several_validations_per_epoch_and_patience_counts_validations(market, tiny_config):
    config = type(tiny_config)(**{**tiny_config.to_dict(), "evals_per_epoch": 4, "max_epochs": 2})
    _, outcome, _, _ = _fit(market, config)
    assert [e["epoch"] for e in outcome.learning_curve] == [0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0]
    assert outcome.windows_seen == 2 * 512
    impatient = type(tiny_config)(
        **{**config.to_dict(), "max_epochs": 15, "patience": 2, "learning_rate": 0.05}
    )
    _, stopped, _, _ = _fit(market, impatient)
    curve = stopped.learning_curve
    best = min(range(len(curve)), key=lambda i: curve[i]["val_loss"])
    assert len(curve) == best + 1 + 2 < 15 * 4  # stopped two validations after the best
    assert stopped.best_epoch == math.ceil(curve[best]["epoch"])


def test_even_sampling_draws_one_window_from_each_stretch():
    generator = torch.Generator().manual_seed(0)
    drawn = draw_windows(10_000, 100, "even", generator)
    assert len(set(drawn.tolist())) == 100
    assert sorted(i // 100 for i in drawn.tolist()) == list(range(100))
    assert sorted(draw_windows(50, 50, "even", generator).tolist()) == list(range(50))


def test_warm_epochs_mix_replayed_and_newer_windows(tiny_config):
    config = type(tiny_config)(**{**tiny_config.to_dict(), "replay_fraction": 0.25})
    drawn = epoch_windows(1_000, 200, config, torch.Generator().manual_seed(0), replayed=800)
    assert len(set(drawn.tolist())) == 200
    assert sum(i < 800 for i in drawn.tolist()) == 50


def test_validations_during_training_score_at_most_val_max_samples_windows(market, tiny_config, monkeypatch):
    from trading_assets.ml import fit

    scored = []

    def recording(model, x, ends, seq_len, batch_size):
        scored.append(len(ends))
        return predict_logits(model, x, ends, seq_len, batch_size)

    monkeypatch.setattr(fit, "predict_logits", recording)
    config = type(tiny_config)(**{**tiny_config.to_dict(), "val_max_samples": 50, "max_epochs": 2})
    _, outcome, _, _ = _fit(market, config)
    assert scored == [50, 50] and len(outcome.learning_curve) == 2
