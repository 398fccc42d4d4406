"""The Faust app shared shape of the streams and projections workers.

Both workers get the same broker settings, tables in RocksDB under the worker's data dir (kept
across restarts, recovered from their changelogs after what they hold: `runtime.table_store`), and
the operator pages beside Faust's own web views (`/table/`, `/router/`, …): `/healthz`,
`/metrics` and the operator console under `/console/` (`console.pages`). Every view but the open
ones asks for `Authorization: Bearer <OPERATOR_TOKEN>` or the console's session cookie
(`runtime.operator_auth`); the web server binds to loopback unless `WORKER_WEB_HOST` says
otherwise, which `WorkerSettings` allows only with a token.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import faust
from faust.web import Request, Response, View
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

import console.pages
from config.logs import configure, faust_logging_config
from config.settings import CommonSettings, WorkerSettings
from runtime import table_store
from runtime.gc_pauses import FREEZE_INTERVAL_S, FreezeSchedule, freeze_survivors, measure_gc_pauses
from runtime.kafka_cluster import replication_of
from runtime.operator_auth import operator_auth

ACKS_ALL = -1
SESSION_TIMEOUT_S = 10.0
"""A crashed worker's partitions move to the others after this long (Faust's default is 60 s)."""
HEARTBEAT_S = 1.0

log = logging.getLogger(__name__)


class App(faust.App):
    """A Faust app whose own topics (changelogs, repartitions) are replicated as the cluster allows.

    The factor is read from the cluster when the app starts, before its tables declare their
    changelogs: Faust reads `topic_replication_factor` when it creates a topic, not before.
    """

    def __init__(self, id: str, settings: CommonSettings, **options: Any) -> None:
        super().__init__(id, **options)
        self.service_settings = settings

    async def on_first_start(self) -> None:
        await super().on_first_start()
        replication = await replication_of(self.service_settings)
        self.conf.topic_replication_factor = replication.factor
        log.info("topics of %s created with replication factor %d", self.conf.id, replication.factor)


def make_app(name: str, settings: WorkerSettings, **overrides: Any) -> faust.App:
    """A Faust app whose consumer group is `{TOPIC_PREFIX}{name}`."""
    configure(settings.log_format, settings.log_level)  # until the worker sets up its own logging
    measure_gc_pauses()
    datadir = Path(settings.worker_data_dir) / settings.topic(name)
    datadir.mkdir(parents=True, exist_ok=True)
    options: dict[str, Any] = {
        "broker": [f"kafka://{b}" for b in settings.broker_list],
        "broker_credentials": broker_credentials(settings),
        "store": table_store.STORES[settings.table_store],
        "topic_partitions": settings.topic_partitions,
        "producer_acks": ACKS_ALL,
        "consumer_auto_offset_reset": "earliest",
        "processing_guarantee": "at_least_once",
        "web_bind": settings.worker_web_host,
        "web_host": settings.worker_web_host,
        "web_port": settings.worker_web_port,
        "datadir": str(datadir),
        "table_standby_replicas": 0,
        "broker_session_timeout": SESSION_TIMEOUT_S,
        "broker_heartbeat_interval": HEARTBEAT_S,
        "web_enabled": True,
        "web_application_options": {"middlewares": [operator_auth(settings.operator_token)]},
        "logging_config": faust_logging_config(settings.log_format),
    }
    options.update(overrides)
    app = App(settings.topic(name), settings, **options)
    add_operator_pages(app, settings)
    schedule = FreezeSchedule()

    async def keep_gc_pauses_short() -> None:
        schedule.run()

    app.timer(FREEZE_INTERVAL_S)(keep_gc_pauses_short)
    app.timer(RECOVERY_CHECK_S)(freeze_after_recovery(app))
    return app


RECOVERY_CHECK_S = 1.0


def freeze_after_recovery(app: faust.App) -> Callable[[], Awaitable[None]]:
    """A timer that freezes the survivors once each time the tables' recovery ends: what recovery
    built (every key of the memory store, Faust's buffers) is then skipped by the collector at
    once, not after up to `FREEZE_INTERVAL_S` of full collections over it, the minute right after
    a restart in which a backlog must be drained."""
    was_recovering = True

    async def check() -> None:
        nonlocal was_recovering
        recovering = is_recovering(app)
        if was_recovering and not recovering:
            freeze_survivors()
        was_recovering = recovering

    return check


def broker_credentials(settings: CommonSettings) -> faust.SASLCredentials:
    """The login of every client Faust makes (its consumers, producers and topic creation)."""
    return faust.SASLCredentials(
        username=settings.kafka_username,
        password=settings.kafka_password.get_secret_value(),
        mechanism=settings.kafka_sasl_mechanism,
    )


def add_operator_pages(app: faust.App, settings: WorkerSettings) -> None:
    """`/healthz` and `/metrics`, open, and the operator console (`console.pages`), behind the token."""
    console.pages.register(app, settings)

    @app.page("/healthz")
    class Health(View):
        async def get(self, request: Request) -> Response:
            """503 `recovering` until the tables are recovered (at start, and again after a
            rebalance): the worker answers HTTP then, but decides nothing yet."""
            assigned = app.assignor.assigned_actives() if app.assignor else set()
            recovering = is_recovering(app)
            return self.json(
                {
                    "status": "recovering" if recovering else "ok",
                    "app": app.conf.id,
                    "assigned_partitions": len(assigned),
                    "rebalancing": app.rebalancing,
                },
                status=503 if recovering else 200,
            )

    @app.page("/metrics")
    class Metrics(View):
        async def get(self, request: Request) -> Response:
            return self.bytes(generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})


def is_recovering(app: faust.App) -> bool:
    """Faust's table recovery has not finished once yet, or runs again now."""
    recovery = getattr(app.tables, "recovery", None)  # `TableManagerT` does not declare it
    return bool(app.in_recovery) or (recovery is not None and not recovery.completed.is_set())
