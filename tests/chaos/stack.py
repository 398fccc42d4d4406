"""A private copy of the whole system for the fault suite: its own PostgreSQL, Redis and Kafka on
free ports in a temporary data folder, and its own streams worker, projections worker and gateway
under the project's supervisor (`scripts/system`), so that killing and restarting anything here
never touches the shared services on the default ports or another engineer's processes.

    with PrivateStack.started(kafka_nodes=1) as stack:
        stack.pid("gateway"); stack.healthz(); ...

Everything goes through the project's own scripts (`scripts/services`, `scripts/system`), started
with an environment that names only private ports and the private folder; every call is bounded.
"""

from __future__ import annotations

import glob
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from config.settings import CommonSettings
from tests.processes import free_port, free_port_block

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ROOT / "scripts" / "services"
SYSTEM = ROOT / "scripts" / "system"
PROGRAMS = ("streams", "projections", "gateway")
SCRIPT_TIMEOUT_S = 240.0
"""`scripts/services up` may format Kafka and wait up to 180 s for its port; `scripts/system up`
waits up to 60 s per process."""
SHARED_KAFKA_LIBS = ROOT / ".data" / "kafka-libs"
"""The broker's jars, fetched once into the project's data folder (KAFKA_LIBS) and shared by every
private stack."""
TOPIC_PARTITIONS = 4
"""Fewer partitions than the default 8: the workers start and rebalance faster on two cores."""
MAX_KAFKA_NODES = 3
"""Kafka node i listens on KAFKA_PORT + 2(i-1) and KAFKA_CONTROLLER_PORT + 2(i-1) (`scripts/services`):
with the controller port one above the client port, a cluster takes 2N consecutive ports."""


class StackError(RuntimeError):
    """A script of the private stack failed or a wait ran out; the message says which."""


def port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


@dataclass
class Ports:
    postgres: int
    redis: int
    kafka: int
    kafka_controller: int
    gateway: int
    streams_web: int
    projections_web: int

    @classmethod
    def pick(cls) -> Ports:
        kafka = free_port_block(2 * MAX_KAFKA_NODES)
        return cls(
            postgres=free_port(),
            redis=free_port(),
            kafka=kafka,
            kafka_controller=kafka + 1,
            gateway=free_port(),
            streams_web=free_port(),
            projections_web=free_port(),
        )


@dataclass
class PrivateStack:
    data: Path
    ports: Ports
    kafka_nodes: int = 1
    access_token_ttl_s: int = 900
    jwt_secret: str = field(default_factory=lambda: secrets.token_hex(32))
    kafka_password: str = field(default_factory=lambda: secrets.token_hex(24))
    log: list[str] = field(default_factory=list)

    # --- construction and teardown --------------------------------------------------------------
    @classmethod
    @contextmanager
    def started(
        cls, kafka_nodes: int = 1, access_token_ttl_s: int = 900, keep_logs: Path | None = None
    ) -> Iterator[PrivateStack]:
        """Services, schema, topics and processes up; everything stopped and removed on exit
        (the processes' logs copied to `keep_logs` first, when given)."""
        data = Path(tempfile.mkdtemp(prefix="messenger-chaos-"))
        stack = cls(data, Ports.pick(), kafka_nodes, access_token_ttl_s)
        try:
            stack.services_up()
            stack.prepare_schema_and_topics()
            stack.system_up()
            yield stack
        finally:
            stack.teardown(keep_logs)

    def teardown(self, keep_logs: Path | None) -> None:
        """Best effort and bounded: each step runs even if the one before failed."""
        for step in (self.system_down, self.services_down):
            try:
                step()
            except Exception as error:  # teardown goes on; the error is kept for the report
                self.note(f"teardown: {step.__name__} failed: {error}")
        if keep_logs is not None:
            self.copy_logs(keep_logs)
        pgdata = self.pgdata()
        if not pgdata.is_relative_to(self.data):  # the cluster `scripts/services` moved out, its folder with it
            shutil.rmtree(pgdata.parent, ignore_errors=True)
        shutil.rmtree(self.data, ignore_errors=True)

    def copy_logs(self, target: Path) -> None:
        target.mkdir(parents=True, exist_ok=True)
        for path in [
            *self.data.glob("logs/*.log"),
            *self.data.glob("kafka*/kafka.log"),
            *self.data.glob("kafka*/*/kafka.log"),
            self.pgdata() / "server.log",
            self.data / "redis" / "redis.log",
        ]:
            if path.is_file():
                name = (
                    path.relative_to(self.data).as_posix()
                    if path.is_relative_to(self.data)
                    else f"postgres/{path.name}"
                )
                shutil.copy(path, target / name.replace("/", "_"))

    def note(self, line: str) -> None:
        self.log.append(f"{time.strftime('%H:%M:%S')} {line}")
        print(f"[chaos] {line}", file=sys.stderr, flush=True)

    # --- environment -----------------------------------------------------------------------------
    @property
    def database_url(self) -> str:
        """The application's URL of `.env` (or the environment), its role and password, on this
        stack's port: `scripts/services` gives the private cluster the same credentials."""
        return on_port(CommonSettings().database_url, self.ports.postgres)

    @property
    def redis_url(self) -> str:
        return on_port(CommonSettings().redis_url, self.ports.redis)

    @property
    def kafka_brokers(self) -> str:
        return ",".join(f"127.0.0.1:{self.ports.kafka + 2 * i}" for i in range(self.kafka_nodes))

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.gateway}"

    def env(self) -> dict[str, str]:
        """This stack's variables over the caller's environment: they win over `.env` (pydantic
        settings read the environment first), so nothing here can reach a shared service."""
        inherited = {k: v for k, v in os.environ.items() if k not in ("KAFKA_HEAP", "KAFKA_LIBS")}
        return {
            **inherited,
            "KAFKA_LIBS": str(SHARED_KAFKA_LIBS),
            "MESSENGER_DATA_DIR": str(self.data),
            "PG_PORT": str(self.ports.postgres),
            "REDIS_PORT": str(self.ports.redis),
            "KAFKA_PORT": str(self.ports.kafka),
            "KAFKA_CONTROLLER_PORT": str(self.ports.kafka_controller),
            "KAFKA_NODES": str(self.kafka_nodes),
            "GATEWAY_PORT": str(self.ports.gateway),
            "STREAMS_WEB_PORT": str(self.ports.streams_web),
            "PROJECTIONS_WEB_PORT": str(self.ports.projections_web),
            "DATABASE_URL": self.database_url,
            "REDIS_URL": self.redis_url,
            "REDISCLI_AUTH": urlsplit(self.redis_url).password or "",
            "KAFKA_BROKERS": self.kafka_brokers,
            "KAFKA_PASSWORD": self.kafka_password,
            "TOPIC_PREFIX": "",
            "TOPIC_PARTITIONS": str(TOPIC_PARTITIONS),
            "WORKER_DATA_DIR": str(self.data / "faust"),
            "GATEWAY_INSTANCE_ID": f"chaos-{self.ports.gateway}",
            "JWT_SECRET": self.jwt_secret,
            "ACCESS_TOKEN_TTL_SECONDS": str(self.access_token_ttl_s),
            "ALLOWED_ORIGINS": self.base_url,
            # every phase registers its users anew, all from 127.0.0.1
            "REGISTER_LIMIT_PER_ADDRESS": "100000",
            "LOG_LEVEL": "INFO",
            "PYTHON": sys.executable,
            "PYTHONUNBUFFERED": "1",
        }

    def run(
        self, *args: str | Path, timeout: float = SCRIPT_TIMEOUT_S, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """One command with this stack's environment, from the project root, bounded."""
        env = self.env()
        assert env["MESSENGER_DATA_DIR"] == str(self.data) and env["PG_PORT"] != "5432", "never the shared services"
        try:
            done = subprocess.run(
                [str(a) for a in args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False
            )
        except subprocess.TimeoutExpired as error:
            raise StackError(f"{' '.join(map(str, args))}: no end within {timeout} s") from error
        if check and done.returncode != 0:
            raise StackError(
                f"{' '.join(map(str, args))} exited {done.returncode}:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
            )
        return done

    # --- services --------------------------------------------------------------------------------
    def services_up(self, *names: str) -> None:
        self.run(SERVICES, "up", *names)

    def services_down(self) -> None:
        self.run(SERVICES, "down", timeout=120)

    def prepare_schema_and_topics(self) -> None:
        self.run(sys.executable, "-m", "projections", "migrate", timeout=120)
        self.run(sys.executable, "-m", "streams", "create-topics", timeout=120)

    def pg_bin(self) -> Path:
        found = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: [int(x) for x in re.findall(r"\d+", p)])
        if not found:
            raise StackError("no PostgreSQL binaries under /usr/lib/postgresql")
        return Path(found[-1])

    def as_postgres(self, *args: str | Path) -> list[str]:
        prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        return [*prefix, *map(str, args)]

    def pgdata(self) -> Path:
        """The cluster's folder: `$DATA/postgres`, or where `scripts/services` recorded it
        (`$DATA/postgres.location`) when PostgreSQL's user could not enter the data folder."""
        where = self.data / "postgres.location"
        return (
            Path(where.read_text().strip()) if where.is_file() and where.read_text().strip() else self.data / "postgres"
        )

    def restart_postgres(self) -> None:
        """An immediate restart: no checkpoint, every connection cut, crash recovery at start."""
        pgdata = self.pgdata()
        self.run(
            *self.as_postgres(
                self.pg_bin() / "pg_ctl",
                "-D",
                pgdata,
                "-l",
                pgdata / "server.log",
                "-m",
                "immediate",
                "-w",
                "-t",
                "60",
                "restart",
            ),
            timeout=90,
        )

    def stop_redis(self) -> None:
        self.run("redis-cli", "-p", str(self.ports.redis), "shutdown", "nosave", check=False, timeout=15)
        wait_until(lambda: not port_open(self.ports.redis), 15, "Redis to stop")

    def kill_kafka_node(self, node: int = 1) -> None:
        """kill -9 of one Kafka node (1 for the single broker), as `scripts/services` does it."""
        self.run(SERVICES, "kill-kafka-node", str(node), timeout=30)

    def kafka_up(self) -> None:
        """Starts whichever Kafka node is not running."""
        self.services_up("kafka")

    # --- the system's processes ---------------------------------------------------------------
    def system_up(self) -> None:
        self.run(SYSTEM, "up", timeout=SCRIPT_TIMEOUT_S)

    def system_down(self) -> None:
        self.run(SYSTEM, "down", timeout=120)

    def system_status(self) -> str:
        done = self.run(SYSTEM, "status", check=False, timeout=30)
        return done.stdout

    def pid(self, program: str) -> int | None:
        """The pid of one program as its supervisor reports it (`scripts/system pid NAME`, or the
        `pid N` in `scripts/system status`)."""
        done = self.run(SYSTEM, "pid", program, check=False, timeout=30)
        if done.returncode == 0 and done.stdout.strip().isdigit() and int(done.stdout.strip()) > 0:
            return int(done.stdout.strip())
        for line in self.system_status().splitlines():
            found = re.search(r"pid (\d+)", line)
            if line.split(" ", 1)[0].strip() == program and found:
                return int(found.group(1))
        return None

    def all_running(self) -> bool:
        """Every program running as its supervisor says (RUNNING, or `running` of the plain script)."""
        states = {line.split()[0]: line for line in self.system_status().splitlines() if line.strip()}
        return all(p in states and re.search(r"\b(RUNNING|running)\b", states[p]) for p in PROGRAMS)

    def kill_program(self, program: str) -> int:
        pid = self.pid(program)
        if pid is None:
            raise StackError(f"{program} has no pid:\n{self.system_status()}")
        os.kill(pid, signal.SIGKILL)
        return pid

    def healthz(self) -> int:
        """The gateway's /healthz status code; 0 when it does not answer at all."""
        try:
            with urllib.request.urlopen(f"{self.base_url}/healthz", timeout=3) as response:
                return int(response.status)
        except urllib.error.HTTPError as error:
            return int(error.code)
        except Exception:
            return 0

    def operator_restart(self) -> None:
        """What an operator does when the system does not come back: services up, processes
        down and up again. Counted by the caller as a manual action."""
        self.note("manual action: scripts/services up; scripts/system down; scripts/system up")
        self.services_up()
        try:
            self.system_down()
        except StackError as error:
            self.note(f"system down failed: {error}")
        self.system_up()


def on_port(url: str, port: int) -> str:
    """`url` with its host and port replaced by 127.0.0.1:`port` (user and password kept)."""
    parts = urlsplit(url)
    userinfo = parts.netloc.rpartition("@")[0]
    return urlunsplit(parts._replace(netloc=f"{userinfo}@127.0.0.1:{port}" if userinfo else f"127.0.0.1:{port}"))


def wait_until(predicate: Callable[[], bool], timeout: float, what: str, interval: float = 0.2) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise StackError(f"waited {timeout} s for {what}")
