"""Both FHIRPath evaluators on the same input: the compiled closures and fhirpathpy.

`Differential` replaces `CompiledPath.__call__` (pytest's monkeypatch) so that every evaluation
the rule engine makes runs both, records any difference, and goes on with fhirpathpy's answer.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import pytest
from fhirpathpy.engine.nodes import FP_Type

from cds_service.rules.fhirpath import CompiledPath

ADDRESS = re.compile(r"0x[0-9a-f]+")
Outcome = tuple[str, Any]  # ("value", result) or ("error", the exception)


def outcome(fn: Any, root: Any, variables: Mapping[str, Any]) -> Outcome:
    # Each evaluator gets its own top-level lists: `-%x` negates the variable's list in place.
    names = {k: list(v) if isinstance(v, list) else v for k, v in variables.items()}
    try:
        return ("value", fn(root, names))
    except Exception as exc:  # the errors must be the same, type and message
        return ("error", exc)


def same(a: Any, b: Any) -> bool:
    """Equal and of the same types all the way down (1, 1.0, Decimal('1.0') and True differ)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, BaseException):  # the same message, but for objects' addresses
        return ADDRESS.sub("0x…", str(a)) == ADDRESS.sub("0x…", str(b))
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, FP_Type):
        return str(a) == str(b)
    if isinstance(a, Decimal):
        return str(a) == str(b)
    return bool(a == b)


@dataclass
class Differential:
    evaluated: dict[str, int] = field(default_factory=dict)  # expression → evaluations
    compiled: set[str] = field(default_factory=set)
    differences: list[tuple[str, Outcome, Outcome]] = field(default_factory=list)

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        def both(path: CompiledPath, root: Any, variables: Mapping[str, Any]) -> list[Any]:
            assert path.interpreted is not None
            reference = outcome(path.interpreted, root, variables)
            self.evaluated[path.expression] = self.evaluated.get(path.expression, 0) + 1
            if path.compiled:
                self.compiled.add(path.expression)
                mine = outcome(path._fn, root, variables)
                if not same(mine, reference) and len(self.differences) < 50:
                    self.differences.append((path.expression, mine, reference))
            kind, value = reference
            if kind == "error":
                raise value
            return value  # type: ignore[no-any-return]

        monkeypatch.setattr(CompiledPath, "__call__", both)
