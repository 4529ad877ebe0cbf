"""The text-level nesting check agrees with the depth of the parsed JSON, escapes included."""

from __future__ import annotations

import random
from typing import Any

import orjson
import pytest

from cds_service.api.body import json_depth_exceeds
from tests.conftest import FIXTURES


def parsed_depth(value: Any) -> int:
    """Container nesting depth of a parsed JSON value (the reference)."""
    if isinstance(value, dict):
        return 1 + max((parsed_depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((parsed_depth(v) for v in value), default=0)
    return 0


def text_depth(raw: bytes) -> int:
    """The smallest limit json_depth_exceeds accepts, found by bisection."""
    low, high = 0, 10_000
    while low < high:
        middle = (low + high) // 2
        if json_depth_exceeds(raw, middle):
            low = middle + 1
        else:
            high = middle
    return low


@pytest.mark.parametrize(
    "raw",
    [
        b"{}",
        b"[]",
        b'"text"',
        b"[[[]]]",
        b'{"a": "[[[[ {{{{"}',
        b'{"a": "]]]]}}}}", "b": [[1]]}',
        b'{"a": "\\\\", "b": [[["]]]"]]]}',
        b'{"a": "\\"[[[", "b": {"c": {}}}',
        b'{"a\\\\\\"[": "}}}}"}',
        b'{"k": "\\\\\\\\\\"{{{", "deep": [[[[[]]]]]}',
        b'{"u": "\\u005b\\u005b", "n": "\\n[", "x": [{"y": [{}]}]}',
        b"[" * 70 + b"]" * 70,
        # Adjacent quotes (empty strings, one string's end and the next one's start), which
        # are dropped in pairs before the strings holding brackets are cut out.
        b'{"": "", "a": ["", "[", "", "]]"], "b": [[""]]}',
        b'["[","]","{","}",["", ""]]',
        b'{"a": "\\\\", "b": ""}',
        b'[["\\\\", "\\"", ""], "\\\\\\""]',
    ],
)
def test_matches_the_parsed_depth(raw: bytes) -> None:
    assert text_depth(raw) == parsed_depth(orjson.loads(raw))


def test_matches_the_parsed_depth_on_every_synthea_record() -> None:
    records = sorted((FIXTURES / "fhir-r4" / "synthea").glob("*.json"))
    assert records
    for path in records:
        raw = path.read_bytes()
        assert text_depth(raw) == parsed_depth(orjson.loads(raw)), path.name


def _random_json(rng: random.Random, depth: int) -> Any:
    pick = rng.random()
    if depth > 6 or pick < 0.3:
        pieces = ["[", "]", "{", "}", "\\", '"', "x", "\n", "\\\\"]
        return "".join(rng.choice(pieces) for _ in range(rng.randint(0, 6)))
    if pick < 0.65:
        return [_random_json(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    return {
        str(_random_json(rng, 99)): _random_json(rng, depth + 1) for _ in range(rng.randint(0, 3))
    }


def test_matches_the_parsed_depth_on_random_documents_with_tricky_strings() -> None:
    rng = random.Random(20261128)
    for _ in range(3000):
        raw = orjson.dumps(_random_json(rng, 0))
        assert text_depth(raw) == parsed_depth(orjson.loads(raw)), raw


def test_limit_is_exclusive() -> None:
    raw = b"[" * 64 + b"]" * 64
    assert not json_depth_exceeds(raw, 64)
    assert json_depth_exceeds(raw, 63)
