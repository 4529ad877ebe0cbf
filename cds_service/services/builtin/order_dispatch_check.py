"""Order dispatch check: warns when a fulfillment Task does not point at a dispatched order.

When orders are sent to a performer, each fulfillment Task tells the performer *what* to do via
`Task.focus`; the order-dispatch hook definition says every Task SHALL reference one of the
dispatched orders. A Task that points elsewhere (or nowhere) means the performer may carry out
the wrong order or none, so the service shows a warning card listing the offending Tasks.
"""

from __future__ import annotations

import re
from typing import Any

from cds_service.services.builtin._fhir import card_source, resource_id
from cds_service.services.definition import HookCall, ServiceDefinition, ServiceResult
from cds_service.wire.contexts import OrderDispatchContext
from cds_service.wire.response import Card

__all__ = ["SERVICE"]

TITLE = "Order dispatch check"
_RELATIVE = re.compile(r"(?:^|/)([A-Z][A-Za-z]+/[^/]+?)(?:/_history/[^/]*)?$")


def _relative(reference: Any) -> str | None:
    """`ServiceRequest/1` from a relative, absolute or versioned reference."""
    if not isinstance(reference, str):
        return None
    match = _RELATIVE.search(reference.strip())
    return match.group(1) if match else None


def _focus(task: dict[str, Any]) -> str | None:
    focus = task.get("focus")
    return _relative(focus.get("reference")) if isinstance(focus, dict) else None


async def evaluate(call: HookCall) -> ServiceResult:
    context = call.context
    if not isinstance(context, OrderDispatchContext) or not context.fulfillment_tasks:
        return ServiceResult()
    dispatched = {ref for ref in map(_relative, context.dispatched_orders) if ref}
    offending = []
    for task in context.fulfillment_tasks:
        if task.get("resourceType") != "Task":
            continue
        focus = _focus(task)
        if focus not in dispatched:
            ident = resource_id(task)
            name = f"`Task/{ident}`" if ident else "A Task without an id"
            target = f"focuses on `{focus}`" if focus else "has no focus reference"
            offending.append(f"- {name} {target}")
    if not offending:
        return ServiceResult()
    listed = ", ".join(f"`{ref}`" for ref in context.dispatched_orders)
    detail = (
        f"Each fulfillment Task must reference one of the dispatched orders ({listed}):\n\n"
        + "\n".join(offending)
        + "\n\nCorrect the Task's focus before the performer acts on it."
    )
    card = Card(
        summary="Fulfillment task does not reference a dispatched order",
        detail=detail,
        indicator="warning",
        source=card_source(TITLE),
    )
    return ServiceResult(cards=[card])


SERVICE = ServiceDefinition(
    id="order-dispatch-check",
    title=TITLE,
    description="Checks that every fulfillment Task references one of the dispatched orders.",
    hooks=("order-dispatch",),
    evaluate=evaluate,
)
