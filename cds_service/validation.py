"""pydantic validation errors as (field, message) pairs, worded one way wherever they are shown.

Every place that turns a pydantic `ValidationError` into text goes through `field_errors`: the
issues of an HTTP 400, a rule or rule-test file's `path:line:col: field: message`, the tenants
file, the settings, a rule's rendered card. So an EHR developer, a rule author and an operator
read the same wording:

- the field is a path into the input as the caller wrote it, `context.draftOrders.entry[0]`;
  the steps pydantic adds to a location (the member of a union it tried, `int`,
  `constrained-str`, `LeafCondition`, a validator's `function-after[...]`) are left out;
- a missing field "is required", an unknown one "is not a known key"; a value that is not an
  object "Input should be an object" (pydantic names its model class there); otherwise
  pydantic's message, without its "Value error, " prefix;
- input values and documentation URLs are never shown (they may hold patient data or tokens);
- the same (field, message) pair is listed once (a union's members often fail alike).

>>> from pydantic import BaseModel
>>> class Port(BaseModel):
...     port: int
>>> try:
...     Port.model_validate({"port": "eighty"})
... except ValidationError as exc:
...     [str(e) for e in field_errors(exc, "settings")]
['settings.port: Input should be a valid integer, unable to parse string as an integer']
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from pydantic import BaseModel, ValidationError

from cds_service.suggest import did_you_mean

__all__ = ["FieldError", "error_message", "field_errors", "field_path"]

Loc = tuple[int | str, ...]

# The names pydantic-core gives the members of a union it tried, for the scalar types our unions
# hold (compound ones carry brackets, `list[str]`, `function-after[...]`, and models their class
# name). Names that are also field names somewhere (`url`, `date`, `any`) are deliberately absent.
_CORE_LABELS: Final = frozenset(
    {
        "bool",
        "bytes",
        "constrained-bytes",
        "constrained-decimal",
        "constrained-float",
        "constrained-int",
        "constrained-str",
        "datetime",
        "float",
        "int",
        "str",
    }
)
_PREFIXES: Final = ("Value error, ", "Assertion failed, ")
_MESSAGES: Final = {
    "missing": "is required",
    "extra_forbidden": "is not a known key",
    "model_type": "Input should be an object",
    "model_attributes_type": "Input should be an object",
    "dataclass_type": "Input should be an object",
}


@dataclass(frozen=True, slots=True)
class FieldError:
    """One problem: `field` is the path of the offending member ("" for the whole input),
    `loc` the same path as parts (to look up a line and column in a YAML file)."""

    field: str
    message: str
    loc: Loc = ()

    def __str__(self) -> str:
        return f"{self.field}: {self.message}" if self.field else self.message


def field_path(loc: Sequence[int | str], prefix: str = "") -> str:
    """`("draftOrders", "entry", 0)` with prefix `context` → `context.draftOrders.entry[0]`."""
    path = prefix
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif part:
            path = f"{path}.{part}" if path else part
    return path


def error_message(detail: Mapping[str, Any]) -> str:
    """The message of one pydantic error detail, worded as described in the module docstring."""
    fixed = _MESSAGES.get(str(detail.get("type", "")))
    if fixed is not None:
        return fixed
    message = str(detail.get("msg", "is invalid"))
    for prefix in _PREFIXES:
        message = message.removeprefix(prefix)
    return message


def field_errors(
    error: ValidationError | Iterable[Mapping[str, Any]], prefix: str = ""
) -> list[FieldError]:
    """One `FieldError` per distinct problem, in pydantic's order.

    `error` is a ValidationError or its error details (as FastAPI's RequestValidationError
    gives them); `prefix` names where the validated value sits, e.g. `context`.
    """
    details = (
        error.errors(include_input=False, include_url=False)
        if isinstance(error, ValidationError)
        else error
    )
    labels = _model_names()
    out: dict[tuple[str, str], FieldError] = {}
    for detail in _best_branches(list(details), 0, labels):
        loc = tuple(p for p in detail.get("loc", ()) if not _is_label(p, labels))
        item = FieldError(field_path(loc, prefix), error_message(detail), loc)
        out.setdefault((item.field, item.message), item)
    return _misspelt(list(out.values()))


_UNKNOWN, _REQUIRED = _MESSAGES["extra_forbidden"], _MESSAGES["missing"]


def _best_branches(
    details: list[Mapping[str, Any]], start: int, labels: frozenset[str]
) -> list[Mapping[str, Any]]:
    """Where a value matched no member of a union, the errors of the member the author most
    likely meant: pydantic reports every member's (a misspelt `fhirPath:` in a condition gave
    18 errors, most of them about `all`, `any` and `not`). The member meant is the one the value
    is of the right type for, that knows every key given, and lacks the fewest."""
    kept: list[Mapping[str, Any]] = []
    branches: dict[Loc, dict[str, list[Mapping[str, Any]]]] = {}
    for detail in details:
        loc = tuple(detail.get("loc", ()))
        at = next((i for i in range(start, len(loc)) if _is_label(loc[i], labels)), None)
        if at is None:
            kept.append(detail)
        else:
            branches.setdefault(loc[:at], {}).setdefault(str(loc[at]), []).append(detail)
    for prefix, members in branches.items():
        depth = len(prefix)
        ranked = sorted(members.values(), key=lambda errors: _rank(errors, depth))
        if _rank(ranked[0], depth)[0]:  # of none of the types: say which ones were expected
            kept += [e for errors in ranked for e in _best_branches(errors, depth + 1, labels)]
        else:
            kept += _best_branches(ranked[0], depth + 1, labels)
    order = {id(detail): n for n, detail in enumerate(details)}
    return sorted(kept, key=lambda detail: order[id(detail)])


def _rank(errors: list[Mapping[str, Any]], depth: int) -> tuple[int, int, int, int]:
    """How far a union member is from what was written (lower is closer): the value of another
    type, then keys it does not know, then keys it lacks, then how many errors in all."""
    here = [e for e in errors if len(e.get("loc", ())) == depth + 1]
    wrong_type = sum(1 for e in here if e.get("type") not in ("missing", "extra_forbidden"))
    children = [e for e in errors if len(e.get("loc", ())) == depth + 2]
    unknown = sum(1 for e in children if e.get("type") == "extra_forbidden")
    missing = sum(1 for e in children if e.get("type") == "missing")
    return (wrong_type, unknown, missing, len(errors))


def _misspelt(errors: list[FieldError]) -> list[FieldError]:
    """A key not known beside a required one it resembles is one mistake, not several: the
    unknown key says which it meant ("fhirPath: is not a known key (did you mean 'fhirpath'?)")
    and the required keys of that object are not listed (a union's other members ask for
    theirs too: `all`, `any`, `not`)."""
    required: dict[Loc, list[str]] = {}
    for item in errors:
        if item.message == _REQUIRED and item.loc and isinstance(item.loc[-1], str):
            required.setdefault(item.loc[:-1], []).append(item.loc[-1])
    meant: dict[Loc, str] = {}
    for item in errors:
        if item.message == _UNKNOWN and item.loc and isinstance(item.loc[-1], str):
            close = did_you_mean(item.loc[-1], required.get(item.loc[:-1], []), limit=1)
            if close:
                meant[item.loc] = close[0]
    if not meant:
        return errors
    parents = {loc[:-1] for loc in meant}
    kept = []
    for item in errors:
        if item.loc in meant:
            kept.append(
                FieldError(item.field, f"{_UNKNOWN} (did you mean '{meant[item.loc]}'?)", item.loc)
            )
        elif not (item.message == _REQUIRED and item.loc[:-1] in parents):
            kept.append(item)
    return kept


def _is_label(part: int | str, model_names: frozenset[str]) -> bool:
    if isinstance(part, int):
        return False
    return "[" in part or part in _CORE_LABELS or part in model_names


def _model_names() -> frozenset[str]:
    # A union of models is labelled with the member's class name: ours are the only ones whose
    # names can appear (third-party models, e.g. FHIR resources, are never union members here),
    # and limiting the set to them keeps a key such as a prefetch name "Patient" in the path.
    names: set[str] = set()
    pending: list[type[BaseModel]] = [BaseModel]
    while pending:
        for sub in pending.pop().__subclasses__():
            pending.append(sub)
            if sub.__module__.startswith("cds_service."):
                names.add(sub.__name__)
    return frozenset(names)
