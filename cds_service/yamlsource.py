"""YAML with positions: every value's line and column, duplicate keys rejected.

PyYAML's safe loader silently keeps the last of two equal keys; an author who writes `summary:`
twice deserves an error. We compose the node tree ourselves, build plain Python values from it and
record where each value starts, so a validation error on `card.suggestions[0].label` can point at
the exact line. Whatever the text, the answer is a value or located errors, never an exception: a
tag that cannot build its value (`!foo`, `!!int x`, the unquoted date `2026-02-30`), an alias
inside the value its anchor marks, nesting or alias expansion past the limits below.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

__all__ = ["Located", "LocatedError", "field_path", "load_yaml"]

Path_ = tuple[str | int, ...]
# libyaml's composer is ~20x faster than PyYAML's pure-Python one and keeps the same marks.
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
# Limits no authored file comes near (the largest holds ~8,000 values, 15 levels deep), so a
# mangled or hostile file is an error rather than a RecursionError or an exhausted process.
MAX_DEPTH = 100
MAX_VALUES = 1_000_000
_UNREADABLE = object()  # a scalar whose tag could not build a value (an error says why)


@dataclass(frozen=True, slots=True)
class LocatedError:
    """A YAML-level problem (syntax, duplicate key) at a 1-based line and column."""

    line: int
    col: int
    field: str
    message: str


@dataclass(slots=True)
class Located:
    """A parsed document with the position of every value, by path."""

    value: Any
    positions: dict[Path_, tuple[int, int]] = field(default_factory=dict)

    def position(self, path: Path_) -> tuple[int, int]:
        """The position of `path`, or of its nearest ancestor that has one."""
        for end in range(len(path), -1, -1):
            found = self.positions.get(tuple(path[:end]))
            if found is not None:
                return found
        return (1, 1)


# An unquoted scalar holding a flow indicator (`[`, `]`, `{`, `}`, `,`) inside a flow
# collection: `{unit: mm[Hg]}` ends the scalar at `[`.
_FLOW_SCALAR = re.compile(r"[:\[{,]\s*([^\s\"'{}\[\],:]+\[[^\]\s]*\][^\s\"',{}\[\]]*)")


def _likely_cause(text: str, exc: yaml.MarkedYAMLError) -> str | None:
    """What probably broke a flow collection (`{...}`, `[...]`): an unquoted value holding
    brackets or braces, which YAML reads as the collection's own punctuation."""
    if "expected ',' or '}'" not in str(exc.problem) and "expected ',' or ']'" not in str(
        exc.problem
    ):
        return None
    mark = exc.problem_mark
    lines = text.splitlines()
    if mark is None or mark.line >= len(lines):
        return None
    for match in _FLOW_SCALAR.finditer(lines[mark.line]):
        value = match.group(1)
        return f'quote `{value}` ("{value}"): unquoted, its brackets end the {{...}} or [...]'
    return "a value with `[`, `]`, `{`, `}` or `,` inside {...} or [...] must be quoted"


def load_yaml(text: str) -> tuple[Located | None, list[LocatedError]]:
    """Parse one YAML document. Returns the value with positions, or None and the errors."""
    try:
        node = yaml.compose(text, Loader=_LOADER)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        message = f"YAML syntax error: {exc.problem}"
        hint = _likely_cause(text, exc) if mark else None
        return None, [LocatedError(line, col, "", f"{message}; {hint}" if hint else message)]
    except yaml.YAMLError as exc:
        return None, [LocatedError(1, 1, "", f"YAML error: {exc}")]
    located = Located(None)
    errors: list[LocatedError] = []
    if node is None:
        return located, errors
    located.value = _Builder(located, errors).build(node, ())
    return (None if errors else located), errors


def field_path(path: Path_) -> str:
    """A location as a field path for messages: `card.suggestions[0].label`."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


class _Builder:
    def __init__(self, located: Located, errors: list[LocatedError]) -> None:
        self.located = located
        self.errors = errors
        self.scalars = yaml.SafeLoader("")
        self.open: set[int] = set()  # the collections being built: an alias inside one loops
        self.count = 0

    def build(self, node: yaml.Node, path: Path_) -> Any:
        self.located.positions.setdefault(
            path, (node.start_mark.line + 1, node.start_mark.column + 1)
        )
        self.count += 1
        if self.count > MAX_VALUES:
            if self.count == MAX_VALUES + 1:
                message = f"more than {MAX_VALUES} values: aliases (*name) expand too far"
                self.errors.append(_at(node, path, message))
            return None
        if not isinstance(node, yaml.MappingNode | yaml.SequenceNode):
            value = self._construct(node, path)
            return None if value is _UNREADABLE else value
        if len(path) >= MAX_DEPTH:
            self.errors.append(_at(node, path, f"nested deeper than {MAX_DEPTH} levels"))
            return None
        if id(node) in self.open:
            message = "an alias (*name) inside the value its anchor (&name) marks loops forever"
            self.errors.append(_at(node, path, message))
            return None
        self.open.add(id(node))
        try:
            if isinstance(node, yaml.MappingNode):
                return self._mapping(node, path)
            return [self.build(item, (*path, i)) for i, item in enumerate(node.value)]
        finally:
            self.open.discard(id(node))

    def _construct(self, node: yaml.Node, path: Path_) -> Any:
        """A scalar's value, or _UNREADABLE (and an error) when its tag cannot make one."""
        try:
            return self.scalars.construct_object(node)
        except Exception as exc:  # PyYAML's constructors fail in many ways (`!!int x`, `!foo`)
            self.errors.append(_at(node, path, _unreadable(node, exc)))
            return _UNREADABLE

    def _mapping(self, node: yaml.MappingNode, path: Path_) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                self.errors.append(_at(key_node, path, "merge keys (<<) are not supported"))
                continue
            key = self._construct(key_node, path)
            if key is _UNREADABLE:
                continue
            if not isinstance(key, str):
                self.errors.append(_at(key_node, path, f"keys must be text, not {key!r}"))
                continue
            member = (*path, key)
            if key in out:
                first = self.located.positions.get(member, (0, 0))[0]
                self.errors.append(
                    _at(key_node, member, f"duplicate key '{key}' (first at line {first})")
                )
                continue
            # Errors about a member point at its key, where the author looks for them.
            self.located.positions[member] = (
                key_node.start_mark.line + 1,
                key_node.start_mark.column + 1,
            )
            out[key] = self.build(value_node, member)
        return out


def _unreadable(node: yaml.Node, exc: Exception) -> str:
    """Why a tagged scalar has no value: `!foo x`, `!!int x`, an implicit date `2026-02-30`."""
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem:
        return f"YAML error: {exc.problem}"
    tag = str(node.tag).replace("tag:yaml.org,2002:", "!!")
    reason = f" ({exc})" if isinstance(exc, ValueError) and str(exc) else ""
    return f"YAML error: not a valid {tag}{reason}; quote the value if it is text"


def _at(node: yaml.Node, path: Path_, message: str) -> LocatedError:
    return LocatedError(
        node.start_mark.line + 1, node.start_mark.column + 1, field_path(path), message
    )


def read_yaml(path: Path) -> tuple[Located | None, list[LocatedError]]:
    """`load_yaml` for a file; an unreadable file is one error."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return None, [LocatedError(1, 1, "", f"cannot read file: {exc.__class__.__name__}")]
    return load_yaml(text)
