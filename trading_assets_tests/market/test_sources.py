from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from trading_assets.market.sources import SourceOptions, build_source, parse_predictability_overrides
from trading_assets.market.synthetic import SyntheticSource

START, END = datetime(2024, 3, 1, tzinfo=UTC), datetime(2024, 3, 1, 2, tzinfo=UTC)


def test_per_symbol_predictability_overrides_only_the_named_symbol() -> None:
    source = build_source(
        SourceOptions(synthetic_predictability=0.7, synthetic_predictability_by_symbol="SOL-USD=0")
    )
    assert source.fetch("SOL-USD", START, END).equals(SyntheticSource(7, 0.0).fetch("SOL-USD", START, END))
    assert source.fetch("BTC-USD", START, END).equals(SyntheticSource(7, 0.7).fetch("BTC-USD", START, END))


def test_bad_override_names_the_entry() -> None:
    assert parse_predictability_overrides(" BTC-USD=0.5, SOL-USD=0 ") == {"BTC-USD": 0.5, "SOL-USD": 0.0}
    with pytest.raises(ValueError, match="'SOL-USD=high'"):
        parse_predictability_overrides("SOL-USD=high")


def test_a_refused_option_does_not_repeat_its_value() -> None:
    with pytest.raises(ValidationError) as refused:
        SourceOptions(ccxt_api_url="ftp://user:pw-4c1d9@127.0.0.1/")
    assert "ccxt_api_url" in str(refused.value) and "pw-4c1d9" not in str(refused.value)
