"""Accounts: register, change one's profile, read a user.

A username's uniqueness is the user agent's to decide (`username_taken`): the read model is not
asked first, as it may lag behind a registration just made.
"""

from __future__ import annotations

import uuid
from typing import Any

from gateway.auth.passwords import hash_password
from gateway.infra import read_store
from gateway.usecases.commands import execute
from gateway.usecases.ports import Actor, Ports
from gateway.usecases.refusal import NOT_FOUND, Refused
from schemas.commands import Register, UpdateProfile, UserResult


async def register(ports: Ports, username: str, password: str, display_name: str | None) -> dict[str, Any]:
    """The new user (its name folded by `schemas.api.RegisterBody`); `Refused` `username_taken`."""
    command = Register(
        user_id=uuid.uuid4(),
        username=username,
        display_name=display_name or username,
        password_hash=await hash_password(password),
    )
    reply = await execute(ports, None, command)
    return reply.result_as(UserResult).user.model_dump(mode="json")


async def update_profile(ports: Ports, actor: Actor, display_name: str | None, bio: str | None) -> dict[str, Any]:
    """The actor's profile with the change made."""
    await execute(ports, actor, UpdateProfile(user_id=actor.user_id, display_name=display_name, bio=bio))
    return await user(ports, actor.user_id)


async def user(ports: Ports, user_id: uuid.UUID) -> dict[str, Any]:
    """A user's public profile; `Refused` `not_found`."""
    found = await read_store.user_by_id(ports.pool, user_id)
    if found is None:
        raise Refused(NOT_FOUND, "no such user")
    return found
