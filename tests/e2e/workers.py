"""The system's workers as real processes, on isolated topics and a fresh database."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from tests.processes import Process, free_port, start, wait_http


def worker_env(prefix: str, database_url: str, partitions: int, data_dir: Path) -> dict[str, str]:
    return {
        "TOPIC_PREFIX": prefix,
        "TOPIC_PARTITIONS": str(partitions),
        "DATABASE_URL": database_url,
        "WORKER_DATA_DIR": str(data_dir),
    }


def start_worker(kind: str, env: dict[str, str], log_dir: Path, name: str | None = None) -> Process:
    """`python -m <kind> worker` (streams or projections) on a free web port, once it answers."""
    port = free_port()
    args = [kind, "worker", "-l", "info", "--web-port", str(port)]
    process = start(name or kind, args, {**env, "WORKER_WEB_PORT": str(port)}, log_dir)
    process.env["port"] = str(port)
    wait_http(process, f"http://127.0.0.1:{port}/healthz", timeout=90)
    return process


@contextmanager
def running_workers(
    prefix: str, database_url: str, log_dir: Path, partitions: int = 4, extra: Mapping[str, str] | None = None
) -> Iterator[list[Process]]:
    """One streams worker and one projections worker (with `extra` settings), stopped on exit."""
    env = {**worker_env(prefix, database_url, partitions, log_dir / "faust"), **(extra or {})}
    workers = [start_worker("streams", env, log_dir), start_worker("projections", env, log_dir)]
    try:
        yield workers
    finally:
        for worker in workers:
            worker.stop()
