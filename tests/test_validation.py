"""One wording for pydantic errors: field paths as written in the input, no pydantic internals."""

from __future__ import annotations

from typing import Annotated, Any

import pytest
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    TypeAdapter,
    ValidationError,
)

from cds_service.rules.model import Condition
from cds_service.validation import FieldError, field_errors
from cds_service.wire.contexts import hook_spec
from cds_service.wire.response import Card

SECRET = "Jane Doe 1948-05-02"


def _reject(value: str) -> str:
    raise ValueError("must not be this value")


class Entry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    resource: dict[str, Any]


class Bundle(BaseModel):
    entry: list[Entry]


class Example(BaseModel):
    model_config = ConfigDict(extra="forbid")

    draft_orders: Bundle = Field(alias="draftOrders")
    version: StrictInt | Annotated[str, Field(min_length=1)]
    code: Annotated[str, AfterValidator(_reject)] | None = None
    count: int = 0


def errors_of(model: Any, data: Any, prefix: str = "") -> list[FieldError]:
    with pytest.raises(ValidationError) as raised:
        model.model_validate(data)
    return field_errors(raised.value, prefix)


def test_each_kind_of_error_is_worded_one_way() -> None:
    data = {
        "draftOrders": {"entry": [{"resourceX": SECRET}, {"resource": SECRET}]},
        "version": [SECRET],
        "code": SECRET,
        "count": SECRET,
        "unknown": SECRET,
    }
    found = [str(e) for e in errors_of(Example, data, prefix="context")]
    assert found == [
        # a key not known beside a required one it resembles: one mistake, said once
        "context.draftOrders.entry[0].resourceX: is not a known key (did you mean 'resource'?)",
        "context.draftOrders.entry[1].resource: Input should be a valid dictionary",
        # a union's members (`int`, `constrained-str`) are not levels of the input
        "context.version: Input should be a valid integer",
        "context.version: Input should be a valid string",
        # a validator's own message, without pydantic's "Value error, "
        "context.code: must not be this value",
        "context.count: Input should be a valid integer, unable to parse string as an integer",
        "context.unknown: is not a known key",
    ]
    assert not any(SECRET in text or "pydantic.dev" in text for text in found)


def test_union_members_and_model_names_are_left_out() -> None:
    with pytest.raises(ValidationError) as raised:
        Example.model_validate({"draftOrders": [], "version": 1})
    [bundle] = field_errors(raised.value)
    assert (bundle.field, bundle.message, bundle.loc) == (
        "draftOrders",
        "Input should be an object",  # not "... or instance of Bundle"
        ("draftOrders",),
    )
    with pytest.raises(ValidationError) as nested:
        TypeAdapter(Condition).validate_python({"all": [{"id": "a", "fhirpath": 3}]})
    errors = field_errors(nested.value)
    texts = [str(e) for e in errors]
    # pydantic tried each member of the condition union (LeafCondition, AllOf, ...) at each
    # level; only the member the author meant is reported (it knows `id` and `fhirpath`)
    assert texts == ["all[0].fhirpath: Input should be a valid string"]
    with pytest.raises(ValidationError) as misspelt:
        TypeAdapter(Condition).validate_python({"all": [{"id": "a", "fhirPath": "true"}]})
    assert [str(e) for e in field_errors(misspelt.value)] == [
        "all[0].fhirPath: is not a known key (did you mean 'fhirpath'?)"
    ]


def test_the_hook_context_errors_name_the_wire_field() -> None:
    spec = hook_spec("order-sign")
    assert spec is not None
    orders = {"resourceType": "Bundle", "entry": [{"resource": 3}]}
    context = {"userId": "Practitioner/1", "patientId": "p1", "draftOrders": orders}
    [error] = errors_of(spec.context, context, prefix="context")
    assert str(error) == (
        "context.draftOrders: Bundle.entry[0].resource must be a FHIR resource (a JSON object)"
    )


def test_field_names_that_are_also_type_names_stay() -> None:
    card: dict[str, Any] = {"summary": "s", "indicator": "info", "source": {"label": "l"}}
    card["links"] = [{"label": "x", "url": "relative", "type": "absolute"}]
    assert [str(e) for e in errors_of(Card, card)] == ["links[0].url: must be an absolute URL"]


def test_error_details_from_fastapi_are_worded_alike() -> None:
    details: list[dict[str, Any]] = [
        {"type": "missing", "loc": ("since",), "msg": "Field required"},
        {"type": "value_error", "loc": ("limit", 0), "msg": "Value error, too many"},
    ]
    assert [str(e) for e in field_errors(details)] == ["since: is required", "limit[0]: too many"]
