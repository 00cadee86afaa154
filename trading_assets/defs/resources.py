"""Dagster resources: thin configurable wrappers over the core's source factory and DuckDB store."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pydantic

from trading_assets.market.candles import CandleSource
from trading_assets.market.sources import SourceOptions, build_source
from trading_assets.settings import CCXT_API_URL_ENV, CCXT_CREDENTIAL_ENV, LAKE_CATALOG_ENV, Settings
from trading_assets.store.duckdb_store import LakeStore, Store


class _MarketData(dg.ConfigurableResource):
    """Which market data source the assets read (synthetic, ccxt or files) and its options: the fields of
    `SourceOptions`, with its defaults and help. Credentials and the exchange URL (which may carry user:password@) are
    `dg.EnvVar`s, so Dagster shows their names only."""

    @classmethod
    def from_settings(cls, settings: Settings) -> MarketDataResource:
        options = settings.source_options.model_dump()
        secrets = {
            name: dg.EnvVar(variable)
            for name, variable in {**CCXT_CREDENTIAL_ENV, "ccxt_api_url": CCXT_API_URL_ENV}.items()
            if options[name]
        }
        return cls(**{**options, **secrets})

    def build(self) -> CandleSource:
        return build_source(SourceOptions(**self.model_dump(include=_OPTION_NAMES)))


def _option_fields() -> dict[str, tuple[object, pydantic.fields.FieldInfo]]:
    """Each field of `SourceOptions` as a resource field: its type, default, help; a secret kept out of repr."""
    return {
        name: (
            info.annotation,
            pydantic.Field(default=info.default, repr=info.repr, description=info.description),
        )
        for name, info in SourceOptions.model_fields.items()
    }


_OPTION_NAMES = set(SourceOptions.model_fields)
MarketDataResource = pydantic.create_model(
    "MarketDataResource",
    __base__=_MarketData,
    __module__=__name__,
    __doc__=_MarketData.__doc__,
    **_option_fields(),
)


class DuckDBStoreResource(dg.ConfigurableResource):
    """Where the project's tables live (candles, features, signals): the DuckDB file `path`, or, when
    `lake_catalog` is set, the DuckLake of that PostgreSQL catalog DSN and `lake_data_path` (`path` unused).
    `from_settings` passes the DSN as `dg.EnvVar("TA_LAKE_CATALOG")`, so Dagster shows its name only."""

    path: str
    lake_catalog: str | None = None
    lake_data_path: str | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> DuckDBStoreResource:
        if settings.store != "ducklake":
            return cls(path=str(settings.duckdb_path))
        return cls(
            path=str(settings.duckdb_path),
            lake_catalog=dg.EnvVar(LAKE_CATALOG_ENV),
            lake_data_path=str(settings.lake_data_path),
        )

    @property
    def db_path(self) -> Store:
        """The `Store` the assets read and write (a `Path` or a `LakeStore`)."""
        if self.lake_catalog:
            return LakeStore(self.lake_catalog, self.lake_data_path or "")
        return Path(self.path)


class ModelStoreResource(dg.ConfigurableResource):
    """Directory of model artifacts and of the promoted registry (models/promoted)."""

    path: str

    @property
    def models_dir(self) -> Path:
        return Path(self.path)
