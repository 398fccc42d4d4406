"""Checking a password: at login, and wherever a signed-in user must give it again (a password
change, the erasure of the account). Every check counts against the login throttle under the
folded username and the client's address, so no route is a second door to guess through."""

from __future__ import annotations

from typing import Any

from prometheus_client import Counter

from gateway.auth.passwords import verify_password
from gateway.auth.throttle import LoginThrottle
from gateway.rest.errors import invalid_credentials

PASSWORD_CHECKS = Counter(
    "gateway_login_password_checks_total",
    "Passwords verified (argon2id) by login, password change and account erasure:"
    " at most the throttle's limit per account and window",
)

Found = tuple[dict[str, Any], str] | None
"""A user (as JSON) and its password hash, as `gateway.infra.read_store.credentials` gives them."""


async def verified(
    throttle: LoginThrottle, username: str, address: str, password: str, found: Found
) -> tuple[dict[str, Any], str]:
    """`found` if `password` is its user's (None: no such user, checked against a dummy hash all
    the same); else 401 `invalid_credentials`, and 429 once the throttle says so. The attempt is
    counted before the password is checked, so concurrent guesses cannot outrun the limit."""
    await throttle.reserve(username, address)
    try:
        PASSWORD_CHECKS.inc()
        right = await verify_password(found[1] if found else None, password)
    except Exception:
        await throttle.undecided(username, address)
        raise
    if not right or found is None:
        raise invalid_credentials()
    await throttle.succeeded(username, address)
    return found
