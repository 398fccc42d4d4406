"""compose.yaml cannot be started here (no Docker engine); it is parsed and checked instead."""

from __future__ import annotations

import fnmatch
from pathlib import Path
from typing import Any

import yaml

import gateway
from config.settings import GatewaySettings, WorkerSettings
from gateway.rest.docs import DOCS_DIR, SPEC_FILES

ROOT = Path(__file__).resolve().parents[2]
SETTING_NAMES = {n.upper() for n in set(GatewaySettings.model_fields) | set(WorkerSettings.model_fields)}
KAFKA_OR_DB_VARS = {"DATABASE_URL", "KAFKA_BROKERS", "REDIS_URL"}


def compose() -> dict[str, Any]:
    data = yaml.safe_load((ROOT / "compose.yaml").read_text())
    assert isinstance(data, dict)
    return data


def test_every_part_of_the_system_is_a_service_with_a_health_check() -> None:
    services = compose()["services"]
    for name in ("kafka", "postgres", "redis", "gateway", "streams", "projections"):
        assert name in services, name
        assert "healthcheck" in services[name], name


def test_app_services_use_only_settings_the_code_reads() -> None:
    services = compose()["services"]
    for name in ("gateway", "streams", "projections", "setup"):
        env = services[name]["environment"]
        assert set(env) >= KAFKA_OR_DB_VARS, name
        assert set(env) <= SETTING_NAMES, f"{name}: {set(env) - SETTING_NAMES}"
    assert "JWT_SECRET" in services["gateway"]["environment"]


def test_app_hosts_point_at_compose_services() -> None:
    services = compose()["services"]
    env = services["gateway"]["environment"]
    assert "@postgres:5432/" in env["DATABASE_URL"]
    assert env["KAFKA_BROKERS"] == "kafka:9092"
    assert "@redis:6379/" in env["REDIS_URL"]
    assert services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"


def test_every_kafka_listener_takes_only_the_login_of_the_environment() -> None:
    services = compose()["services"]
    kafka = services["kafka"]["environment"]
    protocols = dict(pair.split(":") for pair in kafka["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(","))
    listeners = [listener.split("://")[0] for listener in kafka["KAFKA_LISTENERS"].split(",")]
    assert {protocols[name] for name in listeners} == {"SASL_PLAINTEXT"}
    assert kafka["KAFKA_INTER_BROKER_LISTENER_NAME"] in listeners
    for name in listeners:
        assert 'password="${KAFKA_PASSWORD:?' in kafka[f"KAFKA_LISTENER_NAME_{name}_PLAIN_SASL_JAAS_CONFIG"], name
    assert "${KAFKA_PASSWORD:?" in " ".join(services["kafka"]["healthcheck"]["test"])
    for name in ("gateway", "streams", "projections", "setup"):
        assert services[name]["environment"]["KAFKA_PASSWORD"].startswith("${KAFKA_PASSWORD:?"), name


def test_postgres_and_redis_take_passwords_only_from_the_environment() -> None:
    """No password is committed, compose refuses to start without one, and the application's
    PostgreSQL role is made without superuser or CREATEDB."""
    data = compose()
    services = data["services"]
    for name in ("gateway", "streams", "projections", "setup"):
        env = services[name]["environment"]
        assert env["DATABASE_URL"].startswith("postgresql://messenger:${PG_PASSWORD:?"), name
        assert env["REDIS_URL"].startswith("redis://:${REDIS_PASSWORD:?"), name
    postgres = services["postgres"]["environment"]
    assert postgres["POSTGRES_PASSWORD"].startswith("${PG_SUPERUSER_PASSWORD:?")
    assert postgres["POSTGRES_HOST_AUTH_METHOD"] == "scram-sha-256"
    assert "--auth-host=scram-sha-256" in postgres["POSTGRES_INITDB_ARGS"].split()
    init = data["configs"][services["postgres"]["configs"][0]["source"]]["content"]
    assert "NOSUPERUSER NOCREATEDB" in init and "$$PG_PASSWORD" in init
    assert option(services["redis"]["command"], "--requirepass").startswith("${REDIS_PASSWORD:?")
    assert "messenger:messenger@" not in (ROOT / "compose.yaml").read_text()


def test_the_gateway_reports_each_worker_at_its_compose_address() -> None:
    services = compose()["services"]
    named = GatewaySettings(
        jwt_secret="0123456789abcdef" * 2, worker_health_urls=services["gateway"]["environment"]["WORKER_HEALTH_URLS"]
    ).worker_health
    for worker in ("streams", "projections"):
        port = services[worker]["environment"]["WORKER_WEB_PORT"]
        assert named[worker] == f"http://{worker}:{port}/healthz"


def test_dockerfile_copies_every_package() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    for package in ("config", "schemas", "streams", "projections", "gateway", "migrations"):
        assert f"COPY {package} {package}" in dockerfile


def volume_targets(service: dict[str, Any]) -> set[str]:
    """The container paths where named volumes are mounted (`name:/path[:mode]`)."""
    targets = set()
    for volume in service.get("volumes", []):
        source, _, rest = volume.partition(":")
        assert source in compose()["volumes"], f"{volume}: not a named volume"
        targets.add(rest.split(":")[0])
    return targets


def test_kafka_writes_its_log_into_its_volume() -> None:
    kafka = compose()["services"]["kafka"]
    log_dirs = kafka["environment"]["KAFKA_LOG_DIRS"].split(",")
    for log_dir in log_dirs:
        assert log_dir in volume_targets(kafka), log_dir


def option(command: list[str], name: str) -> str:
    assert name in command, f"{name} not in {command}"
    return command[command.index(name) + 1]


def test_redis_keeps_an_append_only_file_in_a_volume() -> None:
    redis = compose()["services"]["redis"]
    command = redis["command"]
    assert option(command, "--appendonly") == "yes"
    assert option(command, "--dir") in volume_targets(redis)


def test_postgres_keeps_its_data_in_a_volume() -> None:
    postgres = compose()["services"]["postgres"]
    assert postgres["image"].startswith("postgres:")
    assert "/var/lib/postgresql/data" in volume_targets(postgres)


def test_app_services_are_restarted_whatever_their_exit_code() -> None:
    services = compose()["services"]
    for name in ("gateway", "streams", "projections"):
        assert services[name]["restart"] == "unless-stopped", name


def dockerfile_copies() -> list[tuple[str, str]]:
    """(source, destination) of every COPY of the Dockerfile, relative to its WORKDIR."""
    copies: list[tuple[str, str]] = []
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        words = line.split()
        if words and words[0] == "COPY" and not any(w.startswith("--") for w in words):
            *sources, destination = words[1:]
            copies.extend((source, destination) for source in sources)
    return copies


def test_image_carries_the_docs_the_gateway_serves() -> None:
    docs = DOCS_DIR.relative_to(ROOT).as_posix()
    package = Path(gateway.__file__).parent.relative_to(ROOT).as_posix()
    copies = dict(dockerfile_copies())
    assert copies.get(package) == package, "the gateway package is not copied where docs.py expects it"
    assert copies.get(docs) == docs, f"{docs}/ is not copied beside the gateway package"
    for name in SPEC_FILES:
        assert (ROOT / docs / name).is_file(), name


def dockerignore() -> list[str]:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def ignored(path: str, patterns: list[str]) -> bool:
    """Whether Docker's build context leaves `path` out (its patterns, without `!` exceptions)."""
    parts = Path(path).parts
    prefixes = [Path(*parts[: i + 1]).as_posix() for i in range(len(parts))]
    for pattern in (p.rstrip("/") for p in patterns):
        if pattern.startswith("**/"):
            if any(fnmatch.fnmatch(part, pattern[3:]) for part in parts):
                return True
        elif any(fnmatch.fnmatch(prefix, pattern) for prefix in prefixes):
            return True
    return False


def test_dockerignore_keeps_data_secrets_and_caches_out_of_the_build() -> None:
    patterns = dockerignore()
    for path in (
        ".data/kafka/logs/x",
        ".env",
        ".venv/bin/python",
        ".git/HEAD",
        "bench/results/run.json",
        "gateway/__pycache__/app.cpython-311.pyc",
        ".pytest_cache/v",
        ".mypy_cache/3.11/x",
    ):
        assert ignored(path, patterns), path


def test_dockerignore_keeps_everything_the_image_copies() -> None:
    patterns = dockerignore()
    for source, _ in dockerfile_copies():
        assert not ignored(source, patterns), source
        assert (ROOT / source).exists(), source


def test_workers_bound_beyond_loopback_get_the_operator_token_and_one_chat_id_key() -> None:
    """Compose binds the workers' web views to 0.0.0.0: without OPERATOR_TOKEN they would not
    start; the gateway and the streams worker derive direct-chat ids with the same key."""
    services = compose()["services"]
    for worker in ("streams", "projections"):
        env = services[worker]["environment"]
        assert env["WORKER_WEB_HOST"] == "0.0.0.0"
        assert env["OPERATOR_TOKEN"].startswith("${OPERATOR_TOKEN:?"), worker
    keys = {services[name]["environment"]["CHAT_ID_KEY"] for name in ("gateway", "streams")}
    assert len(keys) == 1 and keys.pop().startswith("${CHAT_ID_KEY:?")
