"""`python -m gateway`: serve the gateway on GATEWAY_HOST:GATEWAY_PORT until SIGTERM or SIGINT."""

from __future__ import annotations

import logging

import uvloop
from aiohttp import web

from config.settings import GatewaySettings, load
from gateway.app import create_app

SHUTDOWN_TIMEOUT_S = 8.0


def main() -> None:
    settings = load(GatewaySettings)
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    web.run_app(
        create_app(settings),
        host=settings.gateway_host,
        port=settings.gateway_port,
        shutdown_timeout=SHUTDOWN_TIMEOUT_S,
        loop=uvloop.new_event_loop(),
        access_log=None,
    )


if __name__ == "__main__":
    main()
