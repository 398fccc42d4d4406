"""compose.yaml cannot be started here (no Docker engine); it is parsed and checked instead."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from config.settings import GatewaySettings, WorkerSettings

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
        assert KAFKA_OR_DB_VARS <= set(env), name
        assert set(env) <= SETTING_NAMES, f"{name}: {set(env) - SETTING_NAMES}"
    assert "JWT_SECRET" in services["gateway"]["environment"]


def test_app_hosts_point_at_compose_services() -> None:
    services = compose()["services"]
    env = services["gateway"]["environment"]
    assert "@postgres:5432/" in env["DATABASE_URL"]
    assert env["KAFKA_BROKERS"] == "kafka:9092"
    assert env["REDIS_URL"].startswith("redis://redis:6379")
    assert services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"


def test_dockerfile_copies_every_package() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    for package in ("config", "schemas", "streams", "projections", "gateway", "migrations"):
        assert f"COPY {package} {package}" in dockerfile
