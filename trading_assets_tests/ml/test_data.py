import numpy as np
import pytest
import torch

from trading_assets.ml.data import (
    Samples,
    chronological_splits,
    evenly_spread,
    fit_scaler,
    gather_windows,
    make_samples,
    windows_of_rows,
)


def test_labels_are_the_direction_over_the_horizon_and_unusable_windows_are_excluded():
    close = np.array([1.0, 2, 3, 2, 2.5, 2.6, 1, 4])
    usable = np.ones(8, bool)
    usable[4] = False
    samples = make_samples(close, usable, seq_len=2, horizon=2, dead_band=0.0)
    # ends 1..5; 4 is unusable, and 2 needs usable[4] for its label
    assert samples.ends.tolist() == [1, 3, 5]
    assert samples.labels.tolist() == [0.0, 1.0, 1.0]


def test_dead_band_drops_near_zero_moves():
    close = np.array([100.0, 100.01, 101, 100, 100.02])
    samples = make_samples(close, np.ones(5, bool), seq_len=1, horizon=1, dead_band=0.001)
    assert samples.ends.tolist() == [1, 2]


def test_splits_are_chronological_with_a_purge_gap():
    ends = np.arange(10, 1010)
    splits = chronological_splits(Samples(ends, np.zeros(1000, np.float32)), 0.7, 0.15, purge=12)
    assert splits.train.ends[-1] < splits.val.ends[0] and splits.val.ends[-1] < splits.test.ends[0]
    assert splits.val.ends[0] - splits.train.ends[-1] >= 12
    assert splits.test.ends[0] - splits.val.ends[-1] >= 12
    assert len(splits.train.ends) == 700 and len(splits.val.ends) == 150 - 11


def test_scaler_uses_training_rows_only_and_ignores_non_finite_values():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(100, 3)).astype(np.float32)
    train = Samples(np.arange(4, 60), np.zeros(56, np.float32))  # windows cover rows 0..59
    x[60:] += 1000
    scaler = fit_scaler(x, train, seq_len=5)
    np.testing.assert_allclose(scaler.mean, x[:60].mean(axis=0), atol=1e-6)
    np.testing.assert_allclose(scaler.std, x[:60].std(axis=0), rtol=1e-5)
    x[0, 0] = np.nan
    scaler = fit_scaler(x, train, seq_len=5)
    assert scaler.mean[0] == pytest.approx(x[1:60, 0].mean(), abs=1e-6)
    assert np.all(np.isfinite(scaler.transform(x)))


def test_scaler_transforms_into_a_copy_or_in_place_alike():
    rng = np.random.default_rng(1)
    x = rng.normal(3.0, 2.0, (50, 3)).astype(np.float32)
    x[2, 1] = np.inf
    scaler = fit_scaler(x, Samples(np.arange(4, 40), np.zeros(36, np.float32)), seq_len=5)
    expected = np.nan_to_num((x - scaler.mean) / scaler.std, nan=0.0, posinf=0.0, neginf=0.0)
    copied = scaler.transform(x)
    assert copied.dtype == np.float32 and not np.shares_memory(copied, x) and np.isinf(x[2, 1])
    np.testing.assert_allclose(copied, expected, rtol=1e-6)
    in_place = scaler.transform(x, in_place=True)
    assert in_place is x and np.array_equal(in_place, copied)


def test_windows_are_gathered_per_batch_and_viewed_without_copies():
    x = np.arange(40, dtype=np.float32).reshape(20, 2)
    windows = gather_windows(torch.from_numpy(x), torch.tensor([4, 19]), seq_len=5)
    np.testing.assert_array_equal(windows.numpy(), np.stack([x[0:5], x[15:20]]))
    view = windows_of_rows(x, 5)
    assert view.shape == (16, 5, 2) and np.shares_memory(view, x)
    np.testing.assert_array_equal(view[-1], x[15:20])


def test_scaler_in_chunks_equals_one_pass_over_finite_values():
    rng = np.random.default_rng(3)
    x = rng.normal(5.0, 2.0, (1_000, 4)).astype(np.float32)
    x[::7, 1] = np.nan
    ends = np.arange(9, 800)
    scaler = fit_scaler(x, Samples(ends, np.zeros(len(ends), np.float32)), 10, chunk_rows=64)
    rows = x[:800].astype(np.float64)
    np.testing.assert_allclose(scaler.mean, np.nanmean(rows, axis=0), rtol=1e-6)
    np.testing.assert_allclose(scaler.std, np.nanstd(rows, axis=0), rtol=1e-6)


def test_evenly_spread_keeps_order_and_spans_the_part():
    samples = Samples(np.arange(100, 1100, dtype=np.int64), (np.arange(1000) % 2).astype(np.float32))
    picked = evenly_spread(samples, 10)
    assert len(picked.ends) == 10 and picked.ends[0] == 100 and picked.ends[-1] == 1099
    assert np.all(np.diff(picked.ends) > 0)
    np.testing.assert_array_equal(picked.labels, samples.labels[picked.ends - 100])
    assert evenly_spread(samples, None) is samples and evenly_spread(samples, 5000) is samples
