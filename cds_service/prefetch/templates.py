"""CDS Hooks 2.0 prefetch templates: `{{context.x}}` and the four `{{user…Id}}` tokens.

Only root-level context fields with a primitive value may be used (2.0 "Prefetch tokens");
`{{context.medication.id}}`, FHIRPath and `today()` are 3.0-ballot features and are rejected
when a service is registered, so a template that renders at all is conformant.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
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
    users = user_tokens(context)
    missing = False

    def fill(match: re.Match[str]) -> str:
        nonlocal missing
        token = match.group(1)
        if token in USER_TOKENS:
            value: Any = users.get(token)
        else:
            field = _CONTEXT_FIELD.match(token)
            value = context.get(field.group(1)) if field else None
        if isinstance(value, bool) or not isinstance(value, str | int | float) or value == "":
            missing = True
            return ""
        return quote(str(value), safe="-._~")

    rendered = _TOKEN.sub(fill, template)
    return None if missing else rendered
