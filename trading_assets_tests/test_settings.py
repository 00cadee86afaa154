"""Settings refuse nonsense in one line that names the variable."""

import pytest

from trading_assets.settings import (
    CCXT_CREDENTIAL_ENV,
    ENVIRONMENT_VARIABLES,
    Settings,
    SettingsError,
    load_settings,
)


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("TA_MIN_ACCURACY", "5", "TA_MIN_ACCURACY='5' is outside (0.5, 1]"),
        ("TA_MIN_ACCURACY", "0.5", "TA_MIN_ACCURACY='0.5' is outside (0.5, 1]"),
        ("TA_MIN_ACCURACY", "nan", "TA_MIN_ACCURACY='nan' is outside (0.5, 1]"),
        ("TA_MAX_CALIBRATION_ERROR", "0", "TA_MAX_CALIBRATION_ERROR='0' is outside (0, 1)"),
        ("TA_MAX_CALIBRATION_ERROR", "1", "TA_MAX_CALIBRATION_ERROR='1' is outside (0, 1)"),
        ("TA_MAX_INVALID_SHARE", "-1", "TA_MAX_INVALID_SHARE='-1' is outside [0, 1]"),
        ("TA_MIN_COVERAGE", "1.5", "TA_MIN_COVERAGE='1.5' is outside [0, 1]"),
        ("TA_MIN_COVERAGE", "most", "TA_MIN_COVERAGE='most' is not a number"),
        ("TA_SYNTHETIC_PREDICTABILITY", "1", "TA_SYNTHETIC_PREDICTABILITY='1' is outside [0, 0.95]"),
        ("TA_FRESHNESS_HOURS", "0", "TA_FRESHNESS_HOURS='0' is outside (0, 8784]"),
        ("TA_HISTORY_START", "2099-01-01", "TA_HISTORY_START='2099-01-01' is outside 2009-01-01 to today"),
        ("TA_HISTORY_START", "2008-12-31", "TA_HISTORY_START='2008-12-31' is outside 2009-01-01 to today"),
        ("TA_HISTORY_START", "last tuesday", "TA_HISTORY_START='last tuesday' is not a date (YYYY-MM-DD)"),
        ("TA_TRAIN_EPOCHS", "0", "TA_TRAIN_EPOCHS='0' must be at least 1"),
        ("TA_TRAIN_SAMPLES_PER_EPOCH", "-5", "TA_TRAIN_SAMPLES_PER_EPOCH='-5' must be at least 1"),
        ("TA_CONCURRENT_TRAININGS", "two", "TA_CONCURRENT_TRAININGS='two' is not an integer"),
        ("TA_CCXT_TIMEOUT_MS", "0", "TA_CCXT_TIMEOUT_MS='0' must be at least 1"),
        ("TA_CCXT_MAX_RETRIES", "-1", "TA_CCXT_MAX_RETRIES='-1' must be at least 0"),
        (
            "TA_ALERT_WEBHOOK_URL",
            "file:///etc/passwd",
            "TA_ALERT_WEBHOOK_URL='file:///etc/passwd': only http",
        ),
        ("TA_ALERT_WEBHOOK_URL", "data:,x", "TA_ALERT_WEBHOOK_URL='data:,x': only http"),
        ("TA_ALERT_WEBHOOK_URL", "ftp://h/x", "TA_ALERT_WEBHOOK_URL='ftp://h/x': only http"),
        ("TA_CCXT_API_URL", "ftp://me:secret@h/", "TA_CCXT_API_URL='ftp://***@h/': only http"),
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
        ("TA_MIN_ACCURACY", "1", "min_accuracy", 1.0),
        ("TA_MAX_INVALID_SHARE", "0", "max_invalid_share", 0.0),
        ("TA_MIN_COVERAGE", "1", "min_coverage", 1.0),
        ("TA_CCXT_MAX_RETRIES", "0", "ccxt_max_retries", 0),
        ("TA_ALERT_WEBHOOK_URL", "https://hooks.example/T1", "alert_webhook_url", "https://hooks.example/T1"),
    ],
)
def test_values_at_the_edges_of_their_range_are_accepted(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, field: str, loaded: object
) -> None:
    monkeypatch.setenv(variable, value)
    assert getattr(load_settings(), field) == loaded


def test_an_empty_environment_gives_the_field_defaults_of_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [*ENVIRONMENT_VARIABLES, *CCXT_CREDENTIAL_ENV.values()]:
        monkeypatch.delenv(name, raising=False)
    assert load_settings() == Settings()


def test_ccxt_credentials_are_read_but_never_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TA_CCXT_API_KEY", "key-7f3a9")
    monkeypatch.setenv("TA_CCXT_PASSWORD", "pass-92c1e")
    settings = load_settings()
    assert (settings.ccxt_api_key, settings.ccxt_secret, settings.ccxt_password) == (
        "key-7f3a9",
        None,
        "pass-92c1e",
    )
    assert "key-7f3a9" not in repr(settings) and "pass-92c1e" not in repr(settings)
