"""The text-level nesting check agrees with the depth of the parsed JSON, escapes included: the
native one (`_jsondepth.c`) and the Python one it replaces where it is built."""

from __future__ import annotations

import functools
import platform
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from cds_service import _jsondepth as native_module
from cds_service import jsondepth
from cds_service.jsondepth import (
    NATIVE_DEPTH_CHECK,
    TooDeep,
    json_depth_exceeds,
    loads_within,
    python_depth_exceeds,
)
from tests.conftest import FIXTURES

Check = Callable[[bytes, int], bool]


def way(name: str) -> Check:
    return functools.partial(native_module._depth_exceeds_way, name)


# The native check, each way this processor can take it (by 64-byte blocks with AVX2 or SSE2
# compares, byte by byte), and the Python version.
CHECKS = [
    pytest.param(json_depth_exceeds, id="native"),
    *(pytest.param(way(name), id=f"native-{name}") for name in native_module.WAYS),
    pytest.param(python_depth_exceeds, id="python"),
]


def test_the_native_check_is_built_and_used() -> None:
    """`make install` compiles it (hatch_build.py): a machine with a C compiler must have it."""
    assert NATIVE_DEPTH_CHECK, "cds_service/_jsondepth.c was not compiled at install"
    assert jsondepth.native_depth_exceeds is native_module.depth_exceeds
    assert native_module.WAYS[-1] == "bytewise"
    if platform.machine() == "x86_64":
        flags = set(Path("/proc/cpuinfo").read_text().split())
        want = [
            w for w, f in (("avx2", "avx2"), ("sse2", "popcnt")) if f in flags and "popcnt" in flags
        ]
        assert list(native_module.WAYS) == [*want, "bytewise"]
    with pytest.raises(ValueError, match="not a way"):
        native_module._depth_exceeds_way("avx9", b"[]", 1)


def parsed_depth(value: Any) -> int:
    """Container nesting depth of a parsed JSON value (the reference)."""
    if isinstance(value, dict):
        return 1 + max((parsed_depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((parsed_depth(v) for v in value), default=0)
    return 0


def text_depth(raw: bytes, check: Check) -> int:
    """The smallest limit the check accepts, found by bisection."""
    low, high = 0, 10_000
    while low < high:
        middle = (low + high) // 2
        if check(raw, middle):
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
@pytest.mark.parametrize("check", CHECKS)
def test_matches_the_parsed_depth(raw: bytes, check: Check) -> None:
    assert text_depth(raw, check) == parsed_depth(orjson.loads(raw))


@pytest.mark.parametrize("check", CHECKS)
def test_matches_the_parsed_depth_on_every_synthea_record(check: Check) -> None:
    records = sorted((FIXTURES / "fhir-r4" / "synthea").glob("*.json"))
    assert records
    for path in records:
        raw = path.read_bytes()
        assert text_depth(raw, check) == parsed_depth(orjson.loads(raw)), path.name


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


@pytest.mark.parametrize("check", CHECKS)
def test_matches_the_parsed_depth_on_random_documents_with_tricky_strings(check: Check) -> None:
    rng = random.Random(20261128)
    for _ in range(3000):
        raw = orjson.dumps(_random_json(rng, 0))
        assert text_depth(raw, check) == parsed_depth(orjson.loads(raw)), raw


@pytest.mark.parametrize("check", CHECKS)
def test_matches_the_parsed_depth_on_long_random_documents(check: Check) -> None:
    """Texts of several blocks, so that strings, escapes and brackets fall across the 64-byte
    blocks' edges at every offset."""
    rng = random.Random(20261205)
    for _ in range(300):
        raw = orjson.dumps([_random_json(rng, 0) for _ in range(rng.randint(5, 40))])
        assert text_depth(raw, check) == parsed_depth(orjson.loads(raw)), raw


@pytest.mark.parametrize("run", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("check", CHECKS)
def test_escapes_across_block_edges(run: int, check: Check) -> None:
    """Runs of backslashes placed at every offset around the first two block edges: in the
    text, 2 * run + 1 of them before a quote that stays inside its string (with brackets
    after it), and 2 * run before the quote that ends a string."""
    for pad in range(0, 140):
        value = {
            "p": "a" * pad,
            "s": "x" + "\\" * run + '"[[{',
            "t": "y" + "\\" * run,
            "u": "]]" * (pad % 3),
            "d": [[[{"e": []}]]],
        }
        raw = orjson.dumps(value)
        assert ("\\" * (2 * run + 1)).encode() + b'"[[{' in raw
        assert text_depth(raw, check) == parsed_depth(value) == 6, (pad, raw)


@pytest.mark.parametrize("check", CHECKS)
def test_limit_is_exclusive(check: Check) -> None:
    raw = b"[" * 64 + b"]" * 64
    assert not check(raw, 64)
    assert check(raw, 63)


def test_the_native_check_reads_any_buffer_and_refuses_bad_arguments() -> None:
    raw = b'{"a": [[1]], "b": "\\"}'
    for data in (raw, bytearray(raw), memoryview(raw)):
        assert json_depth_exceeds(data, 2) and not json_depth_exceeds(data, 3)  # type: ignore[arg-type]
    native = jsondepth.native_depth_exceeds
    assert native is not None
    with pytest.raises(TypeError):
        native("text", 3)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        native(raw)  # type: ignore[call-arg]
    with pytest.raises(OverflowError):
        native(raw, 2**70)
    # A text that ends inside an escape (never valid JSON) reads no byte past its end.
    assert not native(b'["\\', 5) and not native(b'"\\', 0)


def test_loads_within_parses_up_to_the_limit_and_refuses_deeper() -> None:
    at_limit = b'{"a": ' + b"[" * 63 + b"1" + b"]" * 63 + b"}"
    assert parsed_depth(loads_within(at_limit, 64)) == 64
    assert loads_within(at_limit.decode(), 64) == orjson.loads(at_limit)  # text too
    with pytest.raises(TooDeep) as refused:
        loads_within(at_limit, 63)
    assert refused.value.limit == 63 and str(refused.value) == "nested deeper than 63 levels"
    assert isinstance(refused.value, ValueError)  # as invalid JSON is, for callers that catch it
    with pytest.raises(orjson.JSONDecodeError):
        loads_within(b"[1,", 64)
    assert loads_within(b'"[[[["', 1) == "[[[["  # brackets in a string do not nest
    assert loads_within(b"7", 0) == 7
