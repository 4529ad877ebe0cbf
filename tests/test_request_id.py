"""`RequestIdMiddleware` on raw ASGI messages: the caller's well-formed `X-Request-Id` (the last
one sent) or a new one, on every log line of the request and once in the response."""

from __future__ import annotations

import re
from typing import Any

import pytest

from cds_service.logs import RequestIdMiddleware, request_id
from tests.asgi import exchange, responding


def through(sent: list[tuple[bytes, bytes]], app_sets: bytes | None = None) -> tuple[str, Any]:
    """The request id the app saw, and the response's headers."""
    seen: list[str | None] = []
    answer = responding([(b"x-request-id", app_sets)] if app_sets is not None else [])

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(request_id.get())
        await answer(scope, receive, send)

    messages = exchange(RequestIdMiddleware(app), {"headers": sent})
    (during,) = seen
    assert during is not None
    return during, messages[0]["headers"]


@pytest.mark.parametrize(
    ("sent", "kept"),
    [
        ([(b"x-request-id", b"trace-123")], "trace-123"),
        ([(b"x-request-id", b"first"), (b"x-request-id", b"second")], "second"),
        ([(b"accept", b"*/*"), (b"x-request-id", b"a.b_c-9")], "a.b_c-9"),
    ],
)
def test_a_well_formed_id_is_kept(sent: list[tuple[bytes, bytes]], kept: str) -> None:
    during, headers = through(sent)
    assert during == kept
    assert [v for k, v in headers if k == b"x-request-id"] == [kept.encode()]


@pytest.mark.parametrize("sent", [[], [(b"x-request-id", b"bad id\n")], [(b"x-request-id", b"")]])
def test_a_new_id_otherwise_once_in_the_response_even_if_the_app_set_one(
    sent: list[tuple[bytes, bytes]],
) -> None:
    during, headers = through(sent, app_sets=b"the-apps")
    assert re.fullmatch(r"[0-9a-f]{32}", during)
    assert [v for k, v in headers if k.lower() == b"x-request-id"] == [during.encode()]
