"""The client's private key for SMART Backend Services, from a PEM file or a JWK (JSON) file.

SMART App Launch 2.x requires RS384 or ES384 client assertions, so an RSA key (at least 2048 bits)
signs with RS384 and an EC key on P-384 with ES384; other keys are refused. A JSON file may hold
one JWK or a JWK Set; the first private key in it (with the wanted ``kid``, when one is given) is
used. The ``kid`` comes from the argument, else the JWK, else (PEM files) the key's RFC 7638 JWK
thumbprint — register the public key under that ``kid`` (see `jwk_thumbprint`) or pass your own.
Error messages never include key material.
"""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any, Literal, NamedTuple

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from cds_service.bulk.errors import BulkError

__all__ = [
    "PrivateKey",
    "SigningAlg",
    "SigningKey",
    "jwk_thumbprint",
    "load_private_key",
    "public_jwk",
    "signing_alg",
]

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
AnyKey = PrivateKey | rsa.RSAPublicKey | ec.EllipticCurvePublicKey
SigningAlg = Literal["RS384", "ES384"]
_MIN_RSA_BITS = 2048


class SigningKey(NamedTuple):
    """A private key, the JWS algorithm it signs with, and the key id sent in the JWT header."""

    key: PrivateKey
    alg: SigningAlg
    kid: str


def load_private_key(
    path: Path, *, kid: str | None = None, password: bytes | None = None
) -> SigningKey:
    """(key, alg, kid) from a PEM or JWK/JWKS file; BulkError when it is unusable."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise BulkError(f"cannot read the private key file {path} ({type(exc).__name__})") from None
    if data.lstrip().startswith(b"{"):
        key, jwk_kid, jwk_alg = _from_jwk_file(data, kid, path)
    else:
        key, jwk_kid, jwk_alg = _from_pem(data, password, path), None, None
    alg = signing_alg(key)
    if jwk_alg is not None and jwk_alg != alg:
        raise BulkError(f"the key in {path} is marked alg {jwk_alg!r}; SMART needs {alg}")
    return SigningKey(key, alg, kid or jwk_kid or jwk_thumbprint(key))


def signing_alg(key: PrivateKey) -> SigningAlg:
    """RS384 for RSA keys of 2048 bits or more, ES384 for P-384 keys; BulkError otherwise."""
    if isinstance(key, rsa.RSAPrivateKey):
        if key.key_size < _MIN_RSA_BITS:
            raise BulkError(f"the RSA key has {key.key_size} bits; at least 2048 are needed")
        return "RS384"
    if isinstance(key.curve, ec.SECP384R1):
        return "ES384"
    raise BulkError(f"the EC key is on {key.curve.name}; SMART Backend Services needs P-384")


def jwk_thumbprint(key: AnyKey) -> str:
    """The RFC 7638 SHA-256 thumbprint of the key's public JWK (base64url, no padding)."""
    jwk = public_jwk(key)
    members = ("e", "kty", "n") if jwk["kty"] == "RSA" else ("crv", "kty", "x", "y")
    canonical = json.dumps({m: jwk[m] for m in members}, separators=(",", ":"), sort_keys=True)
    digest = hashlib.sha256(canonical.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def public_jwk(key: AnyKey) -> dict[str, Any]:
    """The public half of the key as a JWK (what the client registers with the server)."""
    public = key.public_key() if isinstance(key, PrivateKey) else key
    if isinstance(public, rsa.RSAPublicKey):
        jwk = RSAAlgorithm.to_jwk(public, as_dict=True)
    else:
        jwk = ECAlgorithm.to_jwk(public, as_dict=True)
    assert isinstance(jwk, dict)
    return dict(jwk)


def _from_pem(data: bytes, password: bytes | None, path: Path) -> PrivateKey:
    try:
        key = serialization.load_pem_private_key(data, password=password)
    except TypeError:
        raise BulkError(f"the private key in {path} is encrypted; a password is needed") from None
    except ValueError:
        raise BulkError(f"{path} holds no readable PEM private key (or a wrong password)") from None
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise BulkError(f"the key in {path} is neither RSA nor EC")
    return key


def _from_jwk_file(
    data: bytes, kid: str | None, path: Path
) -> tuple[PrivateKey, str | None, str | None]:
    try:
        document = json.loads(data)
    except ValueError:
        raise BulkError(f"{path} is not valid JSON") from None
    if not isinstance(document, dict):
        raise BulkError(f"{path} holds neither a JWK nor a JWK Set")
    candidates = document.get("keys") if "keys" in document else [document]
    if not isinstance(candidates, list):
        raise BulkError(f"{path}: 'keys' is not a list")
    for jwk in candidates:
        if not isinstance(jwk, dict) or "d" not in jwk:
            continue  # a public key
        if kid is not None and jwk.get("kid") not in (None, kid):
            continue
        key = _key_from_jwk(jwk, path)
        jwk_kid = jwk.get("kid")
        jwk_alg = jwk.get("alg")
        return (
            key,
            jwk_kid if isinstance(jwk_kid, str) else None,
            jwk_alg if isinstance(jwk_alg, str) else None,
        )
    wanted = f" with kid {kid!r}" if kid is not None else ""
    raise BulkError(f"{path} holds no private key{wanted}")


def _key_from_jwk(jwk: dict[str, Any], path: Path) -> PrivateKey:
    kty = jwk.get("kty")
    if kty not in ("RSA", "EC"):
        raise BulkError(f"{path}: key type {kty!r} is not supported (RSA or EC)")
    try:
        key: Any = RSAAlgorithm.from_jwk(jwk) if kty == "RSA" else ECAlgorithm.from_jwk(jwk)
    except Exception:  # PyJWT raises InvalidKeyError, ValueError, KeyError… on bad members
        raise BulkError(f"{path}: the JWK is malformed") from None
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise BulkError(f"{path}: the JWK is not a private key")
    return key
