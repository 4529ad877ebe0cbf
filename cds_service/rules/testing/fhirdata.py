"""Test data is FHIR: the resources a rule test gives, validated as FHIR R4.

A case's prefetch, its context's resources (`draftOrders`, ...) and its mock FHIR server's
answers are what an EHR would send; a fixture that no EHR could send (`birthDate: '"1959-02-09"'`,
`valueQuantiy`) tests nothing. The service itself does not validate resources on the hot path
(`cds_service.wire.fhir` says why); the planner does it here, once per distinct resource, with the
`fhir.resources` R4B models (the closest to R4 installed: the elements rules read are the same).

Problems are reported as an informaticist reads them, the element's FHIR path and what is wrong
(`Patient.birthDate: '"1959-02-09"' is not a FHIR date (YYYY, YYYY-MM or YYYY-MM-DD)`), never as
pydantic's, and each carries its path inside the value so the planner can locate it in the YAML.
"""

from __future__ import annotations

import difflib
import json
import typing
from dataclasses import dataclass
from functools import cache
from typing import Any

from pydantic import BaseModel, ValidationError

__all__ = ["FhirDataChecker", "FhirProblem"]

Loc = tuple[str | int, ...]

# What a value of each primitive type looks like, after "is not a FHIR <type>".
_PRIMITIVE_HINTS = {
    "date": " (YYYY, YYYY-MM or YYYY-MM-DD)",
    "dateTime": " (YYYY, YYYY-MM, YYYY-MM-DD, or YYYY-MM-DDThh:mm:ss with a time zone)",
    "instant": " (YYYY-MM-DDThh:mm:ss with a time zone)",
    "time": " (hh:mm:ss)",
    "decimal": " (a number)",
    "integer": " (a whole number)",
    "integer64": " (a whole number)",
    "positiveInt": " (a whole number, 1 or more)",
    "unsignedInt": " (a whole number, 0 or more)",
    "boolean": " (true or false)",
    "code": " (a string without leading, trailing or repeated whitespace)",
    "id": " (1-64 letters, digits, '-' and '.')",
    "string": " (a string)",
    "markdown": " (a string)",
    "uri": " (a string)",
    "url": " (a string)",
    "canonical": " (a string)",
}
_PYTHON_PRIMITIVES = {bool: "boolean", int: "integer", float: "decimal", str: "string"}
MAX_SHOWN = 60  # characters of a bad value quoted in a message


@dataclass(frozen=True, slots=True)
class FhirProblem:
    """A problem in a resource: where (a path into the value given) and what."""

    path: Loc
    message: str


@dataclass(frozen=True, slots=True)
class _Element:
    """What the walk along an error's location found."""

    path: Loc  # into the data: the keys and indexes that exist, plus a missing/unknown key
    fhir_path: str  # `Observation.code.coding[0].code`
    model: type[BaseModel] | None  # the element's model (complex type or resource), if any
    parent: type[BaseModel] | None  # the model the element's name belongs to
    primitive: str | None  # the element's FHIR primitive type, if it is one
    is_list: bool


@cache
def _model_class(resource_type: str) -> type[BaseModel] | None:
    from fhir.resources.R4B import get_fhir_model_class

    try:
        found: type[BaseModel] = get_fhir_model_class(resource_type)
    except (KeyError, ValueError, ImportError, AttributeError):
        return None
    return found


@cache
def _fields(model: type[BaseModel]) -> dict[str, Any]:
    """A model's fields by their JSON name (the alias: `class`, `_birthDate`)."""
    return {(f.alias or name): f for name, f in model.model_fields.items()}


def _element_type(annotation: Any) -> tuple[type[BaseModel] | None, str | None, bool]:
    """(model, primitive type, is a list) of a field's annotation."""
    is_list = False
    stack = [annotation]
    while stack:
        current = stack.pop()
        if current is type(None):
            continue
        klass = getattr(current, "get_model_klass", None)
        if klass is not None:
            return klass(), None, is_list
        if isinstance(current, type) and issubclass(current, BaseModel):
            return current, None, is_list
        if isinstance(current, type) and current in _PYTHON_PRIMITIVES:
            return None, _PYTHON_PRIMITIVES[current], is_list
        origin = typing.get_origin(current)
        if origin is list:
            is_list = True
        if origin is typing.Annotated:
            for meta in current.__metadata__:
                name = getattr(meta, "__visit_name__", None)
                if isinstance(name, str):
                    return None, name, is_list
        stack.extend(typing.get_args(current))
    return None, None, is_list


def _walk(value: dict[str, Any], loc: tuple[Any, ...]) -> _Element:
    """Follow a pydantic error location through the data and the models it validated against."""
    data: Any = value
    path: list[str | int] = []
    model = _model_class(value["resourceType"])
    fhir_path = str(value["resourceType"])
    parent: type[BaseModel] | None = None
    primitive: str | None = None
    is_list = False
    for part in loc:
        if isinstance(part, int) and isinstance(data, list) and 0 <= part < len(data):
            data = data[part]
            fhir_path += f"[{part}]"
        elif isinstance(part, str) and isinstance(data, dict) and part != "root":
            field = _fields(model).get(part) if model is not None else None
            parent = model
            if field is not None:
                model, primitive, is_list = _element_type(field.annotation)
            else:
                model, primitive, is_list = None, None, False
            data = data.get(part)
            fhir_path += f".{part}"
        else:  # a validator's tag in the location, not an element
            continue
        path.append(part)
        if isinstance(data, dict) and isinstance(data.get("resourceType"), str):
            model = _model_class(data["resourceType"])  # a contained resource
            fhir_path = data["resourceType"]
    return _Element(tuple(path), fhir_path, model, parent, primitive, is_list)


def _kind(value: Any) -> str:
    """A JSON value as a message names it: `an object`, `a list`, `'text'`, `3`."""
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a list"
    text = f"'{value}'" if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= MAX_SHOWN else text[: MAX_SHOWN - 4] + "...'"


def _choices(message: str) -> str:
    start, end = message.find("["), message.rfind("]")
    names = message[start + 1 : end].replace("'", "").split(", ") if 0 <= start < end else []
    return " or ".join(names)


def _message(error: Any, element: _Element) -> str:
    kind = error["type"]
    where = element.fhir_path
    given = error.get("input")
    if kind == "extra_forbidden":
        name = str(element.path[-1]) if element.path else ""
        known = list(_fields(element.parent)) if element.parent is not None else []
        close = difflib.get_close_matches(name, known, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        return f"{where}: not an element of {where.rsplit('.', 1)[0]}{hint}"
    if kind in ("missing", "model_field_validation.missing"):
        return f"{where}: required, but missing"
    text = str(error.get("msg", "")).removeprefix("Value error, ")
    if "Expect any of field value from this list" in text:
        return f"{where}: one of {_choices(text)} is required"
    if "but got multiple" in text:
        return f"{where}: only one of {_choices(text)} may be given"
    if element.is_list and not isinstance(given, list):
        return f"{where}: must be a list (the element repeats), not {_kind(given)}"
    if element.primitive is not None:
        hint = _PRIMITIVE_HINTS.get(element.primitive, "")
        return f"{where}: {_kind(given)} is not a FHIR {element.primitive}{hint}"
    if element.model is not None and not isinstance(given, dict):
        name = getattr(element.model, "__resource_type__", None) or element.model.__name__
        return f"{where}: must be a FHIR {name} (an object), not {_kind(given)}"
    return f"{where}: {text}"


class FhirDataChecker:
    """Validates resources as FHIR R4; each distinct resource (by content) is validated once."""

    def __init__(self) -> None:
        self._seen: dict[str, tuple[FhirProblem, ...]] = {}

    def problems(self, value: Any) -> tuple[FhirProblem, ...]:
        """What is wrong with `value` as a FHIR resource (a Bundle's entries included)."""
        if not isinstance(value, dict):
            return (FhirProblem((), f"must be a FHIR resource (an object), not {_kind(value)}"),)
        try:
            key = json.dumps(value, sort_keys=True, default=str)
        except (TypeError, ValueError):  # a key that is not a string: not FHIR JSON
            return (FhirProblem((), "not a FHIR resource: its keys must be strings"),)
        found = self._seen.get(key)
        if found is None:
            found = self._seen[key] = self._validate(value)
        return found

    def _validate(self, value: dict[str, Any]) -> tuple[FhirProblem, ...]:
        resource_type = value.get("resourceType")
        if not isinstance(resource_type, str):
            return (FhirProblem((), "not a FHIR resource: it has no resourceType"),)
        model = _model_class(resource_type)
        if model is None:
            message = f"'{resource_type}' is not a FHIR R4 resource type"
            return (FhirProblem(("resourceType",), message),)
        problems: dict[tuple[Loc, str], None] = {}
        entries = value.get("entry") if resource_type == "Bundle" else None
        if isinstance(entries, list):
            # The Bundle without its entries' resources, then each resource on its own: a
            # resource several Bundles hold is validated once, and one of an unknown type
            # does not hide the others' problems.
            shell = [
                {k: v for k, v in e.items() if k != "resource"} if isinstance(e, dict) else e
                for e in entries
            ]
            problems.update(dict.fromkeys(_model_problems(model, {**value, "entry": shell})))
            for index, entry in enumerate(entries):
                if isinstance(entry, dict) and "resource" in entry:
                    for problem in self.problems(entry["resource"]):
                        at = ("entry", index, "resource", *problem.path)
                        problems.setdefault((at, problem.message), None)
        else:
            problems.update(dict.fromkeys(_model_problems(model, value)))
        return tuple(FhirProblem(path, message) for path, message in problems)


def _model_problems(model: type[BaseModel], value: dict[str, Any]) -> list[tuple[Loc, str]]:
    """The problems validating `value` against `model` finds, distinct, in pydantic's order."""
    try:
        model.model_validate(value)
    except ValidationError as exc:
        found: dict[tuple[Loc, str], None] = {}
        for error in exc.errors(include_url=False):
            element = _walk(value, tuple(error.get("loc", ())))
            found.setdefault((element.path, _message(error, element)), None)
        return list(found)
    except (TypeError, ValueError, LookupError, AttributeError) as exc:  # fhir.resources' own
        return [((), f"{value['resourceType']}: cannot be read as FHIR ({exc})")]
    return []
