"""`POST /cds-services/{id}/feedback`: what clinicians did with our cards."""

from __future__ import annotations

import orjson
from fastapi import APIRouter
from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import Response

from cds_service.api.body import read_json_body
from cds_service.api.deps import StateDep
from cds_service.api.hooks import find_service
from cds_service.exceptions import RequestError
from cds_service.wire.feedback import FeedbackBatch
from cds_service.wire.outcome import issues_from_validation

__all__ = ["router"]

router = APIRouter()


@router.post(
    "/cds-services/{service_id}/feedback",
    summary="Report what happened to a service's cards",
    tags=["CDS Hooks"],
)
async def feedback(service_id: str, request: Request, state: StateDep) -> Response:
    """Validate the whole batch, then store it in one transaction; replays are stored once.

    Answers 200 with `{"received": n, "stored": m}` (`m < n` when some were already recorded).
    """
    service = find_service(state, service_id)
    settings = state.settings
    body = await read_json_body(
        request, max_bytes=settings.max_body_bytes, max_depth=settings.max_json_depth
    )
    try:
        batch = FeedbackBatch.model_validate(body)
    except ValidationError as exc:
        raise RequestError("invalid feedback", issues=issues_from_validation(exc)) from None
    assert state.feedback is not None
    result = await state.feedback.record(service.id, batch.feedback, received_at=state.clock())
    payload = {"received": result.received, "stored": result.stored}
    return Response(orjson.dumps(payload), media_type="application/json")
