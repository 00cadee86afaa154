from __future__ import annotations

from datetime import timedelta

import pytest

from trading_assets.features.pipeline import complete_grid
from trading_assets.features.registry import (
    FEATURE_NAMES,
    FEATURES,
    MAX_LOOKBACK,
    MODEL_FEATURES,
    add_intermediates,
    schema_hash,
    truncation_length,
)


def test_registry_has_39_features_and_a_31_feature_model_set() -> None:
    assert len(FEATURES) == 39
    assert len(set(FEATURE_NAMES)) == 39
    assert len(MODEL_FEATURES) == 31
    assert set(MODEL_FEATURES) <= set(FEATURE_NAMES)
    assert all(feature.description for feature in FEATURES)


def test_max_lookback_fits_in_the_previous_day() -> None:
    assert max(feature.lookback for feature in FEATURES) == MAX_LOOKBACK
    assert MAX_LOOKBACK < 1440


def test_schema_hash_depends_on_names_order_and_version() -> None:
    assert schema_hash() == schema_hash(FEATURE_NAMES)
    assert schema_hash(tuple(reversed(FEATURE_NAMES))) != schema_hash()
    assert schema_hash(version="other") != schema_hash()
    assert schema_hash(FEATURE_NAMES[:-1]) != schema_hash()


def test_truncated_ema_drops_less_than_1e_10_of_the_weight() -> None:
    for alpha in (2 / 13, 2 / 27, 1 / 14, 2 / 61):
        length = truncation_length(alpha)
        assert (1 - alpha) ** length < 1e-10 <= (1 - alpha) ** (length - 1)


def test_each_declared_lookback_is_exactly_where_the_feature_starts(btc_candles) -> None:
    start = btc_candles["minute"][0]
    grid = complete_grid(btc_candles, start, start + timedelta(days=1))
    values = add_intermediates(grid).select(feature.expr.alias(feature.name) for feature in FEATURES)
    for feature in FEATURES:
        column = values[feature.name]
        assert column.head(feature.lookback).null_count() == feature.lookback, feature.name
        assert column.slice(feature.lookback).null_count() == 0, feature.name


@pytest.mark.parametrize("name", ["rsi_14", "stoch_k_14", "mfi_14", "williams_r_14", "body_share"])
def test_bounded_features_declare_their_bounds(name: str) -> None:
    feature = next(f for f in FEATURES if f.name == name)
    assert feature.bounds is not None
