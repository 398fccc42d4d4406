"""Accounts: register, change one's profile, read a user.

A username's uniqueness is the user agent's to decide (`username_taken`): the read model is not
asked first, as it may lag behind a registration just made.

Where the gateway seals (docs/erasure.md), a profile's fields go to the log sealed with the
account's one profile key: made at registration, found again for each change.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from gateway.auth.passwords import hash_password
from gateway.infra import read_store
from gateway.infra.content_keys import seal_profile
from gateway.usecases.commands import execute
from gateway.usecases.messaging import key_durable
from gateway.usecases.ports import Actor, Ports
from gateway.usecases.refusal import NOT_FOUND, Refused, unavailable
from schemas.commands import Register, UpdateProfile, UserResult


async def register(ports: Ports, username: str, password: str, display_name: str | None) -> dict[str, Any]:
    """The new user (its name folded by `schemas.api.RegisterBody`); `Refused` `username_taken`."""
    user_id = uuid.uuid4()
    password_hash = await hash_password(password)
    if ports.texts is None:
        command = Register(
            user_id=user_id, username=username, display_name=display_name or username, password_hash=password_hash
        )
        reply = await execute(ports, None, command)
        return reply.result_as(UserResult).user.model_dump(mode="json")
    sealed, key_landed = await ports.texts.seal_new_profile(user_id, display_name or username)
    command = Register(user_id=user_id, username=username, sealed_display_name=sealed, password_hash=password_hash)
    reply = await execute(ports, None, command)
    await key_durable(key_landed)
    return await ports.texts.open_user(reply.result_as(UserResult).user.model_dump(mode="json"))


async def update_profile(ports: Ports, actor: Actor, display_name: str | None, bio: str | None) -> dict[str, Any]:
    """The actor's profile with the change made."""
    await execute(ports, actor, await profile_change(ports, actor.user_id, display_name, bio))
    return await user(ports, actor.user_id)


async def profile_change(ports: Ports, user_id: uuid.UUID, display_name: str | None, bio: str | None) -> UpdateProfile:
    """The change, its fields sealed with the account's profile key where the gateway seals;
    plain for an account registered before profiles were sealed (it has no key), refused for an
    erased one (its key is shredded), `unavailable` while its key cannot be told from none."""
    plain = UpdateProfile(user_id=user_id, display_name=display_name, bio=bio)
    if ports.texts is None or (display_name is None and bio is None):
        return plain
    registered_at = datetime.fromisoformat((await user(ports, user_id))["created_at"])
    key = await ports.texts.profile_key(ports.pool, user_id, registered_at)
    if key == "plain":
        return plain
    if key == "erased":
        raise Refused(NOT_FOUND, "this account is erased")
    if key == "not_known_yet":
        raise unavailable("the profile's key is not readable yet: retry the same request")
    return UpdateProfile(
        user_id=user_id,
        sealed_display_name=None if display_name is None else seal_profile(key, user_id, "display_name", display_name),
        sealed_bio=None if bio is None else seal_profile(key, user_id, "bio", bio),
    )


async def user(ports: Ports, user_id: uuid.UUID) -> dict[str, Any]:
    """A user's public profile; `Refused` `not_found`."""
    found = await read_store.user_by_id(ports.pool, user_id)
    if found is None:
        raise Refused(NOT_FOUND, "no such user")
    return found
