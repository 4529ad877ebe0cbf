"""FHIRPath for rules: checked and compiled when rules load, evaluated per call.

On top of fhirpathpy this adds what authoring needs: real syntax errors (fhirpathpy's parser
recovers silently from many), the `%variables`, `%variable.member`s and function calls an
expression uses, read from its syntax tree (so unknown names are load errors), a ban on the wall
clock (`now()`, `today()`, `timeOfDay()`: rules read the frozen `%now` instead, so tests are
repeatable), and `memberOf('value-set-id')` against the local value sets. Dates and dateTimes add
and compare per the FHIRPath spec (`rules/fhirdates.py`, installed into fhirpathpy on import),
and `toString()` is fixed (`rules/conformance.py`, which also names the constructs rules may not
use).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from antlr4 import CommonTokenStream, InputStream
from antlr4.error.ErrorListener import ErrorListener
from antlr4.tree.Tree import ParseTreeWalker
from fhirpathpy import apply_parsed_path
from fhirpathpy.engine.evaluators import string_literal
from fhirpathpy.engine.invocations import invocation_registry
from fhirpathpy.engine.util import set_paths
from fhirpathpy.models import models
from fhirpathpy.parser.ASTPathListener import ASTPathListener
from fhirpathpy.parser.generated.FHIRPathLexer import FHIRPathLexer
from fhirpathpy.parser.generated.FHIRPathParser import FHIRPathParser

from cds_service.rules import fhirdates
from cds_service.rules.conformance import FUNCTIONS as FIXED_FUNCTIONS
from cds_service.rules.fhirpath_closures import NotCompiled, compile_closures
from cds_service.suggest import did_you_mean

fhirdates.install()  # FHIRPath date arithmetic and comparison; see rules/fhirdates.py

__all__ = [
    "CLOCK_FUNCTIONS",
    "FIXED_FUNCTIONS",
    "Call",
    "CompiledPath",
    "FhirPathError",
    "compile_path",
]

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


@dataclass(frozen=True, slots=True)
class Call:
    """A function call in an expression, as written: `memberOf('oral-nsaids')`."""

    name: str
    # Each argument's value when it is a string literal (escapes decoded), else None.
    literals: tuple[str | None, ...] = ()


@dataclass(slots=True)
class _Names:
    """What an expression refers to, read from fhirpathpy's syntax tree (never from its text,
    where `'%x'` or `'memberOf(y)'` inside a string literal would look like references)."""

    variables: set[str] = field(default_factory=set)
    calls: list[Call] = field(default_factory=list)
    members: set[tuple[str, str]] = field(default_factory=set)
    # Elements read from the expression's root (`value` in `value.ofType(Quantity) > 5`), not
    # inside a function's arguments (where the root is each item the function iterates).
    roots: set[str] = field(default_factory=set)
    # `(variable, member, field)` for each `%variable.member.field` (`%scores.has_bled.value`).
    fields: set[tuple[str, str, str]] = field(default_factory=set)
    # String literals an order comparison (`<`, `>=`, ...) compares with (`>= '500'`).
    compared: set[str] = field(default_factory=set)
    # Each path of members read (`Chain`), from a variable or from the root.
    chains: set[Chain] = field(default_factory=set)

    def walk(self, node: Any, in_arguments: bool = False, is_target: bool = False) -> None:
        if not isinstance(node, dict):
            return
        kind = node.get("type")
        children: list[Any] = node.get("children", [])
        first = children[0] if children else {}
        if kind == "InvocationExpression" and not is_target:
            chain = _chain(node, in_arguments)
            if chain is not None:
                self.chains.add(chain)
        if (
            kind == "InvocationTerm"
            and not in_arguments
            and first.get("type") == "MemberInvocation"
        ):
            self.roots.add(_identifier(first["children"][0]))
        if kind == "InequalityExpression":
            for operand in children:
                literal = _string(operand)
                if literal is not None:
                    self.compared.add(literal)
        if kind == "ExternalConstant":
            self.variables.add(_variable(node))
        elif kind == "Functn":
            name = next(c for c in children if c.get("type") == "Identifier")
            params = [c for c in children if c.get("type") == "ParamList"]
            args = tuple(_string(arg) for p in params for arg in p.get("children", []))
            self.calls.append(Call(_identifier(name), args))
        elif kind == "InvocationExpression" and len(children) == 2:
            target, member = children
            variable = _variable_term(target)
            if variable is not None and member.get("type") == "MemberInvocation":
                self.members.add((variable, _identifier(member["children"][0])))
            inner = (
                target.get("children", []) if target.get("type") == "InvocationExpression" else []
            )
            if len(inner) == 2 and member.get("type") == "MemberInvocation":
                outer = _variable_term(inner[0])
                if outer is not None and inner[1].get("type") == "MemberInvocation":
                    name = _identifier(inner[1]["children"][0])
                    self.fields.add((outer, name, _identifier(member["children"][0])))
        for index, child in enumerate(children):
            target = kind == "InvocationExpression" and index == 0
            self.walk(child, in_arguments or kind == "ParamList", target)


# A step of a path: ("member", name), ("type", name) for ofType(name), ("keep", name) for a
# function that keeps some of its input's items (`first`, `where`), ("other", name) for any
# other function (its result's type is not followed).
Step = tuple[str, str]
# A path of steps from `%variable` (its name) or from the root (None):
# `%latest.value.ofType(Quantity).value` is ("latest", (member value, type Quantity, member value)).
Chain = tuple[str | None, tuple[Step, ...]]


def _chain(node: Any, in_arguments: bool) -> Chain | None:
    """The path an invocation expression reads, when it starts at a variable or (outside a
    function's arguments, where the root is each item the function iterates) at the root."""
    steps: list[Step] = []
    while isinstance(node, dict) and node.get("type") == "InvocationExpression":
        children = node.get("children", [])
        if len(children) != 2:
            return None
        node, invocation = children
        steps.append(_step(invocation))
    variable = _variable_term(node)
    if variable is None:
        term = _only_child(node, "TermExpression")
        member = _only_child(term or {}, "InvocationTerm")
        if in_arguments or member is None or member.get("type") != "MemberInvocation":
            return None
        steps.append(("member", _identifier(member["children"][0])))
    steps.reverse()
    return variable, tuple(steps)


def _step(invocation: Mapping[str, Any]) -> Step:
    if invocation.get("type") == "MemberInvocation":
        return "member", _identifier(invocation["children"][0])
    functn = _only_child(invocation, "FunctionInvocation") or {}
    children = functn.get("children", [])
    names = [c for c in children if c.get("type") == "Identifier"]
    name = _identifier(names[0]) if names else ""
    if name == "ofType":
        params = [c for c in children if c.get("type") == "ParamList"]
        args = params[0].get("children", []) if params else []
        term = _only_child(args[0], "TermExpression") if len(args) == 1 else None
        member = _only_child(term or {}, "InvocationTerm")
        if member is not None and member.get("type") == "MemberInvocation":
            return "type", _identifier(member["children"][0]).removeprefix("FHIR.")
    return ("keep" if name in _FILTERS else "other"), name


def _identifier(node: Mapping[str, Any]) -> str:
    return str(node.get("text", "")).replace("`", "")


def _variable(node: Mapping[str, Any]) -> str:
    names = [c for c in node.get("children", []) if c.get("type") == "Identifier"]
    if not names:  # `%'name'`: fhirpathpy parses it but fails on it at every evaluation
        raise FhirPathError("write a variable as %name or %`name`, not %'name'")
    return _identifier(names[0])


def _only_child(node: Mapping[str, Any], kind: str) -> Any:
    children = node.get("children", [])
    if node.get("type") == kind and len(children) == 1:
        return children[0]
    return None


def _variable_term(node: Any) -> str | None:
    """The variable a term is, `%name` (parenthesised or not), or None."""
    term = _only_child(node, "TermExpression")
    while term is not None and term.get("type") == "ParenthesizedTerm":
        term = _only_child(term["children"][0], "TermExpression")
    constant = None if term is None else _only_child(term, "ExternalConstantTerm")
    return None if constant is None else _variable(constant)


def _string(node: Any) -> str | None:
    """The value of a string literal argument (decoded as fhirpathpy decodes it), or None."""
    literal = _only_child(_only_child(node, "TermExpression") or {}, "LiteralTerm")
    if literal is None or literal.get("type") != "StringLiteral":
        return None
    return str(string_literal(None, None, literal)[0])  # type: ignore[no-untyped-call]


@dataclass(frozen=True, slots=True)
class CompiledPath:
    """A compiled expression and the names it refers to."""

    expression: str
    variables: frozenset[str]
    functions: frozenset[str]
    _fn: Callable[[Any, Mapping[str, Any]], list[Any]]
    calls: tuple[Call, ...] = ()
    # `(variable, member)` for each `%variable.member` read, e.g. `("scores", "has_bled")`.
    members: frozenset[tuple[str, str]] = frozenset()
    # Elements read from the root (outside function arguments), and `%variable.member.field`s.
    roots: frozenset[str] = frozenset()
    fields: frozenset[tuple[str, str, str]] = frozenset()
    # The variable whose items the expression gives, filtered (`%readings.where(...).first()`),
    # so its items are of that variable's types; None for anything else.
    filters: str | None = None
    # String literals compared with `<`, `<=`, `>`, `>=`.
    compared: frozenset[str] = frozenset()
    # The paths of members it reads (`Chain`), for lint's check against the FHIR model.
    chains: frozenset[Chain] = frozenset()
    # fhirpathpy's interpreter for the same expression: what `_fn` is when the expression is
    # not compiled, and the reference the compiled closures are tested against.
    interpreted: Callable[[Any, Mapping[str, Any]], list[Any]] | None = None
    # Why the expression runs on fhirpathpy (None when it is compiled to closures).
    not_compiled: str | None = None

    def __call__(self, root: Any, variables: Mapping[str, Any]) -> list[Any]:
        """Evaluate against `root` with `%variables`; returns the result collection."""
        return self._fn(root, variables)

    @property
    def compiled(self) -> bool:
        """Whether the expression runs as compiled closures (else on fhirpathpy)."""
        return self.not_compiled is None


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
    names = _Names()
    names.walk(ast)
    called = {call.name for call in names.calls}
    clock = called & CLOCK_FUNCTIONS
    if clock:
        name = sorted(clock)[0]
        raise FhirPathError(f"{name}() reads the wall clock; use %now instead")
    extra = {**FIXED_FUNCTIONS, **(functions or {})}
    unknown = called - set(invocation_registry) - set(extra)
    if unknown:
        name = sorted(unknown)[0]
        close = did_you_mean(name, [*invocation_registry, *extra])
        hint = f" (did you mean {' or '.join(f'{c}()' for c in close)}?)" if close else ""
        raise FhirPathError(f"unknown function {name}(){hint}")
    options = {"userInvocationTable": extra}
    interpreted = set_paths(  # type: ignore[no-untyped-call]
        apply_parsed_path, parsedPath=ast, model=models["r4"], options=options
    )
    reason = None
    try:
        fn = compile_closures(ast, extra)
    except NotCompiled as exc:
        fn, reason = interpreted, str(exc)
    return CompiledPath(
        expression,
        frozenset(names.variables - BUILTIN_VARIABLES),
        frozenset(called),
        fn,
        tuple(names.calls),
        frozenset(names.members),
        frozenset(names.roots),
        frozenset(names.fields),
        _filtered_variable(ast),
        frozenset(names.compared),
        frozenset(names.chains),
        interpreted,
        reason,
    )


# Functions that keep some of their input's items (so their types).
_FILTERS = frozenset({"first", "last", "where", "take", "skip", "tail", "single", "distinct"})


def _filtered_variable(ast: Any) -> str | None:
    """`x` when the expression is `%x` followed only by functions that keep some of its items."""
    node = ast
    while isinstance(node, dict) and node.get("type") in (None, "EntireExpression"):
        children = node.get("children", [])
        if len(children) != 1:
            return None
        node = children[0]
    while isinstance(node, dict) and node.get("type") == "InvocationExpression":
        target, invocation = node.get("children", [None, None])[:2]
        functn = _only_child(invocation or {}, "FunctionInvocation")
        names = [c for c in (functn or {}).get("children", []) if c.get("type") == "Identifier"]
        if not names or _identifier(names[0]) not in _FILTERS:
            return None
        node = target
    return _variable_term(node)
