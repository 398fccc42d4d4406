"""`SEAL_TEXTS` (docs/erasure.md): a gateway seals the texts it sends unless told not to, for a
rolling upgrade; the use cases then send plain texts (the gateway still opens sealed ones)."""

from __future__ import annotations

from typing import Any, cast

import pytest
from aiohttp import web

from config.settings import GatewaySettings
from gateway.infra.command_bus import COMMAND_BUS
from gateway.infra.consistency import WATERMARKS
from gateway.infra.content_keys import CONTENT_KEYS
from gateway.infra.limits import WRITE_BUDGET
from gateway.infra.resources import PG_POOL, SETTINGS
from gateway.usecases.ports import PORTS, ports_ctx

SECRET = "0123456789abcdef" * 2


@pytest.mark.parametrize("seal", [True, False])
async def test_the_use_cases_seal_only_where_the_setting_says(seal: bool) -> None:
    app = web.Application()
    keys: Any = object()
    app[SETTINGS] = GatewaySettings(jwt_secret=SECRET, seal_texts=seal)
    for key in (COMMAND_BUS, WATERMARKS, PG_POOL, WRITE_BUDGET):
        app[cast(Any, key)] = object()
    app[CONTENT_KEYS] = keys
    context = ports_ctx(app)
    await anext(context)
    assert app[PORTS].texts is (keys if seal else None)


def test_sealing_is_on_by_default() -> None:
    assert GatewaySettings(jwt_secret=SECRET).seal_texts is True
