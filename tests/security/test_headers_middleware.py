"""`SecurityHeadersMiddleware` on raw ASGI messages: every header added once, a route's own
value kept (whatever the case of its name), X-Frame-Options left off the framed SMART pages."""

from __future__ import annotations

from typing import Any

from cds_service.security.headers import HEADERS, SecurityHeadersMiddleware
from tests.asgi import exchange, responding


def send_through(path: str, own: list[tuple[bytes, bytes]], *, hsts: bool) -> list[Any]:
    app = SecurityHeadersMiddleware(responding(list(own), b"{}"), hsts=hsts)
    return exchange(app, {"path": path})


def test_each_header_is_added_once_and_a_routes_own_value_is_kept() -> None:
    own = [(b"Content-Security-Policy", b"default-src 'self'"), (b"content-type", b"text/html")]
    start, body = send_through("/cds-services", own, hsts=True)
    headers = start["headers"]
    names = [name.lower() for name, _ in headers]
    assert len(names) == len(set(names))  # no header twice
    assert (b"Content-Security-Policy", b"default-src 'self'") in headers
    for name, value in HEADERS.items():
        if name != "Content-Security-Policy":
            assert (name.lower().encode(), value.encode()) in headers
    assert dict(headers)[b"strict-transport-security"].startswith(b"max-age=")
    assert body == {"type": "http.response.body", "body": b"{}"}


def test_the_smart_pages_may_be_framed_and_hsts_is_only_where_asked() -> None:
    (start, _) = send_through("/smart/launch", [], hsts=False)
    names = {name for name, _ in start["headers"]}
    assert b"x-frame-options" not in names
    assert b"strict-transport-security" not in names
    assert b"x-content-type-options" in names
