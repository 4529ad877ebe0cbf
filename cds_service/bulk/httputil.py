"""HTTP helpers shared by auth.py and export.py: origins, secure transport, Retry-After, redaction.

The access token is only ever sent to one origin (scheme, host, port) and, outside loopback, only
over https. URLs shown to people have signature-like query values replaced by ``REDACTED``
(pre-signed download URLs carry credentials in their query string).
"""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import httpx
import orjson

from cds_service.bulk.errors import BulkError

__all__ = [
    "json_body",
    "origin",
    "parse_retry_after",
    "redact_url",
    "require_secure",
]

_LOOPBACK = {"localhost", "127.0.0.1", "::1"}
_SECRET_PARAM_HINTS = ("signature", "token", "credential", "secret", "password")
_SECRET_PARAMS = {"sig", "se", "sp", "code", "key"}


def origin(url: str) -> tuple[str, str, int | None]:
    """(scheme, host, port) of an absolute URL; default ports made explicit."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    port = parts.port or {"http": 80, "https": 443}.get(scheme)
    return scheme, (parts.hostname or "").lower(), port


def require_secure(url: str, what: str) -> None:
    """Raise BulkError unless `url` is https, or http on a loopback host."""
    scheme, host, _ = origin(url)
    if scheme == "https" and host:
        return
    if scheme == "http" and host in _LOOPBACK:
        return
    raise BulkError(f"{what} must be an https URL (got {redact_url(url)!r})")


def redact_url(url: str) -> str:
    """`url` with credential-like query values replaced, for progress lines and messages."""
    parts = urlsplit(url)
    if not parts.query:
        return url
    pairs = []
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        lowered = name.lower()
        secret = lowered in _SECRET_PARAMS or any(h in lowered for h in _SECRET_PARAM_HINTS)
        pairs.append((name, "REDACTED" if secret else value))
    return urlunsplit(parts._replace(query=urlencode(pairs, safe="/,:")))


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP-date); None if unusable."""
    if value is None:
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        return max(seconds, 0.0) if seconds == seconds else None  # NaN is unusable
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max((when - (now or datetime.now(UTC))).total_seconds(), 0.0)


def json_body(response: httpx.Response) -> Any:
    """The response's JSON body, or None when it has none or it is not JSON."""
    if not response.content:
        return None
    try:
        return orjson.loads(response.content)
    except orjson.JSONDecodeError:
        return None
