"""Constructs refused at rule load and functions fixed (rules/conformance.py)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import pytest

from cds_service.config import default_rules_dir
from cds_service.rules.conformance import unsupported_constructs
from cds_service.rules.fhirpath import CompiledPath, compile_path, parse_expression
from cds_service.rules.ruleset import load_ruleset
from cds_service.rules.runtime import known_score_names


def refused(expression: str) -> list[str]:
    return unsupported_constructs(parse_expression(expression))


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("%latest.value.ofType(Quantity) > 5 'mg'", "5 'mg': fhirpathpy 2.2.4 compares"),
        ("6 days < 1 week", "6 days, 1 week: fhirpathpy 2.2.4 compares and computes quantities"),
        ("%now - 1 'a'", "1 'a': UCUM 'a' is a fixed length, not a calendar year; write 1 year"),
        ("%now + 2 'mo'", "2 'mo': UCUM 'mo' is a fixed length, not a calendar month"),
        ("%now - 1 'month'", "1 'month': 'month' is not a UCUM unit; write 1 month"),
        ("%now - 5 'mg'", "5 'mg': fhirpathpy 2.2.4 compares"),
        ("-(5 'mg')", "5 'mg'"),
        ("effective > @2024-01-01T10:00", "@2024-01-01T10:00: a time without a timezone offset"),
        ("@T10:00Z", "@T10:00Z: a Time has no timezone offset"),
        ("code ~ 'abc'", "~: fhirpathpy 2.2.4 gets equivalence of collections wrong"),
        ("code !~ 'abc'", "!~: fhirpathpy 2.2.4 gets equivalence"),
        ("%x.iif(true, 1, 2)", "x.iif(): iif takes no input in rules"),
        ("iif(1 | 2, 'a', 'b')", "iif(): the criterion must be a boolean"),
        ("iif('yes', 'a', 'b')", "iif(): the criterion must be a boolean"),
        ("birthDate.is(Date)", "is(Date): fhirpathpy 2.2.4 has no Date type"),
        ("birthDate.ofType(System.Date)", "ofType(Date)"),
        ("gender.as(string1)", "as(string1): unknown type"),
        ("gender is code", "x is T: fhirpathpy 2.2.4 gives is the wrong precedence"),
        ("gender as code", "x as T: fhirpathpy 2.2.4 gives as the wrong precedence"),
        ("1.0.toString()", "1.0.toString(): fhirpathpy reads a decimal literal"),
        ("(1 | 2).not()", "not(): its input must be a single boolean"),
        ("true and 'foo'", "and: an operand that is not a boolean"),
        ("round()", "round(): fhirpathpy 2.2.4 needs the precision"),
        ("name.indexOf({})", "indexOf({}): an empty argument"),
        ("name.startsWith('')", "startsWith(''): always true"),
        ("name.replaceMatches('', 'x')", "replaceMatches(''): an empty regular expression"),
        ("code.system = %sct", "%sct: not defined by fhirpathpy 2.2.4; write 'http://snomed"),
        ("%resource.id", "%resource: not set for rules"),
        ("name.subsetOf($this.name)", "$this: $this is the current item only inside where()"),
    ],
)
def test_refused_with_a_message(expression: str, message: str) -> None:
    messages = refused(expression)
    assert any(m.startswith(message) for m in messages), messages


@pytest.mark.parametrize(
    "expression",
    [
        "%now - 6 hours",
        "%now - 1 year",
        "%today + 2 'wk'",
        "effective.ofType(dateTime) >= %now - 18 months",
        "start <= %now + 14 days",
        "@2024-01-01T10:00:00Z < %now and @2024-01-01T10:00+01:00 < %now",
        "@2024-01-01 <= %today",
        "@T10:00 < @T11:00",
        "value.ofType(Quantity).value > 5.0",
        "iif(%a.exists(), %a, {})",
        "iif(true, 'a', 'b')",
        "coding.where($this.code = 'x' and iif($this.system.exists(), true, false)).exists()",
        "code.coding.select($this.code).exists()",
        "effective.ofType(dateTime).toString().substring(0, 10)",
        "%x.round(1).toString()",
        "name.given.first().startsWith('P')",
        "status = 'active' or status = {}",
        "value.ofType(boolean).not()",
        "birthDate.ofType(date).exists() and gender.ofType(code) = 'male'",
        "%context.draftOrders.entry.resource.ofType(MedicationRequest).exists()",
    ],
)
def test_accepted(expression: str) -> None:
    assert refused(expression) == []


def test_one_message_per_reason() -> None:
    messages = refused("2.0 'cm' * 2.0 'm' = 0.040 'm2'")
    assert len(messages) == 1
    assert messages[0].startswith("2.0 'cm', 2.0 'm', 0.040 'm2': ")


def _paths(value: Any) -> Iterator[CompiledPath]:
    if isinstance(value, CompiledPath):
        yield value
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        for field in dataclasses.fields(value):
            yield from _paths(getattr(value, field.name))
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _paths(item)


def test_the_rule_pack_uses_no_refused_construct() -> None:
    ruleset = load_ruleset(default_rules_dir(), known_score_names())
    assert ruleset.rules and not [i for i in ruleset.issues if i.severity == "error"]
    expressions = {p.expression for rule in ruleset.rules.values() for p in _paths(rule)}
    assert len(expressions) > 100
    assert {e: refused(e) for e in expressions if refused(e)} == {}


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("true.toString()", "true"),
        ("(1 = 2).toString()", "false"),
        ("@2026-11-28T12:00:00.123456Z.toString()", "2026-11-28T12:00:00.123456Z"),
        ("@2026-11.toString()", "2026-11"),
        ("@T10:30:00.5.toString()", "10:30:00.5"),
        ("'abc'.toString()", "abc"),
        ("1.5.toString()", "1.5"),
        ("(5 'mg').toString()", "5 'mg'"),
    ],
)
def test_to_string(expression: str, expected: str) -> None:
    assert compile_path(expression)({}, {}) == [expected]
