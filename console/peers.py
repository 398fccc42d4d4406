"""Asking every worker of the app for its share: this one answers itself, the others over HTTP on
their internal view (`/console/internal/...`) with the operator token of this worker's settings
(every worker of a deployment shares it, and a person logged in by cookie has no header to forward).

The workers are those of Faust's assignment (`changelog_distribution`: each member's advertised
URL), so a worker that died but is still assigned is asked, and shown as not answering.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from typing import TypeVar

import aiohttp
import faust
from pydantic import BaseModel, ValidationError

from console.local import changelog_distribution, worker_url

PEER_TIMEOUT_S = 3.0
"""A worker that takes longer is shown as not answering; the page does not wait for it."""

M = TypeVar("M", bound=BaseModel)


def app_workers(app: faust.App) -> list[str]:
    """Every worker of the assignment, this one included."""
    return sorted({*changelog_distribution(app), worker_url(app)})


async def ask_peer(
    session: aiohttp.ClientSession, url: str, path: str, params: Mapping[str, str], token: str, model: type[M]
) -> M:
    timeout = aiohttp.ClientTimeout(total=PEER_TIMEOUT_S)
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
    async with session.get(url.rstrip("/") + path, params=params, headers=headers, timeout=timeout) as response:
        if response.status != 200:
            raise RuntimeError(f"HTTP {response.status}")
        return model.model_validate_json(await response.read())


def describe(error: BaseException) -> str:
    if isinstance(error, asyncio.TimeoutError | TimeoutError):
        return f"no answer within {PEER_TIMEOUT_S:.0f} s"
    if isinstance(error, ValidationError):
        return "answered something that is not the console's JSON"
    return f"{type(error).__name__}: {error}"[:200]


async def ask_all(
    app: faust.App,
    token: str,
    path: str,
    params: Mapping[str, str],
    model: type[M],
    here: Callable[[], Awaitable[M]],
) -> tuple[list[str], dict[str, M | None], dict[str, str]]:
    """(workers, answer per worker or None, error per worker that did not answer)."""
    workers = app_workers(app)
    me = worker_url(app)
    async with aiohttp.ClientSession() as session:

        async def one(url: str) -> M:
            if url == me:
                return await here()
            return await ask_peer(session, url, path, params, token, model)

        results = await asyncio.gather(*(one(url) for url in workers), return_exceptions=True)
    answers: dict[str, M | None] = {}
    errors: dict[str, str] = {}
    for url, result in zip(workers, results, strict=True):
        if isinstance(result, BaseException):
            answers[url], errors[url] = None, describe(result)
        else:
            answers[url] = result
    return workers, answers, errors
