"""URLs from the environment: which schemes are accepted, and the one redaction of credentials in them.

A URL may carry a password (`https://user:secret@proxy.example/`, as `TA_CCXT_API_URL` can). Before any
URL, or a message that may quote one (an exchange error names the URL it called), reaches a log, metadata,
run tags or an alert, it goes through `redact` here. No Dagster.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Annotated
from urllib.parse import unquote, urlsplit

from pydantic import AfterValidator
from pydantic_core import PydanticCustomError

#: The user-info part of any URL in a text: `scheme://user:password@` or `scheme://token@`.
_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)[^/\s@]+@")
REDACTED = "***@"
HTTP_SCHEMES = ("http", "https")


#: Secrets shorter than this are not searched for as plain text (it would blank out ordinary words).
MIN_SECRET_LENGTH = 4


def redact(text: str, secrets: Iterable[str | None] = ()) -> str:
    """`text` with the credentials of every URL in it replaced by `***`, and every one of `secrets` (of
    `MIN_SECRET_LENGTH` characters or more) wherever it appears, also outside a URL."""
    text = _USERINFO.sub(lambda match: match.group("scheme") + REDACTED, text)
    for secret in sorted({s for s in secrets if s and len(s) >= MIN_SECRET_LENGTH}, key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


def url_secrets(url: str | None) -> tuple[str, ...]:
    """The password of `url` as written and percent-decoded (empty when it has none), for `redact`."""
    if not url:
        return ()
    try:
        password = urlsplit(url).password
    except ValueError:
        return ()
    if not password:
        return ()
    return tuple({password, unquote(password)})


def redact_values(value: object) -> object:
    """`value` with every string inside it (dict keys and values, list items) redacted."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {redact_values(key): redact_values(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(redact_values(item) for item in value)
    return value


def require_http_url(variable: str, url: str) -> str:
    """`url` when it is an http(s) URL with a host, a valid port (if any) and no whitespace; otherwise a
    one-line ValueError naming `variable` (so a bad URL is refused when the settings load, not when an alert
    is first delivered)."""
    parts = urlsplit(url)
    if parts.scheme.lower() not in HTTP_SCHEMES or not parts.hostname:
        raise ValueError(
            f"{variable}={redact(url)!r}: only http:// or https:// URLs with a host are accepted"
        )
    if any(character.isspace() for character in url):
        raise ValueError(f"{variable}={redact(url)!r}: a URL may not contain whitespace")
    try:
        parts.port  # noqa: B018 (urlsplit checks the port only when it is read)
    except ValueError:
        raise ValueError(f"{variable}={redact(url)!r}: the port is not a number in 0..65535") from None
    return url


def _optional_http_url(url: str | None) -> str | None:
    """An optional http(s) URL for a declared setting; the refusal never shows the URL's password."""
    if url is None:
        return None
    try:
        return require_http_url("", url)
    except ValueError as error:
        raise PydanticCustomError("http_url", str(error).rpartition("': ")[2]) from None


#: An optional http(s) URL field of a declared record (the settings, the source options).
HttpUrl = Annotated[str | None, AfterValidator(_optional_http_url)]
