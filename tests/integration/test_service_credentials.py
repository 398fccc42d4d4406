"""Nothing local gets into PostgreSQL or Redis without the password of `.env`, the application's
role can do no more than the application needs, and the secrets and data are private files.

The shared services (`make env && scripts/services up`) are checked as they run; the upgrade of a
cluster and a Redis made by the older, password-less script is replayed on a private set.
"""

from __future__ import annotations

import asyncio
import glob
import os
import re
import shutil
import stat
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import pytest
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import AuthenticationError
from redis.exceptions import ConnectionError as RedisConnectionError

from config.settings import CommonSettings
from tests.conftest import ADMIN_DATABASE_URL, ROOT
from tests.processes import free_port

pytestmark = pytest.mark.integration

SERVICES = ROOT / "scripts" / "services"
MAKE_ENV = ROOT / "scripts" / "make-env"
SCRIPT_TIMEOUT_S = 120.0
REFUSED = (asyncpg.InvalidPasswordError, asyncpg.InvalidAuthorizationSpecificationError)


def redis_client(port: int, password: str | None = None) -> aioredis.Redis:
    """A client that gives up at the first refusal (the default retries with backoff for seconds)."""
    return aioredis.Redis(host="127.0.0.1", port=port, password=password, retry=Retry(NoBackoff(), 0))


def private_mode(path: Path) -> bool:
    """No bit for the group or the others."""
    return stat.S_IMODE(path.lstat().st_mode) & 0o077 == 0


def open_paths(root: Path) -> list[str]:
    """Every file or folder under `root` that the group or the others may read, enter or write."""
    found = [] if private_mode(root) else [str(root)]
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(folder, name)
            if not path.is_symlink() and not path.is_socket() and not private_mode(path):
                found.append(f"{path} {oct(stat.S_IMODE(path.lstat().st_mode))}")
    return found


def cluster_folder(data: Path) -> Path:
    """`$DATA/postgres`, or where `scripts/services` moved the cluster (`$DATA/postgres.location`)."""
    where = data / "postgres.location"
    return Path(where.read_text().strip()) if where.is_file() else data / "postgres"


async def refused(url: str, passfile: Path, **override: str) -> bool:
    parts = urlsplit(url)
    options: dict[str, Any] = {
        "host": parts.hostname,
        "port": parts.port,
        "user": parts.username,
        "database": parts.path[1:],
    }
    try:
        connection = await asyncpg.connect(**{**options, **override}, passfile=str(passfile))
    except REFUSED:
        return True
    await connection.close()
    return False


# --- the shared services, as `make env && scripts/services up` left them ----------------------------
async def test_postgres_refuses_host_connections_without_the_password(tmp_path: Path) -> None:
    url = CommonSettings().database_url
    nothing = tmp_path / "no-pgpass"
    assert await refused(url, nothing, password="")
    assert await refused(url, nothing, password="messenger")  # the old well-known password
    assert await refused(url, nothing, password=uuid.uuid4().hex)
    assert await refused(url, nothing, user="postgres", password="", database="postgres")  # trust is gone


async def test_the_application_role_can_do_no_more_than_the_application_needs() -> None:
    connection = await asyncpg.connect(CommonSettings().database_url)
    try:
        role = await connection.fetchrow(
            "SELECT rolsuper, rolcreatedb, rolcreaterole, rolreplication, rolbypassrls"
            " FROM pg_roles WHERE rolname = current_user"
        )
        assert role is not None and not any(role.values()), dict(role or {})
        owner = await connection.fetchval(
            "SELECT pg_get_userbyid(datdba) = current_user FROM pg_database WHERE datname = current_database()"
        )
        assert owner, "the application's role owns its database"
        for attack in ("COPY (SELECT 1) TO PROGRAM 'id'", "SELECT pg_read_file('/etc/passwd')", 'CREATE DATABASE "x"'):
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await connection.execute(attack)
    finally:
        await connection.close()


async def test_the_tests_role_creates_databases_but_is_no_superuser_and_stays_out_of_the_application() -> None:
    assert ADMIN_DATABASE_URL, "TEST_ADMIN_DATABASE_URL: run make env"
    connection = await asyncpg.connect(ADMIN_DATABASE_URL)
    try:
        role = await connection.fetchrow("SELECT rolsuper, rolcreatedb FROM pg_roles WHERE rolname = current_user")
        assert role is not None and role["rolcreatedb"] and not role["rolsuper"]
    finally:
        await connection.close()
    application = urlsplit(CommonSettings().database_url).path[1:]
    with pytest.raises(asyncpg.InsufficientPrivilegeError):  # CONNECT is the owner's alone
        await asyncpg.connect(ADMIN_DATABASE_URL.rsplit("/", 1)[0] + "/" + application)


async def test_redis_refuses_commands_without_its_password() -> None:
    url = urlsplit(CommonSettings().redis_url)
    assert url.password, "REDIS_URL carries the password"
    for password in (None, "wrong-" + uuid.uuid4().hex):
        client = redis_client(url.port or 6379, password)
        try:
            with pytest.raises(AuthenticationError):
                await client.set(f"test:intruder:{uuid.uuid4().hex}", "1")
        finally:
            await client.aclose()


def test_env_and_the_data_folder_are_private() -> None:
    env = ROOT / ".env"
    assert stat.S_IMODE(env.stat().st_mode) == 0o600
    data = Path(os.environ.get("MESSENGER_DATA_DIR") or ROOT / ".data")
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    children = [child for child in data.iterdir() if not child.is_symlink()]
    assert [str(child) for child in children if not private_mode(child)] == []
    assert private_mode(cluster_folder(data))


# --- a private set: a fresh one, and one the older script made ----------------------------------
@dataclass
class PrivateSet:
    data: Path
    env: dict[str, str]

    def services(self, *args: str) -> str:
        done = subprocess.run(
            [str(SERVICES), *args],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=SCRIPT_TIMEOUT_S,
            check=False,
        )
        assert done.returncode == 0, f"scripts/services {' '.join(args)}:\n{done.stdout}\n{done.stderr}"
        return done.stdout

    def url(self, name: str) -> str:
        return self.env[name]

    @property
    def redis_password(self) -> str:
        return urlsplit(self.env["REDIS_URL"]).password or ""


def generated_env(tmp_path: Path) -> dict[str, str]:
    """Fresh credentials, as `make env` makes them, for private ports."""
    env_file = tmp_path / "private.env"
    subprocess.run(["python3", str(MAKE_ENV), "--env", str(env_file)], check=True, capture_output=True, timeout=30)
    values = dict(line.split("=", 1) for line in env_file.read_text().splitlines() if re.match(r"^[A-Z_]+=", line))
    pg_port, redis_port = free_port(), free_port()
    return {
        **{k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "TEST_ADMIN_DATABASE_URL", "REDIS_URL")},
        "MESSENGER_DATA_DIR": tempfile.mkdtemp(prefix="messenger-credentials-"),  # postgres may enter /tmp
        "PG_PORT": str(pg_port),
        "REDIS_PORT": str(redis_port),
        "DATABASE_URL": values["DATABASE_URL"].replace(":5432/", f":{pg_port}/"),
        "TEST_ADMIN_DATABASE_URL": values["TEST_ADMIN_DATABASE_URL"].replace(":5432/", f":{pg_port}/"),
        "REDIS_URL": values["REDIS_URL"].replace(":6379/", f":{redis_port}/"),
    }


@pytest.fixture
def private_set(tmp_path: Path) -> Iterator[PrivateSet]:
    env = generated_env(tmp_path)
    assert env["PG_PORT"] != "5432" and env["MESSENGER_DATA_DIR"] != str(ROOT / ".data")
    private = PrivateSet(Path(env["MESSENGER_DATA_DIR"]), env)
    try:
        yield private
    finally:
        subprocess.run(
            [str(SERVICES), "down"], cwd=ROOT, env=env, capture_output=True, timeout=SCRIPT_TIMEOUT_S, check=False
        )
        cluster = cluster_folder(private.data)
        if not cluster.is_relative_to(private.data):
            shutil.rmtree(cluster.parent, ignore_errors=True)
        shutil.rmtree(private.data, ignore_errors=True)


def pg_bin() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: [int(x) for x in re.findall(r"\d+", p)])
    if not found:
        pytest.skip("no PostgreSQL binaries")
    return Path(found[-1])


def as_cluster_user(*args: str | Path) -> None:
    prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    subprocess.run([*prefix, *map(str, args)], check=True, capture_output=True, timeout=60, cwd="/")


def old_layout(private: PrivateSet) -> None:
    """What the older `scripts/services up postgres redis` left: a `trust` cluster in $DATA/postgres
    whose role `messenger` (password `messenger`) has CREATEDB, an open Redis, files for everyone."""
    data, pgdata, port = private.data, private.data / "postgres", private.env["PG_PORT"]
    data.chmod(0o755)
    (data / "redis").mkdir(mode=0o755)
    pgdata.mkdir(mode=0o700)
    if os.geteuid() == 0:
        shutil.chown(pgdata, "postgres", "postgres")
    as_cluster_user(
        pg_bin() / "initdb", "-D", pgdata, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C.UTF-8"
    )
    with (pgdata / "postgresql.conf").open("a") as conf:
        conf.write(f"listen_addresses = '127.0.0.1'\nport = {port}\nunix_socket_directories = '{pgdata}'\n")
    as_cluster_user(pg_bin() / "pg_ctl", "-D", pgdata, "-l", pgdata / "server.log", "-w", "-t", "60", "start")
    as_cluster_user(
        pg_bin() / "psql",
        "-h",
        "127.0.0.1",
        "-p",
        port,
        "-U",
        "postgres",
        "-d",
        "postgres",
        "-v",
        "ON_ERROR_STOP=1",
        "-c",
        "CREATE ROLE messenger LOGIN CREATEDB PASSWORD 'messenger'",
        "-c",
        "CREATE DATABASE messenger OWNER messenger",
    )
    redis_dir = data / "redis"
    subprocess.run(
        [
            "redis-server",
            "--bind",
            "127.0.0.1",
            "--port",
            private.env["REDIS_PORT"],
            "--dir",
            str(redis_dir),
            "--daemonize",
            "yes",
            "--pidfile",
            str(redis_dir / "redis.pid"),
            "--logfile",
            str(redis_dir / "redis.log"),
            "--save",
            "",
            "--appendonly",
            "yes",
        ],
        check=True,
        timeout=30,
    )
    (data / "logs").mkdir(mode=0o755)
    (data / "logs" / "gateway.log").write_text("a log line\n")
    (data / "logs" / "gateway.log").chmod(0o644)


async def wait_for_redis(port: int) -> None:
    for _ in range(100):
        client = redis_client(port)
        try:
            await client.ping()
            return
        except RedisConnectionError:
            await asyncio.sleep(0.1)
        finally:
            await client.aclose()


async def test_up_upgrades_in_place_what_the_older_script_made(private_set: PrivateSet, tmp_path: Path) -> None:
    old_layout(private_set)
    port, redis_port = int(private_set.env["PG_PORT"]), int(private_set.env["REDIS_PORT"])
    old_url = f"postgresql://messenger:messenger@127.0.0.1:{port}/messenger"
    connection = await asyncpg.connect(old_url)
    await connection.execute("CREATE TABLE kept (id int); INSERT INTO kept VALUES (7)")
    await connection.close()
    await wait_for_redis(redis_port)
    open_redis = redis_client(redis_port)
    await open_redis.set("kept", "yes")
    await open_redis.aclose()
    assert open_paths(private_set.data) != []

    private_set.services("up", "postgres", "redis")

    nothing = tmp_path / "no-pgpass"
    assert await refused(old_url, nothing)
    assert await refused(private_set.url("DATABASE_URL"), nothing, user="postgres", password="", database="postgres")
    connection = await asyncpg.connect(private_set.url("DATABASE_URL"))
    try:
        assert await connection.fetchval("SELECT id FROM kept") == 7
        assert not await connection.fetchval(
            "SELECT rolcreatedb OR rolsuper FROM pg_roles WHERE rolname = current_user"
        )
    finally:
        await connection.close()
    intruder = redis_client(redis_port)
    with pytest.raises(AuthenticationError):
        await intruder.get("kept")
    await intruder.aclose()
    client = aioredis.Redis.from_url(private_set.url("REDIS_URL"))
    assert await client.get("kept") == b"yes"
    await client.aclose()
    assert open_paths(private_set.data) == []
    assert private_mode(cluster_folder(private_set.data))


def test_a_fresh_set_is_private_and_a_second_up_changes_nothing(private_set: PrivateSet) -> None:
    private_set.services("up", "postgres", "redis")
    again = private_set.services("up", "postgres", "redis")
    assert "giving" not in again and "starting" not in again, again
    assert open_paths(private_set.data) == []
    cluster = cluster_folder(private_set.data)
    assert open_paths(cluster) == []
    hba = [
        line.split() for line in (cluster / "pg_hba.conf").read_text().splitlines() if line and not line.startswith("#")
    ]
    assert {rule[-1] for rule in hba if rule[0] == "host"} == {"scram-sha-256"}
    assert [rule[:3] for rule in hba if rule[0] == "local"] == [["local", "all", "postgres"]]


def test_services_stop_with_one_line_without_credentials(private_set: PrivateSet) -> None:
    env = {**private_set.env, "DATABASE_URL": "postgresql://messenger@127.0.0.1:1/messenger"}
    done = subprocess.run(
        [str(SERVICES), "up", "postgres"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 2 and done.stderr.strip().splitlines() == [
        "DATABASE_URL carries no password: run make env"
    ]
