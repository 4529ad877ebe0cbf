"""FHIRPath for rules: checked and compiled when rules load, evaluated per call.

On top of fhirpathpy this adds what authoring needs: real syntax errors (fhirpathpy's parser
recovers silently from many), the list of `%variables` and functions an expression uses (so
unknown names are load errors), a ban on the wall clock (`now()`, `today()`, `timeOfDay()`: rules
read the frozen `%now` instead, so tests are repeatable), and `memberOf('value-set-id')` against
the local value sets. Dates and dateTimes add and compare per the FHIRPath spec
(`rules/fhirdates.py`, installed into fhirpathpy on import), and `toString()` is fixed
(`rules/conformance.py`, which also names the constructs rules may not use).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from antlr4 import CommonTokenStream, InputStream
from antlr4.error.ErrorListener import ErrorListener
from antlr4.tree.Tree import ParseTreeWalker
from fhirpathpy import apply_parsed_path
from fhirpathpy.engine.invocations import invocation_registry
from fhirpathpy.engine.util import set_paths
from fhirpathpy.models import models
from fhirpathpy.parser.ASTPathListener import ASTPathListener
from fhirpathpy.parser.generated.FHIRPathLexer import FHIRPathLexer
from fhirpathpy.parser.generated.FHIRPathParser import FHIRPathParser

from cds_service.rules import fhirdates
from cds_service.rules.conformance import FUNCTIONS as FIXED_FUNCTIONS

fhirdates.install()  # FHIRPath date arithmetic and comparison; see rules/fhirdates.py

__all__ = ["CLOCK_FUNCTIONS", "CompiledPath", "FhirPathError", "compile_path"]

CLOCK_FUNCTIONS = frozenset({"now", "today", "timeOfDay"})
BUILTIN_VARIABLES = frozenset({"ucum", "context", "resource", "rootResource", "sct", "loinc"})


class FhirPathError(ValueError):
    """An expression that cannot be used, with a column (1-based) when known."""

    def __init__(self, message: str, column: int | None = None) -> None:
        super().__init__(message)
        self.column = column


class _Raise(ErrorListener):  # type: ignore[misc]
    def syntaxError(
        self, recognizer: Any, offending: Any, line: int, column: int, msg: str, e: Any
    ) -> None:
        raise FhirPathError(f"FHIRPath syntax error: {msg}", column + 1)


@functools.lru_cache(maxsize=8192)
def parse_expression(expression: str) -> Any:
    """One ANTLR parse: syntax errors raise, and the result is fhirpathpy's AST.

    Cached by text: rule packs repeat expressions, and a reload re-reads every file.
    """
    lexer = FHIRPathLexer(InputStream(expression))
    lexer.removeErrorListeners()
    lexer.addErrorListener(_Raise())
    parser = FHIRPathParser(CommonTokenStream(lexer))
    parser.buildParseTrees = True
    parser.removeErrorListeners()
    parser.addErrorListener(_Raise())
    tree = parser.entireExpression()  # type: ignore[no-untyped-call]
    listener = ASTPathListener()  # type: ignore[no-untyped-call]
    ParseTreeWalker().walk(listener, tree.expression())
    return listener.parentStack[0]


def _names(node: Any, variables: set[str], functions: set[str]) -> None:
    """Collect `%variable` and function names from fhirpathpy's AST."""
    if isinstance(node, dict):
        kind = node.get("type")
        if kind == "ExternalConstant":
            for child in node.get("children", []):
                text = child.get("text", "")
                variables.add(text.strip("`"))
        elif kind == "Functn":
            for child in node.get("children", []):
                if child.get("type") == "Identifier":
                    functions.add(child.get("text", "").strip("`"))
                    break
        for child in node.get("children", []):
            _names(child, variables, functions)


@dataclass(frozen=True, slots=True)
class CompiledPath:
    """A compiled expression and the names it refers to."""

    expression: str
    variables: frozenset[str]
    functions: frozenset[str]
    _fn: Callable[[Any, Mapping[str, Any]], list[Any]]

    def __call__(self, root: Any, variables: Mapping[str, Any]) -> list[Any]:
        """Evaluate against `root` with `%variables`; returns the result collection."""
        return self._fn(root, variables)


def compile_path(
    expression: str,
    *,
    functions: Mapping[str, Mapping[str, Any]] | None = None,
) -> CompiledPath:
    """Parse and compile; raise FhirPathError for bad syntax, clock functions or unknown functions.

    `functions` are extra functions (fhirpathpy's user invocation table), e.g. `memberOf`; they
    come after our fixes of fhirpathpy's own (`rules/conformance.py`).
    Which `%variables` are allowed depends on where the expression stands, so the caller checks
    `CompiledPath.variables`.
    """
    ast = parse_expression(expression)
    variables: set[str] = set()
    called: set[str] = set()
    _names(ast, variables, called)
    clock = called & CLOCK_FUNCTIONS
    if clock:
        name = sorted(clock)[0]
        raise FhirPathError(f"{name}() reads the wall clock; use %now instead")
    extra = {**FIXED_FUNCTIONS, **(functions or {})}
    unknown = called - set(invocation_registry) - set(extra)
    if unknown:
        raise FhirPathError(f"unknown function {sorted(unknown)[0]}()")
    options = {"userInvocationTable": extra}
    fn = set_paths(  # type: ignore[no-untyped-call]
        apply_parsed_path, parsedPath=ast, model=models["r4"], options=options
    )
    return CompiledPath(expression, frozenset(variables - BUILTIN_VARIABLES), frozenset(called), fn)
