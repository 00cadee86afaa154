"""The market data resource: generated from the core's SourceOptions, credentials only as env var names."""

import dagster as dg
import pytest

from trading_assets.defs.resources import MarketDataResource
from trading_assets.market.sources import SourceOptions
from trading_assets.settings import load_settings


def test_the_resource_has_the_fields_and_defaults_of_source_options() -> None:
    defaults = {name: info.default for name, info in SourceOptions.model_fields.items()}
    resource_defaults = {name: info.default for name, info in MarketDataResource.model_fields.items()}
    assert resource_defaults == defaults


def test_ccxt_credentials_reach_the_exchange_at_run_time_but_no_repr_or_config(
    monkeypatch: pytest.MonkeyPatch, dagster_instance: dg.DagsterInstance
) -> None:
    monkeypatch.setenv("TA_SOURCE", "ccxt")
    monkeypatch.setenv("TA_CCXT_API_KEY", "key-7f3a9")
    monkeypatch.setenv("TA_CCXT_SECRET", "secret-b41c0")
    monkeypatch.setenv("TA_CCXT_API_URL", "http://proxy-user:pw-93e1d@127.0.0.1:9/")
    resource = MarketDataResource.from_settings(load_settings())

    @dg.asset
    def exchange_login(market_data: MarketDataResource) -> dict[str, str]:
        exchange = market_data.build()._exchange
        return {"api_key": exchange.apiKey, "secret": exchange.secret, "repr": repr(market_data)}

    result = dg.materialize([exchange_login], resources={"market_data": resource}, instance=dagster_instance)
    seen = result.output_for_node("exchange_login")
    assert (seen["api_key"], seen["secret"]) == ("key-7f3a9", "secret-b41c0")
    shown = [seen["repr"], repr(resource), str(resource.model_dump())]
    assert not [text for text in shown if any(s in text for s in ("key-7f3a9", "secret-b41c0", "pw-93e1d"))]
