"""Where the FHIRPath rules may use differs from what fhirpathpy 2.2.4 evaluates.

The HL7 FHIRPath R4 suite (tests/fhirpath_suite, report in docs/fhirpath-conformance.md) finds
fhirpathpy wrong in places rules reach. Each such place is either fixed or refused when a rule
loads, so a rule never meets it at request time:

- fixed: date/dateTime arithmetic and comparison (`rules/fhirdates.py`), and `toString()` of
  booleans (`true`, not `True`) and of dates/dateTimes (the value as written, not reformatted
  through dateutil) by `FUNCTIONS`, which `compile_path` puts before fhirpathpy's own;
- refused: the constructs `unsupported_constructs` names, each with the way to write it instead.

Example (in the rule compiler, next to `compile_path`):

    for message in unsupported_constructs(parse_expression(text)):
        issue(loc, message)
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping
from typing import Any, Final

from fhirpathpy.engine.nodes import FP_DateTime, FP_Time
from fhirpathpy.models import models

__all__ = ["FUNCTIONS", "unsupported_constructs"]

Node = Mapping[str, Any]

_DATE_UNITS: Final = frozenset(
    {
        *("year", "years", "month", "months", "week", "weeks", "day", "days"),
        *("hour", "hours", "minute", "minutes", "second", "seconds"),
        *("millisecond", "milliseconds", "'wk'", "'d'", "'h'", "'min'", "'s'", "'ms'"),
    }
)
_CALENDAR_WORDS: Final = frozenset(u.strip("'") for u in _DATE_UNITS if not u.startswith("'"))
_STRING_FUNCTIONS: Final = frozenset(
    {
        *("indexOf", "substring", "startsWith", "endsWith", "contains", "replace", "matches"),
        *("replaceMatches", "split", "join", "lower", "upper", "length", "toChars"),
    }
)
_SYSTEM_TYPES: Final = frozenset(
    {"Boolean", "String", "Integer", "Decimal", "Date", "DateTime", "Time", "Quantity"}
)
_UNDEFINED_VARIABLES: Final = {
    "sct": "not defined by fhirpathpy 2.2.4; write 'http://snomed.info/sct'",
    "loinc": "not defined by fhirpathpy 2.2.4; write 'http://loinc.org'",
    "resource": "not set for rules (their root is the hook context); use a prefetch key",
    "rootResource": "not set for rules (their root is the hook context); use a prefetch key",
}
# Functions whose arguments are evaluated once per input item, with $this bound to it.
_ITERATING: Final = frozenset({"where", "select", "all", "exists", "repeat", "aggregate", "sort"})
_LOGIC: Final = frozenset({"AndExpression", "OrExpression", "ImpliesExpression"})

_EQUIVALENCE: Final = (
    "fhirpathpy 2.2.4 gets equivalence of collections wrong (it compares the first items, or "
    "the lists in order); use = or != on single values (lower() or trim() for text)"
)
_QUANTITY: Final = (
    "fhirpathpy 2.2.4 compares and computes quantities wrongly, so a quantity may only be "
    "added to or subtracted from a date/dateTime; compare numbers instead, e.g. "
    "value.ofType(Quantity).where(code = 'mg').value > 5"
)
_NUMBER_TO_STRING: Final = (
    "fhirpathpy reads a decimal literal such as 1.0 as the integer 1; write the text as a "
    "string literal"
)
_NO_DATE_TYPE: Final = (
    "fhirpathpy 2.2.4 has no Date type (dates are DateTimes at day precision); test the FHIR "
    "element's type, e.g. ofType(date), or compare the value"
)
_THIS: Final = (
    "$this is the current item only inside where(), select(), all(), exists(), repeat(), "
    "aggregate(); elsewhere fhirpathpy 2.2.4 leaves it at an earlier where()'s last item: "
    "write the path from the root"
)


def _known_types() -> frozenset[str]:
    model = models["r4"]
    names = set(model["type2Parent"]) | set(model["type2Parent"].values())
    names |= {t.removeprefix("System.") for t in model["path2Type"].values()}
    return frozenset(names | _SYSTEM_TYPES)


_KNOWN_TYPES: Final = _known_types()


def _to_string(items: list[Any]) -> Any:
    """FHIRPath `toString()`: as fhirpathpy, but `true`/`false` and dates as written."""
    if len(items) != 1:
        return []
    value = items[0]
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, FP_DateTime | FP_Time):
        return value.asStr
    return str(value)


# fhirpathpy user-invocation entries, taking precedence over its built-ins of the same name.
FUNCTIONS: Final[Mapping[str, Mapping[str, Any]]] = {"toString": {"fn": _to_string}}


def unsupported_constructs(ast: Node) -> list[str]:
    """Why a rule may not use this expression (empty when it may), one message per construct.

    `ast` is fhirpathpy's parse tree (`rules.fhirpath.parse_expression(text)`). The messages
    name the construct and say what to write instead.
    """
    constructs: dict[str, list[str]] = {}  # reason → constructs, in order of appearance
    for construct, reason in _check(ast, ()):
        seen = constructs.setdefault(reason, [])
        if construct not in seen:
            seen.append(construct)
    return [f"{', '.join(found)}: {reason}" for reason, found in constructs.items()]


def _kids(node: Node) -> list[Node]:
    return [c for c in node.get("children", []) if isinstance(c, Mapping)]


def _check(node: Node, ancestors: tuple[Node, ...]) -> Iterator[tuple[str, str]]:
    kind = node.get("type")
    if kind == "QuantityLiteral":
        yield from _quantity(node, ancestors)
    elif kind == "DateTimeLiteral":
        yield from _datetime_literal(str(node["text"]))
    elif kind == "TimeLiteral" and any(c in str(node["text"])[2:] for c in "Z+-"):
        yield str(node["text"]), "a Time has no timezone offset; drop it"
    elif kind == "EqualityExpression" and node.get("terminalNodeText") in (["~"], ["!~"]):
        operator = node["terminalNodeText"][0]
        yield operator, _EQUIVALENCE
    elif kind == "Functn":
        yield from _function(node, ancestors)
    elif kind == "TypeExpression":
        operator = node["terminalNodeText"][0]
        precedence = (
            f"fhirpathpy 2.2.4 gives {operator} the wrong precedence; write x.{operator}(T)"
        )
        yield f"x {operator} T", precedence
        specifier = next((c for c in _kids(node) if c.get("type") == "TypeSpecifier"), None)
        if specifier is not None:
            yield from _type_name(_identifiers(specifier), operator)
    elif kind in _LOGIC:
        for operand in _kids(node):
            if _literal_kind(operand) not in (None, "BooleanLiteral", "NullLiteral"):
                yield str(node["terminalNodeText"][0]), "an operand that is not a boolean"
    elif kind == "ThisInvocation":
        yield from _this(ancestors)
    elif kind == "ExternalConstant":
        name = "".join(_identifiers(node)).strip("`")
        if name in _UNDEFINED_VARIABLES:
            yield f"%{name}", _UNDEFINED_VARIABLES[name]
    for child in _kids(node):
        yield from _check(child, (*ancestors, node))


def _identifiers(node: Node) -> list[str]:
    if node.get("type") == "Identifier":
        return [str(node["text"]).strip("`")]
    return [name for child in _kids(node) for name in _identifiers(child)]


def _quantity(node: Node, ancestors: tuple[Node, ...]) -> Iterator[tuple[str, str]]:
    quantity = _kids(node)[0]
    value = quantity["terminalNodeText"][0]
    units = [t for u in _kids(quantity) for t in _terminals(u)]
    unit = units[0] if units else ""
    written = f"{value} {unit}".strip()
    if unit.strip("'") in _CALENDAR_WORDS and unit.startswith("'"):
        yield written, f"{unit} is not a UCUM unit; write {value} {unit.strip(chr(39))}"
        return
    if unit in ("'a'", "'mo'"):
        word = "year" if unit == "'a'" else "month"
        yield written, f"UCUM {unit} is a fixed length, not a calendar {word}; write {value} {word}"
        return
    # A quantity literal is allowed only as the right operand of date arithmetic.
    term = ancestors[-2] if len(ancestors) >= 2 else None
    parent = ancestors[-3] if len(ancestors) >= 3 else None
    arithmetic = (
        parent is not None
        and parent.get("type") == "AdditiveExpression"
        and parent.get("terminalNodeText") in (["+"], ["-"])
        and _kids(parent)[-1] is term
    )
    if not arithmetic or unit not in _DATE_UNITS:
        yield written, _QUANTITY


def _terminals(node: Node) -> list[str]:
    own = [str(t) for t in node.get("terminalNodeText", [])]
    return own + [t for child in _kids(node) for t in _terminals(child)]


def _datetime_literal(text: str) -> Iterator[tuple[str, str]]:
    clock = text.partition("T")[2]
    if clock and not any(c in clock for c in "Z+-"):
        yield text, f"a time without a timezone offset is read as UTC; write it, e.g. {text}Z"


def _function(node: Node, ancestors: tuple[Node, ...]) -> Iterator[tuple[str, str]]:
    children = _kids(node)
    name = str(children[0]["text"]).strip("`")
    params = _kids(children[1]) if len(children) > 1 else []
    # x.f(): Functn ← FunctionInvocation ← InvocationExpression(x, …); f(): ← InvocationTerm
    method = len(ancestors) >= 2 and ancestors[-2].get("type") == "InvocationExpression"
    subject = _kids(ancestors[-2])[0] if method else None
    if name == "iif":
        if method:
            yield "x.iif()", "iif takes no input in rules; write iif(criterion, result, otherwise)"
        if params and _literal_kind(params[0]) not in (None, "BooleanLiteral", "NullLiteral"):
            yield "iif()", "the criterion must be a boolean, not a literal value or a collection"
    elif name in ("ofType", "is", "as") and params:
        yield from _type_name(_identifiers(params[0]), name)
    elif name == "toString" and subject is not None and _literal_kind(subject) == "NumberLiteral":
        if "." in str(subject.get("text")):
            yield f"{subject.get('text')}.toString()", _NUMBER_TO_STRING
    elif name == "not" and subject is not None:
        if _literal_kind(subject) not in (None, "BooleanLiteral", "NullLiteral"):
            yield "not()", "its input must be a single boolean, not a literal value or a collection"
    elif name == "round" and not params:
        yield "round()", "fhirpathpy 2.2.4 needs the precision; write round(0)"
    if name in _STRING_FUNCTIONS:
        for param in params:
            if _literal_kind(param) == "NullLiteral":
                yield f"{name}({{}})", "an empty argument makes the result empty; drop the call"
        first = params[0] if params else None
        if first is not None and _literal_kind(first) == "StringLiteral" and first["text"] == "''":
            if name in ("startsWith", "endsWith", "contains"):
                yield f"{name}('')", "always true (fhirpathpy answers false on ''); drop the test"
            elif name in ("matches", "replaceMatches"):
                yield f"{name}('')", "an empty regular expression; write the pattern"


def _this(ancestors: tuple[Node, ...]) -> Iterator[tuple[str, str]]:
    """$this must stand in the arguments of an iterating function (at any depth)."""
    for parent, child in itertools.pairwise(ancestors):
        in_arguments = parent.get("type") == "Functn" and child.get("type") == "ParamList"
        if in_arguments and str(_kids(parent)[0]["text"]).strip("`") in _ITERATING:
            return
    yield "$this", _THIS


def _literal_kind(node: Node) -> str | None:
    """The node type when `node` is just a literal or a union (`1 | 2`), else None."""
    while node.get("type") in ("TermExpression", "LiteralTerm", "ParenthesizedTerm"):
        children = _kids(node)
        if len(children) != 1:
            return None
        node = children[0]
    kind = str(node.get("type"))
    return kind if kind.endswith("Literal") or kind == "UnionExpression" else None


def _type_name(parts: list[str], operator: str) -> Iterator[tuple[str, str]]:
    if not parts:
        return
    namespace, name = (parts[0], parts[-1]) if len(parts) > 1 else (None, parts[0])
    if name == "Date" and namespace in (None, "System"):
        yield f"{operator}(Date)", _NO_DATE_TYPE
    elif name not in _KNOWN_TYPES or namespace not in (None, "System", "FHIR"):
        yield f"{operator}({'.'.join(parts)})", "unknown type"
