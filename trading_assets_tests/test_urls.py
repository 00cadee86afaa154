import pytest

from trading_assets.urls import redact, redact_values, require_http_url


def test_redact_hides_user_info_of_every_url_and_keeps_the_rest() -> None:
    text = "GET http://user:secret@127.0.0.1:8080/x?a=b failed; retry https://token@hooks.example/T1 or http://plain/"
    assert redact(text) == (
        "GET http://***@127.0.0.1:8080/x?a=b failed; retry https://***@hooks.example/T1 or http://plain/"
    )
    assert redact_values({"k": ["ftp://a:b@c/", 3], "n": None}) == {"k": ["ftp://***@c/", 3], "n": None}


@pytest.mark.parametrize(
    "url", ["file:///etc/passwd", "data:,x", "ftp://host/x", "https://", "hooks.example"]
)
def test_require_http_url_refuses_other_schemes_in_one_line_naming_the_variable(url: str) -> None:
    with pytest.raises(ValueError) as refused:
        require_http_url("TA_ALERT_WEBHOOK_URL", url)
    message = str(refused.value)
    assert (
        message.startswith(f"TA_ALERT_WEBHOOK_URL={url!r}: only http:// or https://") and "\n" not in message
    )


def test_require_http_url_names_the_variable_without_its_password() -> None:
    with pytest.raises(ValueError, match=r"TA_CCXT_API_URL='ftp://\*\*\*@host/'"):
        require_http_url("TA_CCXT_API_URL", "ftp://me:secret@host/")
    assert require_http_url("TA_CCXT_API_URL", "https://me:secret@host/") == "https://me:secret@host/"


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("https://hooks.example:99999/T1", "the port is not a number"),
        ("https://hooks.example:http/T1", "the port is not a number"),
        ("https://hooks.example/T 1", "may not contain whitespace"),
    ],
)
def test_a_webhook_url_with_a_bad_port_or_a_space_is_refused_at_settings_load(
    url: str, why: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from trading_assets.settings import SettingsError, load_settings

    monkeypatch.setenv("TA_ALERT_WEBHOOK_URL", url)
    with pytest.raises(SettingsError, match=why) as refused:
        load_settings()
    assert str(refused.value).startswith("environment variable TA_ALERT_WEBHOOK_URL=") and "\n" not in str(
        refused.value
    )
