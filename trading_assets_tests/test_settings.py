"""Settings refuse nonsense in one line that names the variable."""

import re

import pytest

from trading_assets.ml.policy import POLICY_RECORDS
from trading_assets.settings import (
    ENVIRONMENT_VARIABLES,
    PROJECT_ROOT,
    Settings,
    SettingsError,
    env_name,
    load_settings,
    settings_rows,
    settings_table,
)
from trading_assets.store.duckdb_store import LakeStore


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("TA_MIN_ACCURACY", "5", "TA_MIN_ACCURACY='5': Input should be less than or equal to 1"),
        ("TA_MIN_ACCURACY", "0.5", "TA_MIN_ACCURACY='0.5': Input should be greater than 0.5"),
        ("TA_MIN_ACCURACY", "nan", "TA_MIN_ACCURACY='nan': Input should be"),
        ("TA_MAX_CALIBRATION_ERROR", "0", "TA_MAX_CALIBRATION_ERROR='0': Input should be greater than 0"),
        ("TA_MAX_CALIBRATION_ERROR", "1", "TA_MAX_CALIBRATION_ERROR='1': Input should be less than 1"),
        (
            "TA_MIN_SKILL_MARGIN",
            "-0.1",
            "TA_MIN_SKILL_MARGIN='-0.1': Input should be greater than or equal to 0",
        ),
        ("TA_FOLDS", "1", "TA_FOLDS='1': Input should be greater than or equal to 2"),
        ("TA_FOLDS", "four", "TA_FOLDS='four': Input should be a valid integer"),
        ("TA_FEE_BPS", "-1", "TA_FEE_BPS='-1': Input should be greater than or equal to 0"),
        ("TA_ALLOW_SHORT", "maybe", "TA_ALLOW_SHORT='maybe': Input should be a valid boolean"),
        (
            "TA_MAX_INVALID_SHARE",
            "-1",
            "TA_MAX_INVALID_SHARE='-1': Input should be greater than or equal to 0",
        ),
        ("TA_MIN_COVERAGE", "1.5", "TA_MIN_COVERAGE='1.5': Input should be less than or equal to 1"),
        ("TA_MIN_COVERAGE", "most", "TA_MIN_COVERAGE='most': Input should be a valid number"),
        (
            "TA_SYNTHETIC_PREDICTABILITY",
            "1",
            "TA_SYNTHETIC_PREDICTABILITY='1': Input should be less than or equal to 0.95",
        ),
        ("TA_FRESHNESS_HOURS", "0", "TA_FRESHNESS_HOURS='0': Input should be greater than 0"),
        (
            "TA_HISTORY_START",
            "2099-01-01",
            "TA_HISTORY_START='2099-01-01': Date should be from 2009-01-01 to today",
        ),
        (
            "TA_HISTORY_START",
            "2008-12-31",
            "TA_HISTORY_START='2008-12-31': Date should be from 2009-01-01 to today",
        ),
        ("TA_HISTORY_START", "last tuesday", "TA_HISTORY_START='last tuesday': Input should be a valid date"),
        ("TA_TRAIN_EPOCHS", "0", "TA_TRAIN_EPOCHS='0': Input should be greater than or equal to 1"),
        (
            "TA_TRAIN_SAMPLES_PER_EPOCH",
            "-5",
            "TA_TRAIN_SAMPLES_PER_EPOCH='-5': Input should be greater than or equal to 1",
        ),
        ("TA_CONCURRENT_TRAININGS", "two", "TA_CONCURRENT_TRAININGS='two': Input should be a valid integer"),
        ("TA_CCXT_TIMEOUT_MS", "0", "TA_CCXT_TIMEOUT_MS='0': Input should be greater than or equal to 1"),
        ("TA_CCXT_MAX_RETRIES", "-1", "TA_CCXT_MAX_RETRIES='-1': Input should be greater than or equal to 0"),
        (
            "TA_ALERT_WEBHOOK_URL",
            "file:///etc/passwd",
            "TA_ALERT_WEBHOOK_URL='file:///etc/passwd': only http",
        ),
        ("TA_ALERT_WEBHOOK_URL", "data:,x", "TA_ALERT_WEBHOOK_URL='data:,x': only http"),
        ("TA_ALERT_WEBHOOK_URL", "ftp://h/x", "TA_ALERT_WEBHOOK_URL='ftp://h/x': only http"),
        ("TA_CCXT_API_URL", "ftp://me:secret@h/", "TA_CCXT_API_URL='ftp://***@h/': only http"),
        ("TA_SYMBOLS", " , ", "TA_SYMBOLS=' , ': Value should have at least 1 item"),
        ("TA_SOURCE", "csv", "TA_SOURCE='csv': Input should be 'synthetic', 'ccxt' or 'files'"),
        (
            "TA_EXECUTOR",
            "celery",
            "TA_EXECUTOR='celery': Input should be 'in_process', 'multiprocess' or 'dask'",
        ),
        ("TA_STORE", "sqlite", "TA_STORE='sqlite': Input should be 'duckdb' or 'ducklake'"),
    ],
)
def test_a_bad_setting_is_refused_in_one_line_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, expected: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError) as refused:
        load_settings()
    message = str(refused.value)
    assert message.startswith(f"environment variable {expected}") and "\n" not in message
    assert "secret" not in message


@pytest.mark.parametrize(
    ("variable", "value", "field", "loaded"),
    [
        ("TA_MIN_ACCURACY", "1", "policy.min_accuracy", 1.0),
        ("TA_FOLDS", "12", "policy.folds", 12),
        ("TA_FEE_BPS", "0", "costs.fee_bps", 0.0),
        ("TA_ALLOW_SHORT", "true", "costs.allow_short", True),
        ("TA_MAX_INVALID_SHARE", "0", "max_invalid_share", 0.0),
        ("TA_MIN_COVERAGE", "1", "min_coverage", 1.0),
        ("TA_CCXT_MAX_RETRIES", "0", "source_options.ccxt_max_retries", 0),
        ("TA_ALERT_WEBHOOK_URL", "https://hooks.example/T1", "alert_webhook_url", "https://hooks.example/T1"),
    ],
)
def test_values_at_the_edges_of_their_range_are_accepted(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, field: str, loaded: object
) -> None:
    monkeypatch.setenv(variable, value)
    record, _, name = field.rpartition(".")
    settings = load_settings()
    assert getattr(getattr(settings, record) if record else settings, name) == loaded


def test_an_empty_environment_gives_the_field_defaults_of_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, _, _ in settings_rows():
        monkeypatch.delenv(name, raising=False)
    assert load_settings() == Settings()


def test_every_setting_the_package_reads_is_documented_as_declared() -> None:
    """The docs' settings table (docs/settings.md) is the one generated from the declarations
    (`settings_table`), and every TA_* name written anywhere in the package is one of its rows."""
    page = (PROJECT_ROOT / "docs" / "settings.md").read_text()
    assert settings_table() in page, "docs/settings.md's table differs: paste `trading-assets settings`"
    documented = {name for name, _, _ in settings_rows()}
    written = set()
    for path in (PROJECT_ROOT / "trading_assets").rglob("*.py"):
        written |= set(re.findall(r"\bTA_[A-Z0-9_]*[A-Z0-9]\b", path.read_text()))
    assert written <= documented, f"undocumented: {sorted(written - documented)}"
    assert {env_name(name) for record in POLICY_RECORDS for name in record.model_fields} <= documented
    rows = settings_rows()
    assert len(documented) == len(rows), "a variable is declared twice"
    assert not [name for name, _, meaning in rows if not meaning or meaning.startswith("None")], "no help"


def test_each_help_line_renders_the_declared_default_and_bounds() -> None:
    assert ENVIRONMENT_VARIABLES["TA_CCXT_TIMEOUT_MS"] == (
        "per-request timeout of the ccxt source, milliseconds (>= 1) (default 10000)"
    )
    assert ENVIRONMENT_VARIABLES["TA_FEE_BPS"].endswith("(>= 0.0, <= 1000.0) (default venue's)")
    assert ENVIRONMENT_VARIABLES["DAGSTER_HOME"].endswith("(default <project>/dagster_home)")
    assert (
        ENVIRONMENT_VARIABLES["TA_SOURCE"]
        == "market data source (one of synthetic, ccxt, files) (default synthetic)"
    )


def test_ccxt_credentials_are_read_but_never_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TA_CCXT_API_KEY", "key-7f3a9")
    monkeypatch.setenv("TA_CCXT_PASSWORD", "pass-92c1e")
    settings = load_settings()
    options = settings.source_options
    assert (options.ccxt_api_key, options.ccxt_secret, options.ccxt_password) == (
        "key-7f3a9",
        None,
        "pass-92c1e",
    )
    assert "key-7f3a9" not in repr(settings) and "pass-92c1e" not in repr(settings)


def test_the_store_setting_chooses_the_file_or_a_lake_and_never_shows_the_catalog_password(
    monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:
    for name in ("TA_STORE", "TA_LAKE_CATALOG", "TA_LAKE_DATA_PATH"):
        monkeypatch.delenv(name, raising=False)
    settings = load_settings()
    assert settings.store_location == settings.duckdb_path
    monkeypatch.setenv("TA_STORE", "ducklake")
    with pytest.raises(SettingsError, match="^TA_STORE=ducklake needs TA_LAKE_CATALOG and TA_LAKE_DATA_PATH"):
        load_settings()
    catalog = "dbname=ta_lake host=db.internal user=ta password=hunter2"
    monkeypatch.setenv("TA_LAKE_CATALOG", catalog)
    monkeypatch.setenv("TA_LAKE_DATA_PATH", str(tmp_path / "lake"))
    lake = load_settings().store_location
    assert lake == LakeStore(catalog, str(tmp_path / "lake"))
    assert "hunter2" not in repr(load_settings()) + repr(lake) + str(lake)
