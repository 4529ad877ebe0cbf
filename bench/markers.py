"""Writing a benchmark's generated text into docs/benchmarks.md between its two markers."""

from __future__ import annotations

from pathlib import Path

__all__ = ["write_between"]


def write_between(document: Path, begin: str, end: str, text: str, heading: str) -> None:
    """Replace what is between `begin` and `end` with `text`; with no markers yet, append a
    section `heading` holding them."""
    content = document.read_text(encoding="utf-8")
    if begin not in content or end not in content:
        content = content.rstrip() + f"\n\n## {heading}\n\n{begin}\n{end}\n"
    head, _, rest = content.partition(begin)
    _, _, tail = rest.partition(end)
    document.write_text(f"{head}{begin}\n{text}{end}{tail}", encoding="utf-8")
