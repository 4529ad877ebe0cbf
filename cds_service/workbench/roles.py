"""Who gets which workbench role: `CDS_WORKBENCH_AUTHORS` and `CDS_WORKBENCH_READERS`.

Each list holds emails and `group:NAME` entries (settings lower-case the emails). An account is
an author when its email or one of its groups is listed as an author, else a reader when listed
as a reader, else it may not sign in at all.

>>> role_for("Ana@Example.org", ("cds-team",), authors=["ana@example.org"], readers=[])
'author'
>>> role_for(None, ("cds-team",), authors=[], readers=["group:cds-team"])
'reader'
>>> role_for("eve@example.org", (), authors=[], readers=["group:cds-team"]) is None
True
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from typing import Literal

__all__ = ["Role", "policy_fingerprint", "role_for"]

Role = Literal["reader", "author"]


def _listed(email: str | None, groups: Iterable[str], members: Sequence[str]) -> bool:
    wanted = set(members)
    if email is not None and email.lower() in wanted:
        return True
    return any(f"group:{group}" in wanted for group in groups)


def role_for(
    email: str | None, groups: Iterable[str], *, authors: Sequence[str], readers: Sequence[str]
) -> Role | None:
    """The role of an account with this (verified) email and these groups, or None."""
    groups = tuple(groups)
    if _listed(email, groups, authors):
        return "author"
    if _listed(email, groups, readers):
        return "reader"
    return None


def policy_fingerprint(authors: Sequence[str], readers: Sequence[str]) -> str:
    """A short digest of who may do what: a session signed in under another policy (the lists
    changed since) is no longer honoured, so removing someone takes effect at once."""
    text = "\n".join(["authors", *sorted(authors), "readers", *sorted(readers)])
    return hashlib.sha256(text.encode()).hexdigest()[:16]
