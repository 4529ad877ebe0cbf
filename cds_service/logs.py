"""Structured (JSON) logs that carry ids, never secrets or patient data.

Every line is one JSON object: `time`, `level`, `logger`, `message` and any ids passed with
`extra=` (`hookInstance`, `tenant`, `service`, `hook`, `status`, `durationMs`, `requestId`…).
What the code logs is reviewed to hold no PHI; as a second line of defence the formatter blanks
anything shaped like a JWT or a bearer token, and the OAuth values of a logged URL (authorization
code, state, tokens, launch id), before it is written.
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["JsonFormatter", "RequestIdMiddleware", "log_config", "redact", "request_id"]

request_id: ContextVar[str | None] = ContextVar("request_id", default=None)
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")

_JWT = re.compile(r"eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*")
_BEARER = re.compile(r"(?i)\bbearer\s+[A-Za-z0-9._~+/=-]{8,}")
# OAuth values in a logged URL (uvicorn's access log of /smart/callback, /workbench/callback):
# an authorization code, the state, or a token, whatever the parameter order.
_OAUTH_PARAMS = re.compile(
    r"([?&](?:code|state|session_state|id_token|access_token|refresh_token|launch)=)[^&\s\"']+"
)
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "color_message"}


def redact(text: str) -> str:
    """Blank JWTs, bearer tokens and OAuth values in query strings."""
    text = _BEARER.sub("Bearer [redacted]", _JWT.sub("[redacted-jwt]", text))
    return _OAUTH_PARAMS.sub(r"\1[redacted]", text)


class JsonFormatter(logging.Formatter):
    """One JSON object per record."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        current = request_id.get()
        if current is not None:
            out["requestId"] = current
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_") and value is not None:
                out[key] = value if isinstance(value, int | float | bool) else redact(str(value))
        if record.exc_info and record.exc_info[0] is not None:
            out["exception"] = record.exc_info[0].__name__  # never the message: it may hold PHI
        return json.dumps(out, ensure_ascii=False)


class RequestIdMiddleware:
    """Give every request an id (the caller's `X-Request-Id` when well-formed), put it on every
    log line of the request and echo it in the response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        sent = b""
        for name, header in scope.get("headers") or ():
            if name == b"x-request-id":  # the last one, as a dict of the headers would keep
                sent = header
        text = sent.decode("latin-1")
        value = text if _REQUEST_ID.match(text) else uuid.uuid4().hex
        token = request_id.set(value)
        echoed = (b"x-request-id", value.encode("latin-1"))

        async def tag(message: Message) -> None:
            if message["type"] == "http.response.start":  # ours replaces any the app set
                kept = [(k, v) for k, v in message.get("headers") or () if k.lower() != echoed[0]]
                message["headers"] = [*kept, echoed]
            await send(message)

        try:
            await self.app(scope, receive, tag)
        finally:
            request_id.reset(token)


def log_config(level: str) -> dict[str, Any]:
    """A `logging.config.dictConfig` for the service and uvicorn, all as JSON on stderr."""
    handler = {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": "cds_service.logs.JsonFormatter"}},
        "handlers": {"default": handler},
        "root": {"handlers": ["default"], "level": level.upper()},
        "loggers": {
            "uvicorn": {"handlers": ["default"], "level": level.upper(), "propagate": False},
            "uvicorn.error": {"level": level.upper()},
            "uvicorn.access": {"handlers": ["default"], "level": level.upper(), "propagate": False},
            "httpx": {"level": "WARNING"},  # request lines would repeat FHIR URLs per fetch
        },
    }
