"""'Did you mean': the known names closest to a misspelt one, for error messages."""

from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = ["did_you_mean", "unknown_name"]


def did_you_mean(name: str, known: Iterable[str], *, limit: int = 3) -> list[str]:
    """Up to `limit` known names close to `name` (spelling, case), closest first."""
    names = sorted(set(known))
    by_lower = {n.lower(): n for n in names}
    close = difflib.get_close_matches(name.lower(), list(by_lower), n=limit, cutoff=0.7)
    return [by_lower[c] for c in close]


def unknown_name(kind: str, name: str, known: Iterable[str], *, listed: int = 12) -> str:
    """ "unknown value set 'hba1C' (did you mean 'hba1c'?)", or, with nothing close, the known
    names (up to `listed` of them, then how many more)."""
    names = sorted(set(known))
    close = did_you_mean(name, names)
    if close:
        hint = " or ".join(f"'{n}'" for n in close)
        return f"unknown {kind} '{name}' (did you mean {hint}?)"
    if not names:
        return f"unknown {kind} '{name}' (none are known)"
    shown = ", ".join(names[:listed])
    more = f" and {len(names) - listed} more" if len(names) > listed else ""
    return f"unknown {kind} '{name}' (known: {shown}{more})"
