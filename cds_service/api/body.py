"""Reading a JSON request body safely: media type, size limit, depth limit, parse errors.

The body is streamed and counted, so a client cannot make us buffer more than
`CDS_MAX_BODY_BYTES` whatever `Content-Length` claims (or when it sends none).
"""

from __future__ import annotations

from typing import Any, TypeVar
from urllib.parse import parse_qsl

import orjson
from pydantic import BaseModel, ValidationError
from starlette.requests import Request

from cds_service.config import Settings
from cds_service.exceptions import Issue, PayloadTooLarge, RequestError, UnsupportedMediaType
from cds_service.jsondepth import json_depth_exceeds
from cds_service.wire.outcome import issues_from_validation

__all__ = ["parse_body", "read_json_body", "read_small_form"]


Model = TypeVar("Model", bound=BaseModel)


async def parse_body(request: Request, settings: Settings, model: type[Model], what: str) -> Model:
    """Read the JSON body within the configured limits and validate it as `model`.

    Raises RequestError ("invalid <what>") with one issue per bad field.
    """
    body = await read_json_body(
        request, max_bytes=settings.max_body_bytes, max_depth=settings.max_json_depth
    )
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        raise RequestError(f"invalid {what}", issues=issues_from_validation(exc)) from None


_JSON_TYPES = ("application/json", "application/fhir+json")


async def read_json_body(request: Request, *, max_bytes: int, max_depth: int) -> Any:
    """Return the parsed JSON body or raise the error that names what is wrong with it."""
    media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media_type not in _JSON_TYPES:
        shown = media_type or "none"
        raise UnsupportedMediaType(
            f"Content-Type must be application/json (got {shown})",
            issues=[
                Issue(
                    f"Content-Type must be application/json (got {shown})",
                    "Content-Type",
                    "not-supported",
                )
            ],
        )
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise _too_large(max_bytes)
    chunks = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise _too_large(max_bytes)
        chunks.append(chunk)
    raw = b"".join(chunks)
    if not raw.strip():
        raise RequestError("the request body is empty; a JSON object is required")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        message = f"the request body is not valid JSON: {exc.msg} at position {exc.pos}"
        raise RequestError(message) from None
    if not isinstance(body, dict):
        raise RequestError("the request body must be a JSON object")
    if json_depth_exceeds(raw, max_depth):
        raise RequestError(f"the request body is nested deeper than {max_depth} levels")
    return body


def _too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"the request body is larger than the limit of {limit} bytes")


#: The largest form our pages post (a CSRF token and a few fields).
MAX_FORM_BYTES = 4096


async def read_small_form(request: Request) -> dict[str, str]:
    """A small urlencoded form (our pages' own): anything else, or anything larger than
    `MAX_FORM_BYTES`, reads as empty, so it fails the CSRF check like a forged post."""
    if not request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        return {}
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            return {}
    return dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
