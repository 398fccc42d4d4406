"""`scripts/make-env` (what `make env` runs): a private `.env` with every secret generated, and an
existing one upgraded in place (missing secrets added, placeholders and old defaults replaced)."""

from __future__ import annotations

import stat
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

from config.weak_secrets import weakness

ROOT = Path(__file__).resolve().parents[2]
MAKE_ENV = ROOT / "scripts" / "make-env"
SECRETS = ("JWT_SECRET", "KAFKA_PASSWORD", "OPERATOR_TOKEN", "CHAT_ID_KEY", "PG_SUPERUSER_PASSWORD")
OLD_ENV = """\
DATABASE_URL=postgresql://messenger:messenger@127.0.0.1:5432/messenger
KAFKA_BROKERS=127.0.0.1:9092
REDIS_URL=redis://127.0.0.1:6379/0
LOG_LEVEL=DEBUG
JWT_SECRET=change-me-to-at-least-32-random-characters
"""


def make_env(path: Path) -> str:
    done = subprocess.run(
        [sys.executable, str(MAKE_ENV), "--env", str(path)], capture_output=True, text=True, timeout=30, check=True
    )
    return done.stdout


def values(path: Path) -> dict[str, str]:
    lines = path.read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if "=" in line and not line.startswith("#"))


def assert_generated(env: dict[str, str]) -> None:
    for name in SECRETS:
        assert not weakness(env[name], 32), name
    for name in ("DATABASE_URL", "TEST_ADMIN_DATABASE_URL", "REDIS_URL"):
        password = urlsplit(env[name]).password
        assert password and not weakness(password, 32), name
    assert urlsplit(env["DATABASE_URL"]).password == env["PG_PASSWORD"]
    assert urlsplit(env["REDIS_URL"]).password == env["REDIS_PASSWORD"]
    assert urlsplit(env["TEST_ADMIN_DATABASE_URL"]).username != urlsplit(env["DATABASE_URL"]).username
    assert "change-me" not in "".join(env.values())


def test_a_new_env_is_private_and_every_secret_is_fresh(tmp_path: Path) -> None:
    first, second = tmp_path / "one.env", tmp_path / "two.env"
    make_env(first)
    make_env(second)
    assert stat.S_IMODE(first.stat().st_mode) == 0o600
    assert_generated(values(first))
    assert set(values(first)) >= set(values(ROOT / ".env.example"))
    assert all(values(first)[name] != values(second)[name] for name in SECRETS)


def test_an_old_env_gets_fresh_secrets_and_keeps_the_rest(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_text(OLD_ENV)
    env.chmod(0o644)
    make_env(env)
    upgraded = values(env)
    assert stat.S_IMODE(env.stat().st_mode) == 0o600
    assert_generated(upgraded)
    assert upgraded["LOG_LEVEL"] == "DEBUG" and upgraded["KAFKA_BROKERS"] == "127.0.0.1:9092"
    assert upgraded["DATABASE_URL"].endswith("@127.0.0.1:5432/messenger")
    assert upgraded["TEST_ADMIN_DATABASE_URL"].endswith("@127.0.0.1:5432/postgres")


def test_a_good_env_is_left_as_it_is_but_made_private(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    make_env(env)
    before = env.read_text()
    env.chmod(0o644)
    assert "generated" not in make_env(env)
    assert env.read_text() == before
    assert stat.S_IMODE(env.stat().st_mode) == 0o600
