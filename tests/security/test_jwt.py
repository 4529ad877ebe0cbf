"""JWT verification on every endpoint: what passes, and every way a token is refused."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
from collections.abc import Callable
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi.testclient import TestClient

from cds_service.security.jwt_auth import parse_jws
from tests.security.conftest import (
    ISSUER,
    NOW,
    Keys,
    bearer,
    encounter_start,
    make_token,
)

HOOK = "/cds-services/allergy-documentation"


def assert_refused(response: Any) -> None:
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"] == "Bearer"
    body = response.json()
    assert body["resourceType"] == "OperationOutcome"
    # No detail on the wire: the same generic message whatever the reason.
    assert [i["diagnostics"] for i in body["issue"]] == ["authentication required"]


@pytest.mark.parametrize("alg", ["ES384", "RS384"])
def test_valid_tokens_pass_on_every_endpoint(client: TestClient, keys: Keys, alg: str) -> None:
    kid = "ec-1" if alg == "ES384" else "rsa-1"
    discovery = client.get(
        "/cds-services", headers=bearer(make_token(keys, "/cds-services", alg=alg, kid=kid))
    )
    assert discovery.status_code == 200
    hook = client.post(
        HOOK, json=encounter_start(), headers=bearer(make_token(keys, HOOK, alg=alg, kid=kid))
    )
    assert hook.status_code == 200, hook.text
    [card] = hook.json()["cards"]
    feedback_path = HOOK + "/feedback"
    feedback = client.post(
        feedback_path,
        json={
            "feedback": [
                {
                    "card": card["uuid"],
                    "outcome": "overridden",
                    "outcomeTimestamp": "2030-03-17T17:46:40Z",
                }
            ]
        },
        headers=bearer(make_token(keys, feedback_path, alg=alg, kid=kid)),
    )
    assert feedback.status_code == 200, feedback.text


def test_array_audience_and_tenant_claim(client: TestClient, keys: Keys) -> None:
    token = make_token(
        keys,
        HOOK,
        aud=["https://other.example", "https://cds.example.org" + HOOK],
        tenant="hospital-a",
    )
    assert client.post(HOOK, json=encounter_start(), headers=bearer(token)).status_code == 200


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hs256_with_public_key(keys: Keys) -> str:
    """The classic key-confusion attack: HMAC-sign with the public key as the secret."""
    public = keys.rsa_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header = _b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": "rsa-1"}).encode())
    claims = {
        "iss": ISSUER,
        "aud": "https://cds.example.org" + HOOK,
        "iat": int(NOW),
        "exp": int(NOW) + 300,
        "jti": "hs-1",
    }
    payload = _b64(json.dumps(claims).encode())
    signature = hmac.new(public, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    return f"{header}.{payload}.{_b64(signature)}"


def alg_none(keys: Keys) -> str:
    header = _b64(json.dumps({"alg": "none", "typ": "JWT", "kid": "ec-1"}).encode())
    claims = {
        "iss": ISSUER,
        "aud": "https://cds.example.org" + HOOK,
        "iat": int(NOW),
        "exp": int(NOW) + 300,
        "jti": "none-1",
    }
    return f"{header}.{_b64(json.dumps(claims).encode())}."


REFUSALS: list[tuple[str, Callable[[Keys], str | None], str]] = [
    ("no token", lambda k: None, "no bearer token"),
    ("malformed token", lambda k: "not.a.jwt", "malformed token"),
    ("alg none", alg_none, "algorithm 'none' not accepted"),
    ("HS256 signed with the public key", hs256_with_public_key, "algorithm 'HS256' not accepted"),
    ("unknown kid", lambda k: make_token(k, HOOK, kid="nope"), "unknown kid"),
    ("missing kid", lambda k: make_token(k, HOOK, kid=None), "missing kid"),
    (
        "wrong issuer",
        lambda k: make_token(k, HOOK, iss="https://evil.example"),
        "issuer not allow-listed",
    ),
    (
        "jku not allow-listed",
        lambda k: make_token(k, HOOK, headers={"jku": "https://evil.example/jwks.json"}),
        "jku is neither the tenant's jwks_url nor in its jku_allowed",
    ),
    (
        "discovery token on a hook URL",
        lambda k: make_token(k, "/cds-services"),
        "aud is not the endpoint called",
    ),
    (
        "aud of another service",
        lambda k: make_token(k, "/cds-services/duplicate-therapy"),
        "aud is not the endpoint called",
    ),
    ("expired", lambda k: make_token(k, HOOK, iat=int(NOW) - 600, exp=int(NOW) - 120), "expired"),
    ("nbf in the future", lambda k: make_token(k, HOOK, nbf=int(NOW) + 600), "not yet valid"),
    (
        "iat in the future",
        lambda k: make_token(k, HOOK, iat=int(NOW) + 600, exp=int(NOW) + 900),
        "issued in the future",
    ),
    (
        "lifetime too long",
        lambda k: make_token(k, HOOK, exp=int(NOW) + 86_400),
        "lifetime longer than allowed",
    ),
    (
        "unknown tenant",
        lambda k: make_token(k, HOOK, tenant="hospital-b"),
        "tenant not allow-listed",
    ),
    (
        "signed by another key",
        lambda k: make_token(k, HOOK, key=k.other_ec),
        "signature does not verify",
    ),
    (
        "signature cut short",
        lambda k: make_token(k, HOOK)[:-8],
        "signature does not verify",
    ),
    (
        "signature not base64url",
        lambda k: make_token(k, HOOK).rpartition(".")[0] + ".***",
        "malformed token",
    ),
    (
        "signature of another token",
        lambda k: (
            make_token(k, HOOK).rpartition(".")[0]
            + "."
            + make_token(k, HOOK, jti="other").rpartition(".")[2]
        ),
        "signature does not verify",
    ),
    (
        "ES256 not accepted for the tenant",
        lambda k: make_token(k, HOOK, alg="ES256", key=ec.generate_private_key(ec.SECP256R1())),
        "algorithm 'ES256' not accepted",
    ),
    (
        "claims not a JSON object",
        lambda k: (
            _b64(json.dumps({"alg": "ES384", "kid": "ec-1"}).encode())
            + "."
            + _b64(b"[1]")
            + ".AAAA"
        ),
        "malformed token",
    ),
    (
        "header not JSON",
        lambda k: f"{_b64(b'{alg')}." + make_token(k, HOOK).split(".", 1)[1],
        "malformed token",
    ),
    ("four segments", lambda k: make_token(k, HOOK) + ".AAAA", "malformed token"),
    (
        "junk in the claims segment",
        lambda k: make_token(k, HOOK).replace(".", ".!!", 1),
        "malformed token",
    ),
    ("no jti", lambda k: make_token(k, HOOK, jti=None), "missing jti"),
    ("no exp", lambda k: make_token(k, HOOK, exp=None), "missing exp"),
]


@pytest.mark.parametrize(("name", "token", "reason"), REFUSALS, ids=[r[0] for r in REFUSALS])
def test_refused(
    client: TestClient,
    keys: Keys,
    caplog: pytest.LogCaptureFixture,
    name: str,
    token: Callable[[Keys], str | None],
    reason: str,
) -> None:
    caplog.set_level(logging.WARNING, logger="cds_service.auth")
    value = token(keys)
    headers = bearer(value) if value else {}
    assert_refused(client.post(HOOK, json=encounter_start(), headers=headers))
    assert reason in caplog.text
    if value:
        assert value not in caplog.text  # the token itself is never logged


def test_refused_on_discovery_and_feedback_too(client: TestClient, keys: Keys) -> None:
    assert_refused(client.get("/cds-services"))
    assert_refused(client.post(HOOK + "/feedback", json={"feedback": []}))
    # A token for the hook is not valid for its feedback endpoint.
    assert_refused(
        client.post(
            HOOK + "/feedback", json={"feedback": []}, headers=bearer(make_token(keys, HOOK))
        )
    )


def test_unknown_services_are_hidden_behind_authentication(client: TestClient) -> None:
    assert_refused(client.post("/cds-services/no-such-service", json=encounter_start()))


def test_replayed_jti(client: TestClient, keys: Keys) -> None:
    token = make_token(keys, HOOK)
    assert client.post(HOOK, json=encounter_start(), headers=bearer(token)).status_code == 200
    assert_refused(client.post(HOOK, json=encounter_start(), headers=bearer(token)))


def test_clock_skew_is_tolerated(secure_app: Callable[..., TestClient], keys: Keys) -> None:
    with secure_app(jwt_clock_skew_seconds=60) as client:
        late = make_token(keys, HOOK, iat=int(NOW) - 330, exp=int(NOW) - 30)
        early = make_token(keys, HOOK, nbf=int(NOW) + 30)
        assert client.post(HOOK, json=encounter_start(), headers=bearer(late)).status_code == 200
        assert client.post(HOOK, json=encounter_start(), headers=bearer(early)).status_code == 200


def test_refusals_are_counted_by_reason(client: TestClient, keys: Keys) -> None:
    expired = make_token(keys, HOOK, iat=int(NOW) - 600, exp=int(NOW) - 120)
    client.post(HOOK, json=encounter_start(), headers=bearer(expired))
    client.post(HOOK, json=encounter_start())
    text = client.get("/metrics").text
    assert 'cds_jwt_refusals_total{reason="expired"} 1.0' in text
    assert 'cds_jwt_refusals_total{reason="no bearer token"} 1.0' in text


def test_a_token_is_read_once_as_pyjwt_reads_it(keys: Keys) -> None:
    token = make_token(keys, HOOK)
    parsed = parse_jws(token)
    assert parsed is not None
    header, claims, signed = parsed
    assert header == jwt.get_unverified_header(token)
    assert claims == jwt.decode(token, options={"verify_signature": False})
    head, body, signature = token.split(".")
    assert signed.signing_input == f"{head}.{body}".encode()
    assert signed.signature == base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4))
    # Padding, as some issuers send it, is accepted; a segment of one character over a
    # multiple of four, junk, or the wrong number of segments is not a JWT.
    padded = ".".join(p + "=" * (-len(p) % 4) for p in (head, body, signature))
    assert parse_jws(padded) == parsed
    assert parse_jws("e30.e30.") is not None  # {} and {}, no signature: parsed, then refused
    for bad in ("A.e30.", "e30.A.", "e30.e30.A", "e30.e30", "e30.e30..", "e3=0.e30.", "e30.W10."):
        assert parse_jws(bad) is None, bad
