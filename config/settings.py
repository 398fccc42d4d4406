"""Every setting of every process, read from environment variables (and an optional `.env`).

Each process loads the class it needs through `load()`, which turns a missing or malformed
variable into one line naming it and a non-zero exit, before anything starts.
"""

from __future__ import annotations

import ipaddress
import sys
from datetime import timedelta
from typing import Annotated, Literal, TypeVar

from pydantic import AfterValidator, BeforeValidator, Field, SecretStr, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from config.logs import LogFormat
from config.weak_secrets import weakness
from schemas.api import GROUP_MEMBERS_CEILING, GROUP_MEMBERS_DEFAULT

CONTENT_KEYS_COMPACTION_DEFAULT_MS = 15 * 60 * 1000

JWT_SECRET_MIN_LENGTH = 32
OPERATOR_TOKEN_MIN_LENGTH = 32
LOOPBACK_NAMES = frozenset({"localhost"})
KAFKA_PASSWORD_MIN_LENGTH = 16


def is_loopback(host: str) -> bool:
    """True for a bind address only this machine can reach (127.0.0.0/8, ::1, localhost)."""
    if host.strip().lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip().strip("[]")).is_loopback
    except ValueError:
        return False


class CommonSettings(BaseSettings):
    """What every process needs: where the services are and how the topics are named."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", frozen=True)

    database_url: str = Field(pattern=r"^postgres(ql)?://")
    """With the application role's password (`make env` generates it): no default, no trust."""
    kafka_brokers: str = Field("127.0.0.1:9092", pattern=r"^[\w.\-]+:\d+(,[\w.\-]+:\d+)*$")
    kafka_username: str = Field("messenger", pattern=r"^[\w.\-]+$")
    kafka_password: SecretStr
    """The SASL login of every Kafka client (`config.kafka.client_options`); `make env` generates
    it, `scripts/services` gives it to the brokers. No default."""
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = "PLAIN"
    redis_url: str = Field(pattern=r"^rediss?://")
    """With Redis's `requirepass` (`redis://:PASSWORD@host:port/db`); no default."""
    topic_prefix: str = Field("", pattern=r"^[a-zA-Z0-9._\-]*$")
    topic_partitions: int = Field(8, ge=1, le=1024)
    max_group_members: int = Field(GROUP_MEMBERS_DEFAULT, ge=2, le=GROUP_MEMBERS_CEILING)
    """How many members a group holds, its creator included (the chat agent refuses more with
    `group_full`; the gateway refuses a longer `member_ids` with 400)."""
    content_keys_compaction_ms: int = Field(CONTENT_KEYS_COMPACTION_DEFAULT_MS, ge=1000, le=7 * 24 * 3600 * 1000)
    """How soon a shredded data key leaves the broker's disk (docs/erasure.md): the `segment.ms`
    and `max.compaction.lag.ms` of `content.keys`, set when the topic is created."""
    log_level: str = Field("INFO", pattern=r"^(DEBUG|INFO|WARNING|ERROR)$")
    log_format: LogFormat = "json"
    """`json`: one JSON object per line with the ids in context (`config.logs`); `text` for a terminal."""

    @property
    def broker_list(self) -> list[str]:
        return self.kafka_brokers.split(",")

    def topic(self, name: str) -> str:
        """The real name of a logical topic, with the deployment's prefix (empty in production)."""
        return f"{self.topic_prefix}{name}"

    @field_validator("kafka_password")
    @classmethod
    def _refuse_weak_kafka_password(cls, value: SecretStr) -> SecretStr:
        reason = weakness(value.get_secret_value(), KAFKA_PASSWORD_MIN_LENGTH)
        if reason:
            raise ValueError(reason)
        return value


class WorkerSettings(CommonSettings):
    """A Faust worker: its app id (the consumer group) and its web views."""

    worker_web_host: str = "127.0.0.1"
    worker_web_port: int = Field(6066, ge=1, le=65535)
    worker_data_dir: str = ".data/faust"
    """Each app's local state (its tables' RocksDB databases) under `{dir}/{app id}`, kept across
    restarts: a restarted worker recovers only the changelog written after it (`runtime.table_store`)."""
    table_store: Literal["rocksdb", "memory"] = "rocksdb"
    """`memory` keeps every table on the heap and recovers it from its whole changelog at each start."""
    operator_token: str = ""
    """`Authorization: Bearer` token of the web views that show table contents
    (`runtime.operator_auth`); empty: those views are closed to everyone. Required beyond loopback."""

    @field_validator("operator_token")
    @classmethod
    def _operator_token_fits_the_bind(cls, value: str, info: ValidationInfo) -> str:
        """Views that serve every table to whoever reaches the port never listen beyond loopback
        without a token; a token set at all is a real one."""
        host = str(info.data.get("worker_web_host", "127.0.0.1"))
        if not value:
            if not is_loopback(host):
                raise ValueError(f"required when WORKER_WEB_HOST ({host}) is not loopback (make env generates one)")
            return value
        reason = weakness(value, OPERATOR_TOKEN_MIN_LENGTH)
        if reason:
            raise ValueError(reason)
        return value


CHAT_ID_KEY_MIN_LENGTH = 32


def strong_chat_id_key(value: str) -> str:
    """`CHAT_ID_KEY` keys the ids of direct chats (`schemas.models.direct_chat_id`): a guessable
    one makes them computable again. It never changes (a new key forks every direct chat)."""
    reason = weakness(value, CHAT_ID_KEY_MIN_LENGTH)
    if reason:
        raise ValueError(reason)
    return value


ChatIdKey = Annotated[str, AfterValidator(strong_chat_id_key)]


def seconds_or_duration(value: object) -> object:
    """A number of seconds (`2592000`, what an environment variable holds) as a `timedelta`;
    anything else (an ISO 8601 duration, `P30D`) is left to pydantic."""
    if isinstance(value, str) and value.strip().replace(".", "", 1).isdigit():
        return timedelta(seconds=float(value))
    return value


Duration = Annotated[timedelta, BeforeValidator(seconds_or_duration)]


class StreamsSettings(WorkerSettings):
    """The streams worker: it checks that a direct chat's id is the one its pair is given."""

    chat_id_key: ChatIdKey
    username_quarantine: Duration = Field(timedelta(days=30), ge=timedelta(0))
    """How long an erased account's username stays claimed (docs/erasure.md): seconds, or an
    ISO 8601 duration (`P30D`). Nobody can take a just-erased person's name meanwhile."""


class GatewaySettings(CommonSettings):
    """The aiohttp gateway: where it listens, how it signs tokens, whom it lets in."""

    gateway_host: str = "127.0.0.1"
    gateway_port: int = Field(8080, ge=1, le=65535)
    gateway_instance_id: str = Field("", pattern=r"^[a-zA-Z0-9._\-]*$")
    jwt_secret: str = Field(min_length=JWT_SECRET_MIN_LENGTH)
    chat_id_key: ChatIdKey
    """The key of direct chats' ids, the same as the streams workers'; never changed."""
    jwt_issuer: str = "messenger"
    jwt_audience: str = "messenger-clients"
    access_token_ttl_seconds: int = Field(900, ge=30, le=86400)
    refresh_token_ttl_seconds: int = Field(30 * 86400, ge=300)
    allowed_origins: str = "http://127.0.0.1:8080,http://localhost:8080"
    worker_health_urls: str = ""
    """`name=url` pairs, comma separated: the workers whose `/healthz` the gateway's own reports
    (`scripts/system` sets them; empty: the gateway reports on its services only)."""
    seal_texts: bool = True
    """Seal the message texts this gateway sends (docs/erasure.md). Every gateway opens sealed
    texts whatever this says: a rolling upgrade runs the new gateways with `false` until none of
    the old ones is left (an old gateway would push a sealed text as it is), then turns it on."""
    write_rate_per_s: float = Field(40.0, gt=0, le=100_000)
    write_burst: int = Field(80, ge=1, le=1_000_000)
    """One budget per user for every write, REST and WebSocket alike, on every instance: 40 a
    second on average, 80 at once. A person types far slower; a client that sends 20 to 25
    messages a second (the benchmark's busiest users), plus its read and typing frames, stays
    under it with two seconds of burst to catch up after a pause; a runaway loop does not."""
    register_limit_per_address: int = Field(10, ge=1)
    register_window_seconds: int = Field(3600, ge=1)
    """Registrations per client address (an IPv6 /64 counts as one) in a window that starts at
    the first: each costs an argon2id hash and an event kept forever."""
    max_sockets_per_user: int = Field(10, ge=1, le=10_000)
    """Open WebSockets of one user over every instance; one more is refused with 429."""

    @field_validator("jwt_secret")
    @classmethod
    def _refuse_weak_secret(cls, value: str) -> str:
        """Refuses the `.env.example` placeholder and other guessable values (anyone holding the
        secret mints tokens for every user)."""
        reason = weakness(value, JWT_SECRET_MIN_LENGTH)
        if reason:
            raise ValueError(reason)
        return value

    @property
    def origin_list(self) -> list[str]:
        return [o.strip() for o in self.allowed_origins.split(",") if o.strip()]

    @property
    def worker_health(self) -> dict[str, str]:
        pairs = (p.strip().partition("=") for p in self.worker_health_urls.split(",") if p.strip())
        return {name.strip(): url.strip() for name, _, url in pairs}


S = TypeVar("S", bound=CommonSettings)


def describe_error(error: ValidationError) -> str:
    """One line naming each bad variable, as the operator would type it."""
    parts = []
    for item in error.errors():
        name = "_".join(str(p) for p in item["loc"]).upper() or "?"
        parts.append(f"{name}: {item['msg']}")
    return "configuration error: " + "; ".join(parts)


def load(cls: type[S]) -> S:
    """The settings of `cls` from the environment, or exit 2 with one line naming what is wrong."""
    try:
        return cls()
    except ValidationError as error:
        print(describe_error(error), file=sys.stderr)
        raise SystemExit(2) from None
