"""Access tokens: what is accepted, and that everything else is `invalid_token` or `token_expired`."""

from __future__ import annotations

import base64
import time
import uuid
from typing import Any

import jwt
import orjson
import pytest

from config.settings import GatewaySettings
from gateway.auth.tokens import (
    LEEWAY_SECONDS,
    REQUIRED_CLAIMS,
    AccessClaims,
    issue_access_token,
    verify_access_claims,
    verify_access_token,
)
from gateway.rest.errors import ApiError

TTL = 900
USER = uuid.UUID("0b9e4c5e-8f1a-4f0e-9a51-7c1d2b3a4f56")
SESSION = "5d41402abc4b2a76b9719d911017c592"


@pytest.fixture
def settings(jwt_secret: str) -> GatewaySettings:
    return GatewaySettings(
        jwt_secret=jwt_secret,
        jwt_issuer="messenger",
        jwt_audience="messenger-clients",
        access_token_ttl_seconds=TTL,
    )


def claims(settings: GatewaySettings, **changes: Any) -> dict[str, Any]:
    now = int(time.time())
    base: dict[str, Any] = {
        "sub": str(USER),
        "sid": SESSION,
        "iat": now,
        "exp": now + TTL,
        "iss": settings.jwt_issuer,
        "aud": settings.jwt_audience,
        "jti": uuid.uuid4().hex,
    }
    base.update(changes)
    return base


def sign(payload: dict[str, Any], key: str, algorithm: str = "HS256") -> str:
    return jwt.encode(payload, key, algorithm=algorithm)


def b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(data)).rstrip(b"=").decode()


def rejection(settings: GatewaySettings, token: str) -> str:
    with pytest.raises(ApiError) as caught:
        verify_access_token(settings, token)
    assert caught.value.status == 401
    return caught.value.code


def test_a_fresh_token_names_its_user(settings: GatewaySettings) -> None:
    token, expires_in = issue_access_token(settings, USER, SESSION)
    assert expires_in == TTL
    assert verify_access_token(settings, token) == USER


def test_a_token_names_its_session_and_expiry(settings: GatewaySettings) -> None:
    now = time.time()
    token, _ = issue_access_token(settings, USER, SESSION, now=now)
    assert verify_access_claims(settings, token) == AccessClaims(USER, SESSION, int(now) + TTL)


@pytest.mark.parametrize("sid", ["", "not-a-family", SESSION.upper(), SESSION + "\n", 42, None])
def test_a_session_that_is_not_a_family_id_is_invalid(settings: GatewaySettings, sid: Any) -> None:
    assert rejection(settings, sign(claims(settings, sid=sid), settings.jwt_secret)) == "invalid_token"


def test_a_token_is_only_issued_in_a_session(settings: GatewaySettings) -> None:
    with pytest.raises(ValueError, match="refresh family id"):
        issue_access_token(settings, USER, "")


def test_a_token_carries_every_required_claim_and_pins_hs256(settings: GatewaySettings) -> None:
    token, _ = issue_access_token(settings, USER, SESSION)
    assert jwt.get_unverified_header(token)["alg"] == "HS256"
    payload = jwt.decode(token, options={"verify_signature": False})
    assert set(REQUIRED_CLAIMS) <= set(payload)
    assert payload["exp"] - payload["iat"] == TTL
    assert payload["iss"] == "messenger" and payload["aud"] == "messenger-clients"


def test_each_token_has_its_own_id(settings: GatewaySettings) -> None:
    first, _ = issue_access_token(settings, USER, SESSION)
    second, _ = issue_access_token(settings, USER, SESSION)
    ids = {jwt.decode(t, options={"verify_signature": False})["jti"] for t in (first, second)}
    assert len(ids) == 2


def test_a_tampered_payload_is_invalid(settings: GatewaySettings) -> None:
    token, _ = issue_access_token(settings, USER, SESSION)
    header, _, signature = token.split(".")
    forged = b64(claims(settings, sub=str(uuid.uuid4())))
    assert rejection(settings, f"{header}.{forged}.{signature}") == "invalid_token"


def test_an_expired_token_says_so(settings: GatewaySettings) -> None:
    token, _ = issue_access_token(settings, USER, SESSION, now=time.time() - TTL - LEEWAY_SECONDS - 5)
    assert rejection(settings, token) == "token_expired"


def test_a_token_just_past_exp_is_within_leeway(settings: GatewaySettings) -> None:
    token, _ = issue_access_token(settings, USER, SESSION, now=time.time() - TTL - LEEWAY_SECONDS // 2)
    assert verify_access_token(settings, token) == USER


def test_an_expired_token_of_another_audience_is_invalid_not_expired(settings: GatewaySettings) -> None:
    past = int(time.time()) - 2 * TTL
    token = sign(claims(settings, aud="someone-else", iat=past, exp=past + TTL), settings.jwt_secret)
    assert rejection(settings, token) == "invalid_token"


def test_alg_none_is_refused(settings: GatewaySettings) -> None:
    unsigned = f"{b64({'alg': 'none', 'typ': 'JWT'})}.{b64(claims(settings))}."
    assert rejection(settings, unsigned) == "invalid_token"


def test_another_hmac_algorithm_with_the_right_key_is_refused(settings: GatewaySettings) -> None:
    assert rejection(settings, sign(claims(settings), settings.jwt_secret, "HS512")) == "invalid_token"


def test_a_token_signed_with_another_key_is_invalid(settings: GatewaySettings) -> None:
    assert rejection(settings, sign(claims(settings), "x" * 64)) == "invalid_token"


@pytest.mark.parametrize(("claim", "value"), [("iss", "someone-else"), ("aud", "someone-else")])
def test_a_token_for_someone_else_is_invalid(settings: GatewaySettings, claim: str, value: str) -> None:
    token = sign(claims(settings, **{claim: value}), settings.jwt_secret)
    assert rejection(settings, token) == "invalid_token"


@pytest.mark.parametrize("claim", REQUIRED_CLAIMS)
def test_a_missing_claim_is_invalid(settings: GatewaySettings, claim: str) -> None:
    payload = claims(settings)
    del payload[claim]
    assert rejection(settings, sign(payload, settings.jwt_secret)) == "invalid_token"


@pytest.mark.parametrize("sub", ["not-a-uuid", "", "42"])
def test_a_subject_that_is_not_a_user_id_is_invalid(settings: GatewaySettings, sub: str) -> None:
    assert rejection(settings, sign(claims(settings, sub=sub), settings.jwt_secret)) == "invalid_token"


def test_a_token_issued_in_the_future_is_invalid(settings: GatewaySettings) -> None:
    later = int(time.time()) + 10 * LEEWAY_SECONDS
    token = sign(claims(settings, iat=later, exp=later + TTL), settings.jwt_secret)
    assert rejection(settings, token) == "invalid_token"


@pytest.mark.parametrize("garbage", ["", "abc", "a.b.c", "Bearer x.y.z"])
def test_garbage_is_invalid(settings: GatewaySettings, garbage: str) -> None:
    assert rejection(settings, garbage) == "invalid_token"
