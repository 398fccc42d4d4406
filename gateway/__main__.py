"""`python -m gateway`: serve the gateway on GATEWAY_HOST:GATEWAY_PORT until SIGTERM or SIGINT."""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence

import click
import uvloop
from aiohttp import web

from config.logs import configure
from config.settings import GatewaySettings, load
from gateway.access_log import ACCESS_LOGGER, AccessLog
from gateway.app import create_app
from runtime.cli import HELP_OPTIONS, run

log = logging.getLogger("gateway")

PROG = "python -m gateway"
SHUTDOWN_TIMEOUT_S = 8.0


@click.command(context_settings=HELP_OPTIONS)
def serve() -> int:
    """Serve the REST API and the WebSocket on GATEWAY_HOST:GATEWAY_PORT (127.0.0.1:8080) until
    SIGTERM or SIGINT, then close the sockets within 8 s.

    Every setting is an environment variable (or a line of `.env`), listed with its default in
    `.env.example`: DATABASE_URL, REDIS_URL, KAFKA_BROKERS, JWT_SECRET, CHAT_ID_KEY, ... A missing or
    malformed one stops the gateway at once with one line naming it (exit 2). Logs go to stderr,
    one JSON object per line (LOG_FORMAT=json) or text (LOG_FORMAT=text), with one access line per
    HTTP request.
    """
    settings = load(GatewaySettings)
    configure(settings.log_format, settings.log_level)
    log.info("starting on http://%s:%d", settings.gateway_host, settings.gateway_port)
    web.run_app(
        create_app(settings),
        host=settings.gateway_host,
        port=settings.gateway_port,
        shutdown_timeout=SHUTDOWN_TIMEOUT_S,
        loop=uvloop.new_event_loop(),
        access_log=ACCESS_LOGGER,
        access_log_class=AccessLog,
        print=None,  # not aiohttp's banner between the JSON lines: the line below instead
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run(serve, PROG, argv)


if __name__ == "__main__":
    sys.exit(main())
