"""The one settings module: every environment variable the project reads is read here.

Each setting is one declared field: its default (one that runs the offline demo on a fresh machine), its
bounds, its help and its variable, `TA_<FIELD>` (`env_name`; a field may declare another, as `dagster_home`
does). The fields of the core's option records are declared where the core owns them (`SourceOptions` in
market/sources.py, `TrainConfig` in ml/config.py, `PromotionPolicy` and `CostPolicy` in ml/policy.py) and
`Settings` takes them from there (`declared`, or a whole record as one field). `load_settings` reads the
variables with pydantic-settings; `settings_table` renders docs/settings.md's table from the same fields.
"""

from __future__ import annotations

import dataclasses
import os
import typing
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    Field,
    ValidationError,
    create_model,
    model_validator,
)
from pydantic.dataclasses import dataclass
from pydantic.fields import FieldInfo
from pydantic_core import PydanticCustomError
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from trading_assets.market.sources import SourceOptions
from trading_assets.market.synthetic import (
    DEFAULT_SYNTHETIC_PREDICTABILITY as DEFAULT_SYNTHETIC_PREDICTABILITY,
)
from trading_assets.market.venues import source_fee_bps
from trading_assets.ml.config import TrainConfig
from trading_assets.ml.policy import CostPolicy, PromotionPolicy, resolved
from trading_assets.urls import HttpUrl, redact

if TYPE_CHECKING:
    from trading_assets.store.duckdb_store import Store

PROJECT_ROOT = Path(__file__).resolve().parent.parent
EXECUTORS = ("in_process", "multiprocess", "dask")
STORES = ("duckdb", "ducklake")
#: Earliest accepted TA_HISTORY_START: no crypto market traded before 2009.
EARLIEST_HISTORY_START = date(2009, 1, 1)
#: The DuckDB file's name in the data directory (unless TA_DUCKDB_PATH says otherwise).
DUCKDB_FILE = "trading_assets.duckdb"


class SettingsError(ValueError):
    """A setting from the environment that cannot be used; the message is one line naming the variable."""


def env_name(field_name: str) -> str:
    """The environment variable of a setting's field (unless the field declares another)."""
    return f"TA_{field_name.upper()}"


#: Settings that may carry a secret (a password in a URL or DSN, a credential): passed on (to Dagster) by
#: variable name only.
CCXT_API_URL_ENV = env_name("ccxt_api_url")
LAKE_CATALOG_ENV = env_name("lake_catalog")
CCXT_CREDENTIAL_ENV = {name: env_name(name) for name in ("ccxt_api_key", "ccxt_secret", "ccxt_password")}


def declared(record: type, name: str, **overrides: Any) -> Any:
    """The field `name` of a core option record (a dataclass whose fields declare `help` and `bounds`
    metadata: `TrainConfig`) as a pydantic field: its default, help, bounds, repr."""
    option = {option.name: option for option in dataclasses.fields(record)}[name]
    given = {"description": option.metadata["help"], "repr": option.repr, **option.metadata["bounds"]}
    return Field(option.default, **{**given, **overrides})


def _comma_separated(value: object) -> object:
    return (
        tuple(part.strip() for part in value.split(",") if part.strip()) if isinstance(value, str) else value
    )


def _from_2009_to_today(day: date) -> date:
    today = datetime.now(UTC).date()
    if not EARLIEST_HISTORY_START <= day <= today:
        raise PydanticCustomError(
            "date_range",
            "Date should be from {earliest} to today ({today})",
            {"earliest": EARLIEST_HISTORY_START.isoformat(), "today": today.isoformat()},
        )
    return day


Symbols = Annotated[tuple[str, ...], NoDecode, BeforeValidator(_comma_separated), Field(min_length=1)]
HistoryDay = Annotated[date, AfterValidator(_from_2009_to_today)]
ResolvedPath = Annotated[Path, AfterValidator(Path.resolve)]


def _in_data_dir(given: dict[str, Any]) -> Path:
    return given["data_dir"] / DUCKDB_FILE


@dataclass(frozen=True)
class Settings:
    symbols: Symbols = Field(("BTC-USD", "ETH-USD", "SOL-USD"), description="the symbols, comma-separated")
    history_start: HistoryDay = Field(
        date(2023, 11, 10),
        description=f"first UTC day of the date partitions, YYYY-MM-DD, {EARLIEST_HISTORY_START} to today",
    )
    data_dir: ResolvedPath = Field(PROJECT_ROOT / "data", description="runtime data directory")
    models_dir: ResolvedPath = Field(PROJECT_ROOT / "models", description="model artifact directory")
    duckdb_path: ResolvedPath = Field(
        default_factory=_in_data_dir,
        description="the DuckDB file of TA_STORE=duckdb",
        json_schema_extra={"unset": f"`<TA_DATA_DIR>/{DUCKDB_FILE}`"},
    )
    #: "duckdb" (the file `duckdb_path`) or "ducklake" (`lake_catalog` + `lake_data_path`): see `store_location`
    store: Literal[STORES] = Field(
        "duckdb",
        description="the store: duckdb, the embedded file TA_DUCKDB_PATH (one host), or ducklake, a DuckLake of "
        "TA_LAKE_CATALOG and TA_LAKE_DATA_PATH (several hosts)",
    )
    lake_catalog: str | None = Field(
        None,
        repr=False,  # may carry password=
        description="TA_STORE=ducklake: libpq DSN of the PostgreSQL database holding the lake's catalog, e.g. "
        "dbname=ta_lake host=db.internal user=ta (a password: PGPASSWORD or ~/.pgpass; never logged)",
    )
    lake_data_path: ResolvedPath | None = Field(
        None,
        description="TA_STORE=ducklake: directory of the lake's Parquet files, mounted at the same path on "
        "every host",
    )
    #: the market data source and its options (each field a TA_* setting, declared in market/sources.py)
    source_options: SourceOptions = Field(default_factory=SourceOptions)
    max_invalid_share: float = Field(
        0.01, ge=0.0, le=1.0, description="share of invalid rows above which a partition fails"
    )
    min_coverage: float = Field(
        0.95, ge=0.0, le=1.0, description="coverage below which the coverage check warns"
    )
    freshness_hours: float = Field(
        48.0, gt=0.0, le=24.0 * 366, description="the latest partition must be younger than this many hours"
    )
    #: the deployment's promotion policy and trading costs (each field a TA_* setting, declared in ml/policy.py)
    policy: PromotionPolicy = Field(default_factory=PromotionPolicy)
    costs: CostPolicy = Field(default_factory=CostPolicy)
    alert_webhook_url: HttpUrl = Field(
        None, description="optional http(s) webhook (Slack-compatible JSON POST) for alerts"
    )
    executor: Literal[EXECUTORS] = Field("multiprocess", description="step executor of the code location")
    dask_scheduler: str | None = Field(
        None, description="address of the Dask scheduler for TA_EXECUTOR=dask, e.g. tcp://127.0.0.1:8786"
    )
    retrain_cron: str = Field(
        "0 3 * * 1",
        description="cadence of automatic model retraining, a cron string in UTC (weekly: Monday 03:00)",
    )
    train_epochs: int = declared(
        TrainConfig,
        "max_epochs",
        description="maximum epochs of a model run (its run config may say otherwise)",
    )
    train_samples_per_epoch: int = declared(
        TrainConfig,
        "samples_per_epoch",
        description="training windows sampled per epoch of a model run (its run config may say otherwise)",
    )
    concurrent_trainings: int = declared(
        TrainConfig,
        "concurrent_trainings",
        description="trainings sharing this machine's cores outside Dagster (thread budget)",
    )
    dagster_home: Path = Field(
        PROJECT_ROOT / "dagster_home",
        description="Dagster instance directory of the demo",
        json_schema_extra={"env": "DAGSTER_HOME"},
    )

    @model_validator(mode="after")
    def _a_lake_needs_its_catalog_and_data_path(self) -> Settings:
        missing = [env_name(name) for name in ("lake_catalog", "lake_data_path") if not getattr(self, name)]
        if self.store == "ducklake" and missing:
            raise PydanticCustomError(
                "lake",
                "TA_STORE=ducklake needs {missing}: the lake's catalog DSN and data path",
                {"missing": " and ".join(missing)},
            )
        return self

    @property
    def store_location(self) -> Store:
        """Where the tables live: the embedded DuckDB file, or the DuckLake when `store` is "ducklake"."""
        if self.store == "ducklake":
            from trading_assets.store.duckdb_store import LakeStore  # duckdb loads only where a store is used

            assert self.lake_catalog and self.lake_data_path, "Settings refuses a lake without them"
            return LakeStore(self.lake_catalog, str(self.lake_data_path))
        return self.duckdb_path

    @property
    def alerts_dir(self) -> Path:
        return self.data_dir / "alerts"

    def costs_in_force(self) -> CostPolicy:
        """The costs with an unset fee replaced by the venue's (the source's stated fee, or ccxt's table)."""
        return resolved(
            self.costs, source_fee_bps(self.source_options.source, self.source_options.ccxt_exchange)
        )


def load_settings() -> Settings:
    """Settings from the environment, the declared defaults for whatever is unset (or empty); SettingsError
    (one line naming the variable) for a value out of bounds or of the wrong kind."""
    try:
        return _read(Settings)
    except ValidationError as error:
        raise SettingsError(_one_line(error)) from None


def _fields(record: type) -> dict[str, FieldInfo]:
    """The declared fields of `Settings` (a pydantic dataclass) or of a policy record (a pydantic model)."""
    return record.model_fields if issubclass(record, BaseModel) else record.__pydantic_fields__


def _is_record(annotation: object) -> bool:
    """A field that is a record of its own (`policy`, `costs`): each of its fields is a setting."""
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def variable(name: str, info: FieldInfo) -> str:
    """The environment variable of the field `name`: `TA_<NAME>`, or the `env` it declares."""
    extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
    return str(extra.get("env", env_name(name)))


class _Environment(BaseSettings):
    """Reads each field from its variable only (exact name); an empty variable counts as unset."""

    model_config = SettingsConfigDict(case_sensitive=True, env_ignore_empty=True, str_strip_whitespace=True)


def _read(record: type) -> Any:
    """`record` from the environment: its records field by field, its other fields by pydantic-settings."""
    fields = _fields(record)
    records = {name: _read(info.annotation) for name, info in fields.items() if _is_record(info.annotation)}
    reader = create_model(
        f"{record.__name__}FromEnvironment",
        __base__=_Environment,
        **{
            name: (info.annotation, FieldInfo.merge_field_infos(info, validation_alias=variable(name, info)))
            for name, info in fields.items()
            if name not in records
        },
    )
    return record(**dict(reader()), **records)


def _one_line(error: ValidationError) -> str:
    """The first problem: `environment variable <VARIABLE>='value': what is wrong` (a URL's password redacted)."""
    first = next(e for e in error.errors() if e["type"] != "default_factory_not_called")
    if not first["loc"]:
        return first["msg"]
    return f"environment variable {first['loc'][0]}={redact(str(first['input']))!r}: {first['msg']}"


def settings_rows() -> list[tuple[str, str, str]]:
    """(variable, default, meaning) of every setting, in the order `Settings` declares them."""
    return list(_rows(Settings))


def _rows(record: type) -> Iterator[tuple[str, str, str]]:
    for name, info in _fields(record).items():
        if _is_record(info.annotation):
            yield from _rows(info.annotation)  # type: ignore[arg-type]
        else:
            yield variable(name, info), _default_text(info), _meaning(info)


def settings_table() -> str:
    """The settings table of docs/settings.md, rendered from the declarations."""
    lines = ["| variable | default | meaning |", "| --- | --- | --- |"]
    cell = str.maketrans({"|": "\\|"})  # a | in a meaning would end its cell
    lines += [
        f"| `{name}` | {default} | {meaning.translate(cell)} |" for name, default, meaning in settings_rows()
    ]
    return "\n".join(lines)


def _default_text(info: FieldInfo) -> str:
    """The declared default as the table shows it; an unset one as the field says (`unset` when silent)."""
    extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
    value = None if info.default_factory is not None else info.default
    if value is None:
        return str(extra.get("unset", "unset"))
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, tuple):
        return f"`{','.join(value)}`"
    if isinstance(value, Path) and value.is_relative_to(PROJECT_ROOT):
        return f"`<project>/{value.relative_to(PROJECT_ROOT)}`"
    return f"`{value}`"


def _meaning(info: FieldInfo) -> str:
    """The help, then the declared choices or bounds: `(one of a, b)`, `(> 0.5, <= 1.0)`."""
    choices = typing.get_args(info.annotation) if typing.get_origin(info.annotation) is Literal else ()
    symbols = {"gt": ">", "ge": ">=", "lt": "<", "le": "<="}
    bounds = [
        f"{symbols[key]} {getattr(item, key)}"
        for item in info.metadata
        for key in symbols
        if hasattr(item, key)
    ]
    shown = f"one of {', '.join(choices)}" if choices else ", ".join(bounds)
    return f"{info.description}{f' ({shown})' if shown else ''}"


#: The help line of each variable: its meaning, bounds and default, rendered from its declaration.
ENVIRONMENT_VARIABLES = {
    name: f"{meaning} (default {default.strip('`')})" for name, default, meaning in settings_rows()
}


def export_dagster_home(home: Path) -> None:
    """Point Dagster (`DagsterInstance.get()`) and every process started from here at `home`."""
    os.environ["DAGSTER_HOME"] = str(home)
