"""HTTP helpers shared by auth.py and export.py: origins, secure transport, Retry-After, redaction.

The access token is only ever sent to one origin (scheme, host, port) and, outside loopback, only
over https. URLs shown to people have signature-like query values replaced by ``REDACTED``
(pre-signed download URLs carry credentials in their query string).
"""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Protocol
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import httpx
import orjson

from cds_service.bulk.errors import BulkError

__all__ = [
    "TokenProvider",
    "TransportFailure",
    "check_token_target",
    "json_body",
    "origin",
    "parse_retry_after",
    "redact_url",
    "require_secure",
    "send",
]

_LOOPBACK = {"localhost", "127.0.0.1", "::1"}
_SECRET_PARAM_HINTS = ("signature", "token", "credential", "secret", "password")
_SECRET_PARAMS = {"sig", "code", "key"}


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


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds, or an HTTP-date after `now`);
    None if unusable."""
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
    return max((when - now).total_seconds(), 0.0)


def json_body(response: httpx.Response) -> Any:
    """The response's JSON body, or None when it has none or it is not JSON."""
    if not response.content:
        return None
    try:
        return orjson.loads(response.content)
    except orjson.JSONDecodeError:
        return None


class TokenProvider(Protocol):
    """What the export needs from an access-token source (`auth.TokenSource` is one)."""

    async def get(self) -> str: ...

    def invalidate(self) -> None: ...


class TransportFailure(BulkError):
    """The request never got an HTTP answer (connection refused, timeout, reset…)."""


def check_token_target(url: str, trusted: str) -> None:
    """BulkError unless the token may go to `url`: same origin as `trusted`, and secure."""
    if origin(url) != origin(trusted):
        raise BulkError(
            f"{redact_url(url)} is not on the FHIR server's origin; the access token is not sent"
        )
    require_secure(url, "a URL that receives the access token")


async def send(
    client: httpx.AsyncClient,
    method: str,
    url: str,
    *,
    headers: dict[str, str],
    token: TokenProvider | None,
    trusted: str,
) -> httpx.Response:
    """One request, with the bearer token when given (after a 401, once more with a new token).

    With a token, redirects are not followed and `url` must share `trusted`'s origin.
    """
    if token is not None:
        check_token_target(url, trusted)
    for attempt in (1, 2):
        request_headers = dict(headers)
        if token is not None:
            request_headers["Authorization"] = f"Bearer {await token.get()}"
        try:
            response = await client.request(
                method, url, headers=request_headers, follow_redirects=token is None
            )
        except httpx.HTTPError as exc:
            raise TransportFailure(
                f"{method} {redact_url(url)} failed ({type(exc).__name__})"
            ) from exc
        if response.status_code == 401 and token is not None and attempt == 1:
            token.invalidate()
            continue
        return response
    raise AssertionError("unreachable")
