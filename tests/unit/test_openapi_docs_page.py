"""`/docs`: the Swagger UI page, its assets (from the swagger-ui-bundle package, not a CDN) and
the spec files, served without a token by the gateway's docs routes alone (no service needed)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from gateway.rest import docs
from gateway.rest.errors import error_middleware

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
async def client() -> AsyncIterator[TestClient[web.Request, web.Application]]:
    app = web.Application(middlewares=[error_middleware])
    app.add_routes(docs.routes)
    async with TestClient(TestServer(app)) as test_client:
        yield test_client


async def test_the_page_loads_swagger_ui_from_the_gateway_itself(
    client: TestClient[web.Request, web.Application],
) -> None:
    response = await client.get("/docs")
    assert response.status == 200 and response.content_type == "text/html"
    page = await response.text()
    assert '"/docs/swagger.json"' in await (await client.get("/docs/swagger-init.js")).text()
    assert not re.search(r"(src|href)=\"(https?:)?//", page), "the page must not load anything from elsewhere"
    assets = re.findall(r"(?:src|href)=\"(/docs/static/[^\"]+)\"", page)
    assert {"/docs/static/swagger-ui-bundle.js", "/docs/static/swagger-ui.css"} <= set(assets)
    for asset in assets:
        answer = await client.get(asset)
        assert answer.status == 200, asset
        assert len(await answer.read()) > 0


async def test_the_spec_files_are_served_as_they_are(client: TestClient[web.Request, web.Application]) -> None:
    for name, media_type in [
        ("swagger.json", "application/json"),
        ("swagger.yaml", "application/yaml"),
        ("asyncapi.yaml", "application/yaml"),
        ("contract.md", "text/markdown"),
    ]:
        response = await client.get(f"/docs/{name}")
        assert response.status == 200 and response.content_type == media_type, name
        assert await response.read() == (ROOT / "docs" / name).read_bytes()


async def test_a_missing_asset_is_an_enveloped_404(client: TestClient[web.Request, web.Application]) -> None:
    response = await client.get("/docs/static/no-such-file.js")
    assert response.status == 404
    assert (await response.json())["error"]["code"] == "not_found"
