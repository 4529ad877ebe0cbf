"""The one place errors become HTTP responses: a FHIR OperationOutcome for every error status.

Clients get a message naming the offending field, never a stack trace, an input value or a token.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Mapping

import orjson
from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cds_service.exceptions import CDSServiceError, Issue, TooManyRequests, Unauthorized
from cds_service.wire.outcome import issues_from_validation, operation_outcome

__all__ = ["CatchAllMiddleware", "install_error_handlers", "outcome_response"]

log = logging.getLogger(__name__)

_HTTP_ISSUE_CODES = {
    401: "login",
    403: "forbidden",
    404: "not-found",
    405: "not-supported",
    406: "not-supported",
    413: "too-costly",
    415: "not-supported",
}


def outcome_response(
    status: int, issues: list[Issue], headers: Mapping[str, str] | None = None
) -> Response:
    """An error response with an OperationOutcome body."""
    return Response(
        orjson.dumps(operation_outcome(issues)),
        status_code=status,
        media_type="application/json",
        headers=headers,
    )


async def _service_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, CDSServiceError)
    headers = {}
    if isinstance(exc, Unauthorized):
        headers["WWW-Authenticate"] = "Bearer"
    if isinstance(exc, TooManyRequests):
        headers["Retry-After"] = str(max(1, round(exc.retry_after)))
    return outcome_response(exc.status_code, exc.issues, headers=headers)


async def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    # FastAPI puts where the value came from first (`query`, `body`...); the name follows.
    details = [{**err, "loc": tuple(err.get("loc", ()))[1:]} for err in exc.errors()]
    return outcome_response(400, issues_from_validation(details))


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    code = _HTTP_ISSUE_CODES.get(exc.status_code, "processing")
    message = exc.detail if isinstance(exc.detail, str) else "request failed"
    if exc.status_code == 404:
        message = f"no such endpoint: {request.url.path}"
    return outcome_response(exc.status_code, [Issue(message, code=code)], headers=exc.headers)


class CatchAllMiddleware:
    """Turns any unexpected exception into a bare 500 OperationOutcome.

    Starlette's own last-resort handler re-raises so that the server logs the exception with
    its message, and a message may quote patient data. This middleware sits inside it and logs
    only the exception type and the stack (code locations), never the message.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def watch(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, watch)
        except Exception as exc:
            log.error(
                "unhandled %s on %s %s\n%s",
                type(exc).__name__,
                scope.get("method", ""),
                scope.get("path", ""),
                "".join(traceback.format_tb(exc.__traceback__)),
            )
            if not started:
                response = outcome_response(500, [Issue("internal error", code="exception")])
                await response(scope, receive, send)


def install_error_handlers(app: FastAPI) -> None:
    """Register every handler on the app."""
    app.add_exception_handler(CDSServiceError, _service_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_middleware(CatchAllMiddleware)
