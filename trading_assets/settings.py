"""The one settings module: every environment variable the project reads is read here.

Each field has a default that runs the offline demo on a fresh machine. Override any of them with the
environment variable named in `ENVIRONMENT_VARIABLES` (also listed in docs/settings.md).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel, ValidationError

from trading_assets.market.sources import SOURCES, SourceOptions
from trading_assets.market.synthetic import DEFAULT_SYNTHETIC_PREDICTABILITY
from trading_assets.market.venues import source_fee_bps
from trading_assets.ml.config import TrainConfig
from trading_assets.ml.policy import POLICY_RECORDS, CostPolicy, PromotionPolicy, resolved
from trading_assets.urls import require_http_url

if TYPE_CHECKING:
    from trading_assets.store.duckdb_store import Store

R = TypeVar("R", bound=BaseModel)
PROJECT_ROOT = Path(__file__).resolve().parent.parent

#: The environment variable of each ccxt credential setting; read here only, never shown.
#: The exchange URL may carry user:password@ (a proxy): like the credentials, passed on by variable name.
CCXT_API_URL_ENV = "TA_CCXT_API_URL"
#: The lake's catalog DSN may carry password=: like the credentials, passed on (to Dagster) by variable name.
LAKE_CATALOG_ENV = "TA_LAKE_CATALOG"
CCXT_CREDENTIAL_ENV = {
    "ccxt_api_key": "TA_CCXT_API_KEY",
    "ccxt_secret": "TA_CCXT_SECRET",
    "ccxt_password": "TA_CCXT_PASSWORD",
}

ENVIRONMENT_VARIABLES = {
    "TA_SYMBOLS": "comma-separated symbols (default BTC-USD,ETH-USD,SOL-USD)",
    "TA_HISTORY_START": "first UTC day of the date partitions, YYYY-MM-DD, 2009-01-01..today (default 2023-11-10)",
    "TA_DATA_DIR": "runtime data directory (default <project>/data)",
    "TA_MODELS_DIR": "model artifact directory (default <project>/models)",
    "TA_DUCKDB_PATH": "DuckDB file (default <data dir>/trading_assets.duckdb)",
    "TA_STORE": "the store: duckdb, the embedded file TA_DUCKDB_PATH (one host), or ducklake, a DuckLake of TA_LAKE_CATALOG and TA_LAKE_DATA_PATH (several hosts) (default duckdb)",
    "TA_LAKE_CATALOG": "TA_STORE=ducklake: libpq DSN of the PostgreSQL database holding the lake's catalog, e.g. dbname=ta_lake host=db.internal user=ta (a password: PGPASSWORD or ~/.pgpass; never logged)",
    "TA_LAKE_DATA_PATH": "TA_STORE=ducklake: directory of the lake's Parquet files, mounted at the same path on every host",
    "TA_SOURCE": "market data source: synthetic | ccxt | files (default synthetic)",
    "TA_SYNTHETIC_SEED": "seed of the synthetic market (default 7)",
    "TA_SYNTHETIC_PREDICTABILITY": f"learnable share of the synthetic market, 0..0.95 (default {DEFAULT_SYNTHETIC_PREDICTABILITY})",
    "TA_SYNTHETIC_PREDICTABILITY_BY_SYMBOL": "per-symbol overrides, e.g. SOL-USD=0,ETH-USD=0.5 (default none)",
    "TA_CCXT_EXCHANGE": "ccxt exchange id (default coinbase)",
    "TA_CCXT_API_URL": "override of the exchange's REST base URL (proxy or loopback test server)",
    "TA_CCXT_TIMEOUT_MS": "per-request timeout of the ccxt source (default 10000)",
    "TA_CCXT_MAX_RETRIES": "retries for network errors, 429 and 5xx (default 5)",
    "TA_CCXT_API_KEY": "ccxt apiKey, only if the exchange needs one for candles (never logged)",
    "TA_CCXT_SECRET": "ccxt secret (never logged)",
    "TA_CCXT_PASSWORD": "ccxt password (never logged)",
    "DAGSTER_HOME": "Dagster instance directory of the demo (default <project>/dagster_home)",
    "TA_FILES_DIR": "directory of Parquet/feather/CSV candle files for the files source",
    "TA_FILES_TIMEZONE": "zone of times written without one in TA_FILES_DIR files, e.g. UTC or America/New_York (unset: such files are refused)",
    "TA_MAX_INVALID_SHARE": "share of invalid rows above which a partition fails, 0..1 (default 0.01)",
    "TA_MIN_COVERAGE": "coverage below which the coverage check warns, 0..1 (default 0.95)",
    "TA_FRESHNESS_HOURS": "latest partition must be younger than this (default 48)",
    "TA_ALERT_WEBHOOK_URL": "optional http(s) webhook (Slack-compatible JSON POST) for alerts",
    "TA_EXECUTOR": "step executor of the code location: in_process | multiprocess | dask (default multiprocess)",
    "TA_DASK_SCHEDULER": "address of the Dask scheduler for TA_EXECUTOR=dask, e.g. tcp://127.0.0.1:8786",
    "TA_TRAIN_EPOCHS": f"default maximum epochs of a model run (default {TrainConfig.max_epochs}; run config overrides)",
    "TA_TRAIN_SAMPLES_PER_EPOCH": f"default training windows sampled per epoch (default {TrainConfig.samples_per_epoch})",
    "TA_CONCURRENT_TRAININGS": "trainings sharing this machine's cores outside Dagster (thread budget; default 1)",
    "TA_RETRAIN_CRON": "cadence of automatic model retraining, a cron string in UTC (default weekly: 0 3 * * 1)",
}
EXECUTORS = ("in_process", "multiprocess", "dask")
STORES = ("duckdb", "ducklake")


#: Earliest accepted TA_HISTORY_START: no crypto market traded before 2009.
EARLIEST_HISTORY_START = date(2009, 1, 1)


class SettingsError(ValueError):
    """A setting from the environment that cannot be used; the message is one line naming the variable."""


def outside_interval(
    value: float, low: float, high: float, low_open: bool = False, high_open: bool = False
) -> str | None:
    """None when `value` lies in the interval (an open end excludes its bound, NaN never lies in it);
    otherwise the words `outside (0.5, 1]` for a message."""
    above = value > low if low_open else value >= low
    below = value < high if high_open else value <= high
    if above and below:
        return None
    return f"outside {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"


def _env(name: str, default: str) -> str:
    value = os.environ.get(name, "").strip()
    return value or default


def _env_float(
    name: str, default: float, low: float, high: float, low_open: bool = False, high_open: bool = False
) -> float:
    """A number within [low, high] (an open end excludes the bound)."""
    raw = _env(name, str(default))
    try:
        value = float(raw)
    except ValueError as error:
        raise SettingsError(f"environment variable {name}={raw!r} is not a number") from error
    outside = outside_interval(value, low, high, low_open, high_open)
    if outside:
        raise SettingsError(f"environment variable {name}={raw!r} is {outside}")
    return value


def _env_int(name: str, default: int, minimum: int | None = None) -> int:
    raw = _env(name, str(default))
    try:
        value = int(raw)
    except ValueError as error:
        raise SettingsError(f"environment variable {name}={raw!r} is not an integer") from error
    if minimum is not None and value < minimum:
        raise SettingsError(f"environment variable {name}={raw!r} must be at least {minimum}")
    return value


def _env_date(name: str, default: date, earliest: date) -> date:
    """A YYYY-MM-DD day from `earliest` to today (UTC)."""
    raw = _env(name, default.isoformat())
    try:
        value = date.fromisoformat(raw)
    except ValueError as error:
        raise SettingsError(f"environment variable {name}={raw!r} is not a date (YYYY-MM-DD)") from error
    today = datetime.now(UTC).date()
    if not earliest <= value <= today:
        raise SettingsError(
            f"environment variable {name}={raw!r} is outside {earliest.isoformat()} to today ({today.isoformat()})"
        )
    return value


def _env_url(name: str) -> str | None:
    """An optional http(s) URL."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return None
    try:
        return require_http_url(f"environment variable {name}", raw)
    except ValueError as error:
        raise SettingsError(str(error)) from None


@dataclass(frozen=True)
class Settings:
    symbols: tuple[str, ...] = ("BTC-USD", "ETH-USD", "SOL-USD")
    history_start: date = date(2023, 11, 10)
    data_dir: Path = PROJECT_ROOT / "data"
    models_dir: Path = PROJECT_ROOT / "models"
    duckdb_path: Path = PROJECT_ROOT / "data" / "trading_assets.duckdb"
    #: "duckdb" (the file `duckdb_path`) or "ducklake" (`lake_catalog` + `lake_data_path`): see `store_location`
    store: str = "duckdb"
    lake_catalog: str | None = field(default=None, repr=False)  # may carry password=
    lake_data_path: Path | None = None
    source: str = SourceOptions.source
    synthetic_seed: int = SourceOptions.synthetic_seed
    synthetic_predictability: float = SourceOptions.synthetic_predictability
    synthetic_predictability_by_symbol: str | None = None
    ccxt_exchange: str = SourceOptions.ccxt_exchange
    ccxt_api_url: str | None = field(default=None, repr=False)  # may carry user:password@
    ccxt_timeout_ms: int = SourceOptions.ccxt_timeout_ms
    ccxt_max_retries: int = SourceOptions.ccxt_max_retries
    #: Credentials, only if the exchange needs them for candles; kept out of repr.
    ccxt_api_key: str | None = field(default=None, repr=False)
    ccxt_secret: str | None = field(default=None, repr=False)
    ccxt_password: str | None = field(default=None, repr=False)
    files_dir: Path | None = None
    files_timezone: str | None = None
    max_invalid_share: float = 0.01
    min_coverage: float = 0.95
    freshness_hours: float = 48.0
    #: the deployment's promotion policy and trading costs (declared, with their TA_* names, in ml/policy.py)
    policy: PromotionPolicy = PromotionPolicy()
    costs: CostPolicy = CostPolicy()
    alert_webhook_url: str | None = None
    executor: str = "multiprocess"
    dask_scheduler: str | None = None
    retrain_cron: str = "0 3 * * 1"
    train_epochs: int = TrainConfig.max_epochs
    train_samples_per_epoch: int = TrainConfig.samples_per_epoch
    concurrent_trainings: int = 1
    dagster_home: Path = PROJECT_ROOT / "dagster_home"

    @property
    def store_location(self) -> Store:
        """Where the tables live: the embedded DuckDB file, or the DuckLake when `store` is "ducklake"."""
        if self.store == "ducklake":
            from trading_assets.store.duckdb_store import LakeStore  # duckdb loads only where a store is used

            assert self.lake_catalog and self.lake_data_path, "load_settings refuses a lake without them"
            return LakeStore(self.lake_catalog, str(self.lake_data_path))
        return self.duckdb_path

    @property
    def alerts_dir(self) -> Path:
        return self.data_dir / "alerts"

    def source_options(self) -> SourceOptions:
        """The market data source these settings select, with its options."""
        values = {option.name: getattr(self, option.name) for option in fields(SourceOptions)}
        return SourceOptions(**{**values, "files_dir": str(self.files_dir) if self.files_dir else None})

    def costs_in_force(self) -> CostPolicy:
        """The costs with an unset fee replaced by the venue's (the source's stated fee, or ccxt's table)."""
        return resolved(self.costs, source_fee_bps(self.source, self.ccxt_exchange))


def load_settings() -> Settings:
    """Settings from the environment, the field defaults of `Settings` for whatever is unset; SettingsError
    (one line naming the variable) for a value out of range or of the wrong kind."""
    default = Settings()
    data_dir = Path(_env("TA_DATA_DIR", str(default.data_dir))).resolve()
    source = _env_choice("TA_SOURCE", default.source, SOURCES)
    symbols = _env_symbols(default.symbols)
    executor = _env_choice("TA_EXECUTOR", default.executor, EXECUTORS)
    store = _env_choice("TA_STORE", default.store, STORES)
    lake_catalog, lake_data_path = _env_lake(store)
    return Settings(
        symbols=symbols,
        history_start=_env_date("TA_HISTORY_START", default.history_start, EARLIEST_HISTORY_START),
        data_dir=data_dir,
        models_dir=Path(_env("TA_MODELS_DIR", str(default.models_dir))).resolve(),
        duckdb_path=Path(_env("TA_DUCKDB_PATH", str(data_dir / default.duckdb_path.name))).resolve(),
        store=store,
        lake_catalog=lake_catalog or None,
        lake_data_path=Path(lake_data_path).resolve() if lake_data_path else None,
        source=source,
        **_env_source_options(default),
        **_env_partition_checks(default),
        policy=read_record(PromotionPolicy),
        costs=read_record(CostPolicy),
        alert_webhook_url=_env_url("TA_ALERT_WEBHOOK_URL"),
        executor=executor,
        dask_scheduler=_env("TA_DASK_SCHEDULER", "") or None,
        retrain_cron=_env("TA_RETRAIN_CRON", default.retrain_cron),
        **_env_training(default),
        dagster_home=Path(_env("DAGSTER_HOME", str(default.dagster_home))),
    )


def _env_choice(name: str, default: str, choices: tuple[str, ...]) -> str:
    """One of `choices`."""
    value = _env(name, default)
    if value not in choices:
        raise SettingsError(f"{name}={value!r}: expected one of {', '.join(choices)}")
    return value


def _env_symbols(default: tuple[str, ...]) -> tuple[str, ...]:
    """TA_SYMBOLS: at least one symbol, comma-separated."""
    symbols = tuple(s.strip() for s in _env("TA_SYMBOLS", ",".join(default)).split(",") if s.strip())
    if not symbols:
        raise SettingsError("TA_SYMBOLS is empty: name at least one symbol, e.g. BTC-USD")
    return symbols


def _env_lake(store: str) -> tuple[str, str]:
    """The lake's catalog DSN and data path ("" when unset); both are needed when `store` is "ducklake"."""
    lake_catalog, lake_data_path = _env(LAKE_CATALOG_ENV, ""), _env("TA_LAKE_DATA_PATH", "")
    if store == "ducklake" and not (lake_catalog and lake_data_path):
        missing = [
            name
            for name, value in (("TA_LAKE_CATALOG", lake_catalog), ("TA_LAKE_DATA_PATH", lake_data_path))
            if not value
        ]
        raise SettingsError(
            f"TA_STORE=ducklake needs {' and '.join(missing)}: the lake's catalog DSN and data path"
        )
    return lake_catalog, lake_data_path


def _env_source_options(default: Settings) -> dict[str, Any]:
    """The market data source's settings: synthetic market, ccxt exchange and credentials, candle files."""
    files_dir = _env("TA_FILES_DIR", "")
    return {
        "synthetic_seed": _env_int("TA_SYNTHETIC_SEED", default.synthetic_seed),
        "synthetic_predictability": _env_float(
            "TA_SYNTHETIC_PREDICTABILITY", default.synthetic_predictability, 0.0, 0.95
        ),
        "synthetic_predictability_by_symbol": _env("TA_SYNTHETIC_PREDICTABILITY_BY_SYMBOL", "") or None,
        "ccxt_exchange": _env("TA_CCXT_EXCHANGE", default.ccxt_exchange),
        "ccxt_api_url": _env_url(CCXT_API_URL_ENV),
        "ccxt_timeout_ms": _env_int("TA_CCXT_TIMEOUT_MS", default.ccxt_timeout_ms, minimum=1),
        "ccxt_max_retries": _env_int("TA_CCXT_MAX_RETRIES", default.ccxt_max_retries, minimum=0),
        **{name: _env(variable, "") or None for name, variable in CCXT_CREDENTIAL_ENV.items()},
        "files_dir": Path(files_dir).resolve() if files_dir else None,
        "files_timezone": _env("TA_FILES_TIMEZONE", "") or None,
    }


def _env_partition_checks(default: Settings) -> dict[str, float]:
    """The thresholds of the data checks: invalid rows, coverage, freshness."""
    return {
        "max_invalid_share": _env_float("TA_MAX_INVALID_SHARE", default.max_invalid_share, 0.0, 1.0),
        "min_coverage": _env_float("TA_MIN_COVERAGE", default.min_coverage, 0.0, 1.0),
        "freshness_hours": _env_float(
            "TA_FRESHNESS_HOURS", default.freshness_hours, 0.0, 24.0 * 366, low_open=True
        ),
    }


def _env_training(default: Settings) -> dict[str, int]:
    """The training defaults: epochs, windows per epoch, trainings sharing the machine."""
    return {
        "train_epochs": _env_int("TA_TRAIN_EPOCHS", default.train_epochs, minimum=1),
        "train_samples_per_epoch": _env_int(
            "TA_TRAIN_SAMPLES_PER_EPOCH", default.train_samples_per_epoch, minimum=1
        ),
        "concurrent_trainings": _env_int("TA_CONCURRENT_TRAININGS", default.concurrent_trainings, minimum=1),
    }


def env_name(field_name: str) -> str:
    """The environment variable of a policy record's field."""
    return f"TA_{field_name.upper()}"


def read_record(record: type[R]) -> R:
    """A policy record from its TA_* variables (unset: the declared default); SettingsError naming the
    variable when a value is outside the declared bounds or of the wrong kind."""
    given = {
        name: os.environ[env_name(name)].strip()
        for name in record.model_fields
        if os.environ.get(env_name(name), "").strip()
    }
    try:
        return record.model_validate(given)
    except ValidationError as error:
        first = error.errors()[0]
        name = str(first["loc"][0])
        raise SettingsError(
            f"environment variable {env_name(name)}={given.get(name)!r}: {first['msg']}"
        ) from None


def settings_rows() -> list[tuple[str, str, str]]:
    """(variable, default, meaning) of every setting: the policy records' fields, then the others."""
    rows = []
    for record in POLICY_RECORDS:
        for name, info in record.model_fields.items():
            bounds = _bounds_text(info.metadata)
            rows.append((env_name(name), _default_text(info.default), f"{info.description}{bounds}"))
    rows += [(name, "", meaning) for name, meaning in ENVIRONMENT_VARIABLES.items()]
    rows += [(variable, "", "ccxt credential (never logged)") for variable in CCXT_CREDENTIAL_ENV.values()]
    return rows


def settings_table() -> str:
    """The settings table of docs/settings.md, generated from the declarations."""
    lines = ["| variable | default | meaning |", "| --- | --- | --- |"]
    lines += [f"| `{name}` | {default} | {meaning} |" for name, default, meaning in settings_rows()]
    return "\n".join(lines)


def _default_text(value: object) -> str:
    return "venue's" if value is None else f"`{str(value).lower() if isinstance(value, bool) else value}`"


def _bounds_text(metadata: list) -> str:
    symbols = {"gt": ">", "ge": ">=", "lt": "<", "le": "<="}
    parts = [
        f"{symbols[key]} {getattr(item, key)}" for item in metadata for key in symbols if hasattr(item, key)
    ]
    return f" ({', '.join(parts)})" if parts else ""


def export_dagster_home(home: Path) -> None:
    """Point Dagster (`DagsterInstance.get()`) and every process started from here at `home`."""
    os.environ["DAGSTER_HOME"] = str(home)
