"""FHIRPath compiled to Python closures when a rule loads, for the subset rules use.

fhirpathpy interprets its syntax tree on every evaluation: a dispatch per node, the function
table rebuilt for every call of a function, the user functions wrapped again on every evaluation,
the clock read (for `now()`, which rules may not use). Here the tree is walked once, into nested
closures that do only the work of the evaluation. Function calls are resolved when the rule loads
and call fhirpathpy's own functions (and ours: `memberOf`, `drug`, the plugins', the fixed
`toString`), over fhirpathpy's own values (`ResourceNode`, `FP_DateTime`, `FP_Quantity`), with
the same `$this` and argument rules. So a compiled expression gives what fhirpathpy gives, error
for error: `tests/rules/test_fhirpath_differential.py` checks it over every expression of the
shipped rules and every fixture patient, `tests/rules/test_fhirpath_closures.py` over random
expressions (hypothesis), and the HL7 suite case by case (`tests/fhirpath_suite`).

Literals are folded where nothing can tell: a union of string, number and boolean literals is
computed when the rule loads, and `x in (...)` against one tests one string by a set lookup
(fhirpathpy's `==` between a string and anything is Python's). A union of strings (`text |
coding.display`) is deduplicated by the strings themselves, which is what fhirpathpy's
`distinct` does by serialising each item.

The subset is every construct except those in `NotCompiled`'s messages: the type operators
`is`/`as`, `$index`/`$total`, and the functions outside `COMPILED_FUNCTIONS` (`repeat`,
`aggregate`, `children`, `descendants`, `trace`, `extension`, the `convertsTo…` family, …). An
expression using one of them runs on fhirpathpy, and `rules lint --verbose` says which and why.
"""

from __future__ import annotations

import functools
import json
import operator as op
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any, Final, cast

from fhirpathpy.engine import param_check_table
from fhirpathpy.engine.evaluators import evaluators
from fhirpathpy.engine.invocations import equality, invocation_registry
from fhirpathpy.engine.nodes import FP_Quantity, FP_Type, ResourceNode, TypeInfo
from fhirpathpy.engine.util import is_number, process_user_invocation_table
from fhirpathpy.models import models

__all__ = ["COMPILED_FUNCTIONS", "Evaluator", "NotCompiled", "compile_closures"]

Node = Mapping[str, Any]
Ctx = dict[str, Any]  # fhirpathpy's evaluation context: dataRoot, vars, model, $this, $index
Step = Callable[[Ctx, Any], list[Any]]  # (context, input collection) → output collection
Param = Callable[[Ctx, Any], Any]  # an argument as the function takes it (see `_Compiler.param`)
Evaluator = Callable[[Any, Mapping[str, Any]], list[Any]]

# fhirpathpy's built-in functions (and operators) that compile; user functions always do.
COMPILED_FUNCTIONS: Final = frozenset(
    {
        *("empty", "not", "exists", "all", "allTrue", "anyTrue", "allFalse", "anyFalse"),
        *("distinct", "isDistinct", "count", "where", "select", "single", "first", "last"),
        *("ofType", "tail", "take", "skip", "iif", "toInteger", "toDecimal", "toBoolean"),
        *("toString", "indexOf", "substring", "startsWith", "endsWith", "contains", "upper"),
        *("lower", "replace", "matches", "replaceMatches", "length", "toChars", "join", "split"),
        *("trim", "abs", "ceiling", "floor", "round", "sqrt", "truncate", "exp", "ln", "log"),
        *("power", "sum", "min", "max", "avg"),
    }
)
_OPERATORS: Final = frozenset(
    {
        *("|", "=", "!=", "<", ">", "<=", ">=", "+", "-", "*", "/", "div", "mod", "&"),
        *("and", "or", "xor", "implies", "inOp", "containsOp"),
    }
)
_MEMBERSHIP: Final = {"in": "inOp", "contains": "containsOp"}
# fhirpathpy's own `in` and `contains` (what `member_of_literals` answers for, faster).
_MEMBERSHIP_FUNCTIONS: Final[dict[str, object]] = {
    name: cast(Mapping[str, Any], invocation_registry[name])["fn"] for name in _MEMBERSHIP.values()
}
# fhirpathpy's `|` (what `union` answers for strings without serialising them).
_UNION: Final = cast(Mapping[str, Any], invocation_registry["|"])["fn"]
# fhirpathpy's comparisons, and the same comparison of two integers: what they give for two
# one-item collections of plain ints (no type to check or convert), without the calls.
_INT_COMPARISONS: Final[dict[Callable[..., Any], Callable[[int, int], bool]]] = {
    equality.lt: op.lt,
    equality.gt: op.gt,
    equality.lte: op.le,
    equality.gte: op.ge,
}
_UCUM: Final = "http://unitsofmeasure.org"
_CHECK_BOOLEAN: Final = param_check_table["Boolean"]
_MODEL: Final[Mapping[str, Any]] = models["r4"]


# fhirpathpy's own classes and helpers, typed for the calls made here.
_new_node = cast(Callable[[Any, str | None], Any], ResourceNode)
_type_info = cast(Callable[..., Any], TypeInfo)
_is_number = cast(Callable[[Any], bool], is_number)
_user_table = cast(Callable[[Any], dict[str, Any]], process_user_invocation_table)


def _arraify(value: Any) -> list[Any]:
    """fhirpathpy's `arraify`: a list as it is, None as [], any other value in a list."""
    if isinstance(value, list):
        return value
    return [] if value is None else [value]


def _nullable(value: Any) -> bool:
    """fhirpathpy's `is_nullable`: None or an empty list (not an empty string, nor a node)."""
    return value is None or (isinstance(value, list) and not value)


class NotCompiled(Exception):
    """The expression uses a construct outside the compiled subset (named in the message)."""


def compile_closures(ast: Node, functions: Mapping[str, Mapping[str, Any]]) -> Evaluator:
    """Compile fhirpathpy's syntax tree (`rules.fhirpath.parse_expression`) into an evaluator
    taking `(root, variables)` as fhirpathpy's `apply_parsed_path` does; raise NotCompiled.

    `functions` are the user functions (fhirpathpy's user invocation table), which take
    precedence over fhirpathpy's functions of the same name.
    """
    table = {**invocation_registry, **_user_table(functions)}
    step = _Compiler(table, frozenset(functions)).node(ast["children"][0])

    def evaluate(root: Any, variables: Mapping[str, Any]) -> list[Any]:
        # The variables as given, not copied with `%context` and `%ucum` added (as fhirpathpy
        # does, and nothing writes to them): `%context` and `%ucum` read the root and UCUM's
        # URL unless the variables name them (`_ExternalConstantTerm`).
        data_root = _arraify(root)
        ctx: Ctx = {"dataRoot": data_root, "vars": variables, "root": root, "model": _MODEL}
        result = step(ctx, data_root)
        if len(result) == 1 and (result[0] is True or result[0] is False):  # most conditions
            return [result[0]]
        return _plain_list(result)

    return evaluate


class _Compiler:
    def __init__(self, table: Mapping[str, Mapping[str, Any]], user: frozenset[str]) -> None:
        self.table = table
        self.user = user

    def node(self, node: Node) -> Step:
        kind = node.get("type")
        method = getattr(self, f"_{kind}", None)
        if method is None:
            raise NotCompiled(f"{_construct(node)} is not compiled")
        step: Step = method(node)
        return step

    # Terms that only wrap their one child.
    def _TermExpression(self, node: Node) -> Step:
        return self.node(node["children"][0])

    _InvocationTerm = _ParenthesizedTerm = _TermExpression

    def _LiteralTerm(self, node: Node) -> Step:
        term = node["children"][0]
        if term:
            return self.node(term)
        text = node["text"]
        return lambda ctx, data: [text]

    def _constant(self, node: Node) -> Step:
        """A literal of an immutable value, computed once."""
        (value,) = evaluators[node["type"]]({}, [], node)
        return lambda ctx, data: [value]

    _NumberLiteral = _StringLiteral = _BooleanLiteral = _constant

    def _fresh(self, node: Node) -> Step:
        """A literal whose value is an object (quantity, date, time): a new one per evaluation,
        as fhirpathpy makes, since functions may keep state on it."""
        make = evaluators[node["type"]]
        return lambda ctx, data: make(ctx, data, node)

    _QuantityLiteral = _DateTimeLiteral = _TimeLiteral = _fresh

    def _NullLiteral(self, node: Node) -> Step:
        return lambda ctx, data: []

    def _ExternalConstantTerm(self, node: Node) -> Step:
        identifier = node["children"][0]["children"][0]
        name = _identifier(identifier).replace("`", "")

        implicit = name in ("context", "ucum")

        def variable(ctx: Ctx, data: Any) -> list[Any]:
            names = ctx["vars"]
            if name in names:
                value = names[name]
            elif implicit:  # fhirpathpy's own %context and %ucum, unless the variables name them
                value = ctx["root"] if name == "context" else _UCUM
            else:
                raise ValueError(f"Attempting to access an undefined environment variable: {name}")
            if value is None:
                return []
            if not isinstance(value, list):
                return [value]
            return value

        return variable

    def _ThisInvocation(self, node: Node) -> Step:
        return lambda ctx, data: _arraify(ctx["$this"])

    def _MemberInvocation(self, node: Node) -> Step:
        key = _identifier(node["children"][0])
        return _member(key.replace("`", ""))

    def _InvocationExpression(self, node: Node) -> Step:
        steps = tuple(self.node(child) for child in node["children"])

        def chain(ctx: Ctx, data: Any) -> list[Any]:
            for step in steps:
                data = step(ctx, data)
            return list(data)

        return chain

    def _IndexerExpression(self, node: Node) -> Step:
        collection, index = (self.node(child) for child in node["children"])

        def indexer(ctx: Ctx, data: Any) -> list[Any]:
            items = collection(ctx, data)
            at = index(ctx, data)
            if not at:
                return []
            number = int(at[0])
            if items is not None and len(items) > number >= 0:
                return [items[number]]
            return []

        return indexer

    def _PolarityExpression(self, node: Node) -> Step:
        sign = node["terminalNodeText"][0]
        operand = self.node(node["children"][0])

        def polarity(ctx: Ctx, data: Any) -> list[Any]:
            result = operand(ctx, data)
            if len(result) != 1:
                raise Exception(f"Unary {sign} can only be applied to an individual number.")
            if not _is_number(result[0]):
                raise Exception(f"Unary {sign} can only be applied to a number.")
            if sign == "-":
                result[0] = -result[0]
            return result

        return polarity

    def _UnionExpression(self, node: Node) -> Step:
        step = self.infix("|", node)
        value = self.constant(node)
        if value is None:
            return step
        # A union of literals (`('refuted' | 'entered-in-error')`) is computed once, here, as
        # fhirpathpy computes it on each evaluation (its `distinct` serialises every item).
        return lambda ctx, data: list(value)

    def constant(self, node: Node) -> list[Any] | None:
        """The collection a subtree of string, number and boolean literals, unions and
        parentheses gives (nothing in it reads the input, variables or the clock), else None."""
        kind = node.get("type")
        if kind in ("TermExpression", "ParenthesizedTerm", "LiteralTerm"):
            children = node.get("children") or []
            return self.constant(children[0]) if len(children) == 1 and children[0] else None
        if kind in ("StringLiteral", "NumberLiteral", "BooleanLiteral"):
            return list(evaluators[kind]({}, [], node))
        if kind != "UnionExpression" or "|" not in self.table:
            return None
        left, right = (self.constant(child) for child in node["children"])
        if left is None or right is None:
            return None
        return _arraify(self.table["|"]["fn"]({}, left, right))

    def _operator(self, node: Node) -> Step:
        return self.infix(node["terminalNodeText"][0], node)

    _InequalityExpression = _AdditiveExpression = _MultiplicativeExpression = _operator
    _EqualityExpression = _OrExpression = _ImpliesExpression = _operator
    _AndExpression = _XorExpression = _operator

    def _MembershipExpression(self, node: Node) -> Step:
        name = _MEMBERSHIP[node["terminalNodeText"][0]]
        step = self.infix(name, node)
        if self.table[name]["fn"] is not _MEMBERSHIP_FUNCTIONS[name]:
            return step  # a plugin's own `in`/`contains`
        # `code in ('refuted' | 'entered-in-error')`: the literals as a set, for the
        # usual one string (or node of one) tested against them; anything else as fhirpathpy.
        types = self.table[name]["arity"][2]
        at = 0 if name == "inOp" else 1  # the element's side
        value = self.constant(node["children"][1 - at])
        if value is None:
            return step
        literals = frozenset(value)  # strings, numbers, booleans: hashable
        one = self.param(types[at], node["children"][at])  # as `infix` evaluates it

        def member_of_literals(ctx: Ctx, data: Any) -> list[Any]:
            items = one(ctx, data)
            if len(items) == 1 and value:
                item = items[0]
                text = item.data if type(item) is ResourceNode else item
                if type(text) is str:  # fhirpathpy's `==`: a string equals only that string
                    return [text in literals]
            return step(ctx, data)

        return member_of_literals

    def _FunctionInvocation(self, node: Node) -> Step:
        functn = node["children"][0]
        name = _identifier(functn["children"][0])
        params = functn["children"][1:]
        raw = params[0]["children"] if params and "children" in params[0] else None
        return self.invoke(name, raw)

    def infix(self, name: str, node: Node) -> Step:
        """An operator, as fhirpathpy's `infix_invoke`: both operands are evaluated against the
        operator's input, each typed per the operator's table entry."""
        if name not in _OPERATORS or name not in self.table:
            raise NotCompiled(f"the operator {name} is not compiled")
        entry = self.table[name]
        types = entry["arity"][2]
        left, right = (
            self.param(t, child) for t, child in zip(types, node["children"], strict=True)
        )
        fn = entry["fn"]
        nullable = "nullable" in entry
        ints = _INT_COMPARISONS.get(fn) if nullable else None
        if fn is _UNION:

            def union(ctx: Ctx, data: Any) -> list[Any]:
                a = left(ctx, data)
                b = right(ctx, data)
                both = a + b
                # fhirpathpy's `distinct` keys each item by its JSON: for strings (`text |
                # coding.display`), or nodes of strings, that is the string itself.
                if all(type(item) is ResourceNode and type(item.data) is str for item in both):
                    return [_new_node(text, None) for text in dict.fromkeys(n.data for n in both)]
                if all(type(item) is str for item in both):
                    return list(dict.fromkeys(both))
                return _arraify(fn(ctx, a, b))

            return union

        def operator(ctx: Ctx, data: Any) -> list[Any]:
            a = left(ctx, data)
            b = right(ctx, data)
            if nullable and (_nullable(a) or _nullable(b)):
                return []
            return _arraify(fn(ctx, a, b))

        if ints is None:
            return operator

        def compare(ctx: Ctx, data: Any) -> list[Any]:
            a = left(ctx, data)
            b = right(ctx, data)
            if len(a) == 1 and len(b) == 1 and type(a[0]) is int and type(b[0]) is int:
                return [ints(a[0], b[0])]  # `%age >= 18`: as fhirpathpy, without its calls
            if _nullable(a) or _nullable(b):
                return []
            return _arraify(fn(ctx, a, b))

        return compare

    def invoke(self, name: str, raw: list[Node] | None) -> Step:
        """A function call, as fhirpathpy's `doInvoke`, with the lookups done now."""
        if name not in self.table or (name not in self.user and name not in COMPILED_FUNCTIONS):
            raise NotCompiled(f"{name}() is not compiled")
        if name not in self.user:  # fhirpathpy's own: the commonest have a direct form
            direct = self.direct(name, raw or [])
            if direct is not None:
                return direct
        entry = self.table[name]
        fn = entry["fn"]
        nullable_input = "nullable_input" in entry
        if "variadic" in entry:
            raise NotCompiled(f"{name}() takes any number of arguments, which is not compiled")
        if "arity" not in entry:
            if raw:  # fhirpathpy raises this when evaluating: keep its error
                raise NotCompiled(f"{name}() takes no arguments")

            def call(ctx: Ctx, data: Any) -> list[Any]:
                if nullable_input and _nullable(data):
                    return []
                return _arraify(fn(ctx, _arraify(data)))

            return call
        count = len(raw) if isinstance(raw, list) else 0
        if count not in entry["arity"]:
            raise NotCompiled(f"{name}() does not take {count} arguments")
        # The table may name more types than the call has arguments (`upper` has one for none).
        kinds = entry["arity"][count][:count]
        params = tuple(self.param(t, p) for t, p in zip(kinds, raw or (), strict=True))
        nullable = "nullable" in entry

        def call_with(ctx: Ctx, data: Any) -> list[Any]:
            if nullable_input and _nullable(data):
                return []
            this = ctx["$this"] if "$this" in ctx else ctx["dataRoot"]
            args = [param(ctx, this) for param in params]
            if nullable and (_nullable(data) or any(_nullable(a) for a in args)):
                return []
            return _arraify(fn(ctx, data, *args))

        return call_with

    def direct(self, name: str, raw: list[Node]) -> Step | None:
        """fhirpathpy's `where`, `select`, `exists`, `empty` and `first`, written out: the same
        results and the same `$this`/`$index` left behind, without building an argument per
        call, and without evaluating `where`'s criteria twice for each item that passes
        (fhirpathpy's `check_macro_expr` does; the second evaluation repeats the first)."""
        if name in ("exists", "empty", "first") and not raw:
            return _DIRECT[name]
        if name not in ("where", "select", "exists") or len(raw) != 1:
            return None
        body = self.node(raw[0])

        def each(ctx: Ctx, data: Any, filtering: bool) -> list[Any]:
            """`where` (the items whose criteria give true first) or `select` (the results)."""
            if not isinstance(data, list):
                return []
            out: list[Any] = []
            for index, item in enumerate(data):
                ctx["$index"] = index
                ctx["$this"] = this = _arraify(item)
                result = body(ctx, this)
                if not filtering:
                    out.extend(result)
                elif result and result[0]:
                    if isinstance(item, list):  # fhirpathpy flattens the kept items
                        out.extend(item)
                    else:
                        out.append(item)
            return out

        def where(ctx: Ctx, data: Any) -> list[Any]:
            return each(ctx, data, True)

        def select(ctx: Ctx, data: Any) -> list[Any]:
            return each(ctx, data, False)

        def exists(ctx: Ctx, data: Any) -> list[Any]:
            return [len(where(ctx, data)) != 0]

        return {"where": where, "select": select, "exists": exists}[name]

    def param(self, kind: Any, node: Node) -> Param:
        """An argument, as fhirpathpy's `make_param` makes it for the argument type `kind`."""
        if kind == "Expr":
            body = self.node(node)

            def expression(ctx: Ctx, data: Any) -> Any:
                def per_item(item: Any) -> list[Any]:
                    ctx["$this"] = this = _arraify(item)
                    return body(ctx, this)

                return per_item

            return expression
        if kind == "AnyAtRoot":
            body = self.node(node)

            def at_root(ctx: Ctx, data: Any) -> list[Any]:
                ctx["$this"] = this = ctx["$this"] if "$this" in ctx else ctx["dataRoot"]
                return body(ctx, this)

            return at_root
        if kind == "TypeSpecifier":
            names = node["text"].replace("`", "").split(".")
            if len(names) > 2:
                raise NotCompiled(f"the type {node['text']} is not compiled")
            spec = _type_info(name=names[-1], namespace=names[0] if len(names) == 2 else None)
            return lambda ctx, data: spec
        if kind == "Identifier":
            raise NotCompiled("identifier arguments are not compiled")
        body = self.node(node)
        if kind == "Any":

            def anything(ctx: Ctx, data: Any) -> list[Any]:
                ctx["$this"] = data
                return body(ctx, data)

            return anything
        if isinstance(kind, list):  # the type, allowing none: none gives none either way
            kind = kind[0]
        check: Callable[[Any], Any] | None = param_check_table.get(kind)
        # `and`, `or`, `not()`…: a plain boolean is what fhirpathpy's check gives back
        boolean = check is _CHECK_BOOLEAN

        def typed(ctx: Ctx, data: Any) -> Any:
            ctx["$this"] = data
            result = body(ctx, data)
            if len(result) == 1:
                item = result[0]
                if boolean and (item is True or item is False):
                    return item
                if check is None:
                    raise Exception("Implement me for " + kind)
                return check(item)
            if len(result) == 0:
                return []
            raise Exception(
                "Unexpected collection"
                + json.dumps(result)
                + "; expected singleton of type "
                + kind
            )

        return typed


def _identifier(node: Node) -> str:
    """An identifier's name, as fhirpathpy reads it: one leading and one trailing double quote
    dropped (backquotes are the caller's)."""
    text = str(node["text"])
    if text.startswith('"'):
        text = text[1:]
    if text.endswith('"'):
        text = text[:-1]
    return text


def _exists(ctx: Ctx, data: Any) -> list[Any]:
    return [not (isinstance(data, list) and len(data) == 0)]


def _empty(ctx: Ctx, data: Any) -> list[Any]:
    return [len(_arraify(data)) == 0]


def _first(ctx: Ctx, data: Any) -> list[Any]:
    items = _arraify(data)
    return _arraify(items[0]) if items else []


# fhirpathpy's `exists()`, `empty()` and `first()` without arguments, written out.
_DIRECT: Final[dict[str, Step]] = {"exists": _exists, "empty": _empty, "first": _first}


def _construct(node: Node) -> str:
    kind = str(node.get("type"))
    if kind == "TypeExpression":
        return f"the operator {node['terminalNodeText'][0]}"
    if kind == "IndexInvocation":
        return "$index"
    if kind == "TotalInvocation":
        return "$total"
    return kind


@functools.lru_cache(maxsize=4096)
def _child_path(parent: str | None, key: str) -> tuple[str, tuple[str, ...] | None]:
    """The model path of `key` under `parent` and its choice types (as fhirpathpy finds them)."""
    path = f"{parent}.{key}" if parent else f"_.{key}"
    path = _MODEL["pathsDefinedElsewhere"].get(path, path)
    choices = _MODEL["choiceTypePaths"].get(path)
    return path, tuple(choices) if choices else None


@functools.lru_cache(maxsize=4096)
def _type_of(path: str) -> str:
    return str(_MODEL["path2Type"].get(path, path))


def _member(key: str) -> Step:
    """`.key` on every item, as fhirpathpy's member invocation (choice types, `_key` primitive
    extensions, contained resources keeping their type)."""
    capitalized = key[0] == key[0].upper()
    underscored = f"_{key}"

    def member(ctx: Ctx, data: Any) -> list[Any]:
        if not isinstance(data, list):
            return []
        if capitalized:
            try:
                return [_new_node(x, key) for x in data if x["resourceType"] == key]
            except TypeError:
                pass
        out: list[Any] = []
        for item in data:
            node = item if isinstance(item, ResourceNode) else _new_node(item, None)
            value = node.data
            path, choices = _child_path(node.path, key)
            found = extra = None
            if isinstance(value, FP_Quantity):
                found = value.value
            if choices and isinstance(value, Mapping):
                for choice in choices:
                    found = value.get(key + choice)
                    extra = value.get(f"_{key}{choice}")
                    if found is not None or extra is not None:
                        path += choice
                        break
            elif isinstance(value, Mapping):
                found = value.get(key)
                extra = value.get(underscored)
                if key == "extension":
                    path = "Extension"
            elif key == "length":
                found = len(value)
            kind = _type_of(path)
            for add in (found, extra):
                if _nullable(add):
                    continue
                if isinstance(add, list):
                    out.extend(_node(x, kind) for x in add)
                else:
                    out.append(_node(add, kind))
        return out

    return member


def _node(data: Any, path: str) -> Any:
    return data if isinstance(data, ResourceNode) else _new_node(data, path)


def _plain_list(items: list[Any]) -> list[Any]:
    """The result as fhirpathpy returns it: nodes replaced by their data (dicts copied, floats
    as Decimals), primitive-extension-only objects left out."""
    out = []
    for item in items:
        value = _plain(item)
        if isinstance(value, dict) and len(value) == 1 and "extension" in value:
            continue
        out.append(value)
    return out


def _plain(item: Any) -> Any:
    data = item.data if isinstance(item, ResourceNode) else item
    if isinstance(data, float):  # as fhirpathpy's get_data
        data = Decimal(str(data))
    if isinstance(item, list):
        return _plain_list(data)
    if isinstance(data, dict) and not isinstance(data, FP_Type):
        return {key: _plain(value) for key, value in data.items()}
    return data
