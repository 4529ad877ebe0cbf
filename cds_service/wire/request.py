"""The hook call request: `POST {baseUrl}/cds-services/{id}` (CDS Hooks 2.0 "HTTP Request")."""

from __future__ import annotations

import re
from typing import Annotated, Any
from uuid import UUID

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    SecretStr,
    StrictInt,
    StrictStr,
    field_validator,
    model_validator,
)

from cds_service.wire.base import InboundModel
from cds_service.wire.fhir import check_resource

__all__ = ["HOOK_NAME_PATTERN", "FhirAuthorization", "HookName", "HookRequest", "PrefetchValue"]

# A hook name: a library hook (`patient-view`) or an organisation's reverse-domain hook
# (`org.example.patient-transmogrify`).
HOOK_NAME_PATTERN = re.compile(r"^[a-z0-9]+(?:[.-][a-z0-9]+)*$", re.IGNORECASE)


def _check_hook_name(value: str) -> str:
    if not HOOK_NAME_PATTERN.match(value) or len(value) > 200:
        raise ValueError("must be a hook name such as 'patient-view' or 'org.example.my-hook'")
    return value


HookName = Annotated[StrictStr, AfterValidator(_check_hook_name)]


def _check_base_url(value: str) -> str:
    if not re.match(r"^https?://[^\s/?#]+[^\s?#]*$", value):
        raise ValueError("must be an absolute http(s) URL without query or fragment")
    return value.rstrip("/")


def _prefetch_value(value: Any) -> Any:
    """A prefetch value is a FHIR resource, or `null` meaning "the query found nothing"."""
    return None if value is None else check_resource(value)


PrefetchValue = Annotated[dict[str, Any] | None, BeforeValidator(_prefetch_value)]


def _parse_uuid(value: Any) -> Any:
    # Only the canonical textual form: pydantic would also take 32 bare hex digits or bytes.
    if not isinstance(value, str) or not re.fullmatch(
        r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}", value
    ):
        raise ValueError("must be a UUID such as 'd1577c69-dfbe-44ad-ba6d-3e05e953b2ea'")
    return value


class FhirAuthorization(InboundModel):
    """The OAuth 2.0 bearer token the client grants us for its FHIR server.

    `access_token` is a secret: it is held as `SecretStr` so it never appears in a repr, a log
    line or a validation message.
    """

    access_token: SecretStr = Field(alias="access_token", min_length=1)
    token_type: StrictStr = Field(alias="token_type")
    expires_in: StrictInt | None = Field(default=None, alias="expires_in", ge=0)
    scope: StrictStr | None = None
    subject: StrictStr | None = None
    patient: StrictStr | None = None

    @field_validator("token_type")
    @classmethod
    def _bearer_only(cls, value: str) -> str:
        if value.lower() != "bearer":
            raise ValueError("must be 'Bearer'")
        return "Bearer"


class HookRequest(InboundModel):
    """A CDS Hooks call. `context` stays raw here; it is validated against the hook's model."""

    hook: HookName
    hook_instance: Annotated[UUID, BeforeValidator(_parse_uuid)]
    fhir_server: Annotated[StrictStr, AfterValidator(_check_base_url)] | None = None
    fhir_authorization: FhirAuthorization | None = None
    context: dict[str, Any]
    prefetch: dict[str, PrefetchValue] | None = None
    extension: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _authorization_needs_server(self) -> HookRequest:
        # cds-r-1: fhirAuthorization.exists() implies fhirServer.exists()
        if self.fhir_authorization is not None and self.fhir_server is None:
            raise ValueError("fhirServer is required when fhirAuthorization is present")
        return self
