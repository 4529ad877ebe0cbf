"""YAML shown with colours: a small line tokenizer producing escaped HTML spans.

It colours what an author scans for (keys, comments, strings, numbers, booleans, list dashes)
and never changes the text: removing the tags and unescaping gives the input back (tested).
Block scalars (`|`, `>`) are shown as plain text, as their content is prose or FHIRPath.
"""

from __future__ import annotations

import re
from html import escape

__all__ = ["highlight_yaml"]

_KEY = re.compile(r"^(\s*)(- )?([A-Za-z_$][\w.$-]*|\"[^\"]*\"|'[^']*')(:)(?=\s|$)")
_TOKEN = re.compile(
    r"(?P<comment>\s#.*$)"
    r"|(?P<string>\"(?:[^\"\\]|\\.)*\"|'(?:[^']|'')*')"
    r"|(?P<number>(?<![\w.:/-])-?\d+(?:\.\d+)?(?![\w.:/-]))"
    r"|(?P<bool>(?<![\w-])(?:true|false|null|~)(?![\w-]))"
)


def _span(kind: str, text: str) -> str:
    return f'<span class="y-{kind}">{escape(text, quote=False)}</span>'


def _value(text: str) -> str:
    out, at = [], 0
    for match in _TOKEN.finditer(text):
        out.append(escape(text[at : match.start()], quote=False))
        kind = match.lastgroup or "plain"
        out.append(_span(kind, match.group()))
        at = match.end()
    out.append(escape(text[at:], quote=False))
    return "".join(out)


def _line(line: str, block_indent: int | None) -> tuple[str, int | None]:
    """One line's HTML, and the indentation of the block scalar it opens or continues."""
    indent = len(line) - len(line.lstrip(" "))
    if block_indent is not None:
        if not line.strip() or indent > block_indent:
            return escape(line, quote=False), block_indent
        block_indent = None
    if line.lstrip().startswith("#"):
        return _span("comment", line), None
    match = _KEY.match(line)
    if match is None:
        dash = re.match(r"^(\s*)(- )", line)
        if dash:
            rest = line[dash.end() :]
            return escape(dash.group(1), quote=False) + _span("dash", "- ") + _value(rest), None
        return _value(line), None
    lead, dash_text, key, colon = match.groups()
    rest = line[match.end() :]
    html = escape(lead, quote=False)
    if dash_text:
        html += _span("dash", dash_text)
    html += _span("key", key) + escape(colon, quote=False)
    opens_block = re.match(r"^\s*[|>][-+]?\d*\s*(#.*)?$", rest) is not None
    html += _value(rest)
    return html, (indent if opens_block else None)


def highlight_yaml(text: str) -> list[str]:
    """Each line of `text` as HTML (escaped, with `y-*` classed spans)."""
    lines, block = [], None
    for line in text.split("\n"):
        html, block = _line(line, block)
        lines.append(html)
    return lines
