"""The OpenAPI document: FastAPI's paths, completed with the CDS Hooks wire schemas.

Routes read their bodies themselves (to enforce size, depth and media type before parsing), so
FastAPI cannot infer the request and response schemas; they are attached here from the pydantic
wire models. `openapi/cds-service.openapi.json` is generated from this and checked for drift.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic.json_schema import models_json_schema

from cds_service.wire.discovery import DiscoveryResponse
from cds_service.wire.feedback import FeedbackBatch
from cds_service.wire.request import HookRequest
from cds_service.wire.response import CDSResponse
from cds_service.workbench.api_models import DraftBody, EvaluateBody

__all__ = ["build_openapi", "install_openapi"]

_REF = "#/components/schemas/{model}"
_OUTCOME = {
    "title": "OperationOutcome",
    "description": "A FHIR R4 OperationOutcome; `issue[].expression` names the offending field.",
    "type": "object",
    "required": ["resourceType", "issue"],
    "properties": {
        "resourceType": {"const": "OperationOutcome"},
        "issue": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["severity", "code"],
                "properties": {
                    "severity": {"type": "string"},
                    "code": {"type": "string"},
                    "diagnostics": {"type": "string"},
                    "expression": {"type": "array", "items": {"type": "string"}},
                },
            },
        },
    },
}
_RECEIPT = {
    "title": "FeedbackReceipt",
    "type": "object",
    "required": ["received", "stored"],
    "properties": {
        "received": {"type": "integer", "description": "feedback items in the request"},
        "stored": {"type": "integer", "description": "items not already recorded"},
    },
}
_ERRORS = {
    "400": "Malformed body, context, prefetch or feedback",
    "404": "Unknown service",
    "412": "Required data could not be obtained from prefetch or the FHIR server",
    "413": "Body larger than the configured limit",
    "415": "Body is not application/json",
}


def _json(ref: str) -> dict[str, Any]:
    return {"content": {"application/json": {"schema": {"$ref": _REF.format(model=ref)}}}}


def build_openapi(app: FastAPI) -> dict[str, Any]:
    """Generate the complete document (deterministic, so it can be committed and diffed)."""
    doc = get_openapi(
        title=app.title, version=app.version, description=app.description, routes=app.routes
    )
    _, defs = models_json_schema(
        [
            (HookRequest, "validation"),
            (FeedbackBatch, "validation"),
            (CDSResponse, "serialization"),
            (DiscoveryResponse, "serialization"),
            (DraftBody, "validation"),
            (EvaluateBody, "validation"),
        ],
        by_alias=True,
        ref_template=_REF,
    )
    schemas = doc.setdefault("components", {}).setdefault("schemas", {})
    schemas.update(defs.get("$defs", {}))
    schemas["OperationOutcome"] = _OUTCOME
    schemas["FeedbackReceipt"] = _RECEIPT
    paths = doc["paths"]
    errors = {
        code: {"description": text, **_json("OperationOutcome")} for code, text in _ERRORS.items()
    }
    paths["/cds-services"]["get"]["responses"] = {
        "200": {"description": "The services offered", **_json("DiscoveryResponse")}
    }
    hook = paths["/cds-services/{service_id}"]["post"]
    hook["requestBody"] = {"required": True, **_json("HookRequest")}
    hook["responses"] = {
        "200": {"description": "Cards (possibly none)", **_json("CDSResponse")},
        **errors,
    }
    fb = paths["/cds-services/{service_id}/feedback"]["post"]
    fb["requestBody"] = {"required": True, **_json("FeedbackBatch")}
    fb["responses"] = {
        "200": {"description": "Feedback recorded", **_json("FeedbackReceipt")},
        **{k: v for k, v in errors.items() if k != "412"},
    }
    for path, model in WORKBENCH_BODIES.items():
        operation = paths[path]["post"]
        operation["requestBody"] = {"required": True, **_json(model)}
        operation["responses"] = {
            "200": operation["responses"]["200"],
            **{k: v for k, v in errors.items() if k in ("400", "413", "415")},
            "403": {
                "description": "Not an author, or no X-CSRF-Token",
                **_json("OperationOutcome"),
            },
        }
    return doc


#: The workbench's playground operations and their bodies (read with `parse_body`, so listed here).
WORKBENCH_BODIES = {
    "/workbench/api/playground/lint": "DraftBody",
    "/workbench/api/playground/test": "DraftBody",
    "/workbench/api/playground/simulate": "DraftBody",
    "/workbench/api/playground/evaluate": "EvaluateBody",
}


def install_openapi(app: FastAPI) -> None:
    """Serve the completed document at /openapi.json."""
    cached: dict[str, Any] = {}

    def openapi() -> dict[str, Any]:
        if not cached:
            cached.update(build_openapi(app))
        return cached

    app.openapi = openapi  # type: ignore[method-assign]
