"""CDS Hooks 2.0 prefetch templates: `{{context.x}}` and the four `{{user…Id}}` tokens.

Only root-level context fields with a primitive value may be used (2.0 "Prefetch tokens");
`{{context.medication.id}}`, FHIRPath and `today()` are 3.0-ballot features and are rejected
when a service is registered, so a template that renders at all is conformant.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import lru_cache
from typing import Any
from urllib.parse import quote

from cds_service.exceptions import ConfigurationError

__all__ = ["USER_TOKENS", "check_template", "render_template", "user_tokens"]

_TOKEN = re.compile(r"\{\{\s*([^{}]*?)\s*\}\}")
_CONTEXT_FIELD = re.compile(r"^context\.([A-Za-z][A-Za-z0-9_-]*)$")
USER_TOKENS = {
    "userPractitionerId": "Practitioner",
    "userPractitionerRoleId": "PractitionerRole",
    "userPatientId": "Patient",
    "userRelatedPersonId": "RelatedPerson",
}


def check_template(template: str) -> None:
    """Raise ConfigurationError unless `template` is a relative FHIR read or search URL
    whose tokens are all valid CDS Hooks 2.0 tokens."""
    outside_tokens = _TOKEN.sub("", template)
    if (
        not template
        or template.startswith(("/", "http:", "https:"))
        or any(c.isspace() for c in outside_tokens)
    ):
        raise ConfigurationError(f"prefetch template {template!r} must be a relative FHIR URL")
    if "{{" in outside_tokens or "}}" in outside_tokens:
        raise ConfigurationError(f"prefetch template {template!r} has unbalanced braces")
    for token in _TOKEN.findall(template):
        if token not in USER_TOKENS and not _CONTEXT_FIELD.match(token):
            raise ConfigurationError(
                f"prefetch template {template!r}: {{{{{token}}}}} is not a CDS Hooks 2.0 token "
                "(use {{context.<root field>}} or {{userPractitionerId}} and friends)"
            )


def user_tokens(context: Mapping[str, Any]) -> dict[str, str]:
    """Derive `userPractitionerId` etc. from `context.userId` (`Practitioner/123` → `123`)."""
    user = context.get("userId")
    if not isinstance(user, str) or "/" not in user:
        return {}
    resource_type, _, ident = user.partition("/")
    return {
        token: ident for token, rtype in USER_TOKENS.items() if rtype == resource_type and ident
    }


def render_template(template: str, context: Mapping[str, Any]) -> str | None:
    """Fill the tokens of a checked template from the hook context.

    Returns None when a token cannot be filled (the field is absent, or not a primitive): such a
    key does not apply to this call and is neither fetched nor reported missing. Values are
    percent-encoded so a context value can never add path segments or query parameters.
    """
    parts, tokens = _parts(template)
    if not tokens:
        return template
    users: dict[str, str] | None = None
    out = [parts[0]]
    for (token, field), after in zip(tokens, parts[1:], strict=True):
        value: Any
        if field is not None:
            value = context.get(field)
        elif token in USER_TOKENS:
            if users is None:
                users = user_tokens(context)
            value = users.get(token)
        else:
            value = None
        if isinstance(value, bool) or not isinstance(value, str | int | float) or value == "":
            return None
        out.append(quote(str(value), safe="-._~"))
        out.append(after)
    return "".join(out)


@lru_cache(maxsize=4096)
def _parts(template: str) -> tuple[tuple[str, ...], tuple[tuple[str, str | None], ...]]:
    """A template cut once into its literal parts and its tokens, each token with the context
    field it names (None for a user token or an unknown one): calls render the same few
    templates, some of them long (a search of sixty codes)."""
    pieces = _TOKEN.split(template)
    tokens = []
    for token in pieces[1::2]:
        field = _CONTEXT_FIELD.match(token)
        tokens.append((token, field.group(1) if field else None))
    return tuple(pieces[::2]), tuple(tokens)
