"""PKCE (RFC 7636) with S256, always: a fresh verifier per authorization request."""

from __future__ import annotations

import base64
import hashlib
import secrets

__all__ = ["challenge", "new_state", "new_verifier"]


def new_verifier() -> str:
    """A 64-character verifier (the RFC allows 43-128 unreserved characters)."""
    return secrets.token_urlsafe(48)


def challenge(verifier: str) -> str:
    """BASE64URL(SHA256(verifier)) without padding."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def new_state() -> str:
    """An unguessable `state` value."""
    return secrets.token_urlsafe(24)
