"""Start the real services as separate processes for the tests: gateway, three Celery
pools, the reconciler's beat, and an MLflow tracking server.

Each test session gets its own Postgres database, Redis database number and blob
folder, so it never touches a developer's data.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import redis
from sqlalchemy import create_engine, text

BIN = Path(sys.executable).parent
PG_ADMIN = "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(check, timeout: float, what: str, interval: float = 0.2):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            result = check()
            if result:
                return result
        except Exception as exc:  # noqa: BLE001 - keep polling until the deadline
            last = exc
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what} (last error: {last})")


_CLAIMED: list[object] = []  # open lock files, held for the life of the test process


def claim_redis_db() -> int:
    """A Redis database number no other test session on this machine is using.

    Test sessions that ran side by side on one database consumed each other's tasks;
    an exclusive lock file per database number keeps them apart. Database 0 is left
    to `make dev`.
    """
    import fcntl

    for number in range(1, 16):
        handle = open(f"/tmp/roadsigns-test-redis-db-{number}.lock", "w")  # noqa: SIM115 - held open
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            continue
        _CLAIMED.append(handle)
        return number
    raise RuntimeError("all Redis databases 1-15 are claimed by other test sessions")


LINK_SECRET = "test-link-secret"


def gateway_limits(limit_concurrency: int = 200) -> list[str]:
    """The flags every place that starts the gateway passes (Makefile, Dockerfile, compose, Helm):
    a deadline and a size limit on request heads, and 503 past this many connections per worker."""
    return [
        "--http",
        "roadsigns.gateway.protocol:HeadDeadlineHttpToolsProtocol",
        "--h11-max-incomplete-event-size",
        "65536",
        "--limit-concurrency",
        str(limit_concurrency),
        "--timeout-keep-alive",
        "5",
    ]


def gateway_command(port: int, workers: int = 1, limit_concurrency: int = 200) -> list[str]:
    return [
        str(BIN / "uvicorn"),
        "--factory",
        "roadsigns.gateway.app:create_app",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(workers),
        *gateway_limits(limit_concurrency),
    ]


@dataclass
class Stack:
    root: Path
    env: dict[str, str]
    database_url: str
    broker_url: str
    gateway_url: str = ""
    gateway_metrics_url: str = ""  # /metrics, on a port of its own: the API's port has none
    mlflow_url: str = ""
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)
    metrics_ports: dict[str, int] = field(default_factory=dict)  # worker pool -> its /metrics port

    @classmethod
    def create(
        cls, root: Path, redis_db: int | None = None, pg_port: int = 5432, redis_port: int = 6379, **overrides: str
    ) -> Stack:
        """A fresh database on the Postgres at `pg_port`, a Redis database at `redis_port`."""
        db = f"roadsigns_test_{uuid.uuid4().hex[:8]}"
        admin = create_engine(PG_ADMIN.replace(":5432/", f":{pg_port}/"), isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{db}"'))
        admin.dispose()
        if redis_db is None:
            redis_db = claim_redis_db() if redis_port == 6379 else 0
        broker = f"redis://127.0.0.1:{redis_port}/{redis_db}"
        redis.Redis.from_url(broker).flushdb()
        (root / "blobs").mkdir(parents=True, exist_ok=True)
        (root / "metrics").mkdir(exist_ok=True)
        env = {
            **os.environ,
            "ROADSIGNS_ENVIRONMENT": "test",
            "ROADSIGNS_DATABASE_URL": f"postgresql+psycopg2://postgres@127.0.0.1:{pg_port}/{db}",
            "ROADSIGNS_BROKER_URL": broker,
            "ROADSIGNS_BLOB_DIR": str(root / "blobs"),
            "ROADSIGNS_MAX_UPLOAD_BYTES": str(8 * 1024 * 1024),
            "ROADSIGNS_MAX_PIXELS": str(30_000_000),
            "ROADSIGNS_WEBHOOK_SECRET": "test-webhook-secret",
            "ROADSIGNS_LINK_SECRET": LINK_SECRET,  # one for every gateway process, as in production
            "ROADSIGNS_WEBHOOK_SECRETS": "alpha:alpha-webhook-secret",  # tenant alpha signs with its own
            # The tests' webhook receivers listen on 127.0.0.1; test_webhooks.py turns this off.
            "ROADSIGNS_CALLBACK_ALLOW_PRIVATE": "true",
            "MLFLOW_DISABLE_TELEMETRY": "true",
            # MLflow aggregates windows of 5 s, not 300: a test sees its job's window logged within seconds.
            "ROADSIGNS_MLFLOW_WINDOW_S": "5",
            "PYTHONUNBUFFERED": "1",
            **overrides,
        }
        stack = cls(root, env, env["ROADSIGNS_DATABASE_URL"], broker)
        subprocess.run([str(BIN / "roadsigns-migrate")], env=env, check=True, capture_output=True)
        return stack

    def _start(self, name: str, args: list[str], env: dict[str, str] | None = None) -> subprocess.Popen:
        log = open(self.root / f"{name}.log", "wb")
        proc = subprocess.Popen(args, env=env or self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.procs[name] = proc
        return proc

    def start_mlflow(self) -> None:
        port = free_port()
        self.mlflow_url = f"http://127.0.0.1:{port}"
        self._start(
            "mlflow",
            [
                str(BIN / "mlflow"),
                "server",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--workers",
                "1",
                "--backend-store-uri",
                f"sqlite:///{self.root}/mlflow.db",
                "--default-artifact-root",
                str(self.root / "mlartifacts"),
            ],
            env={**self.env, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
        )
        self.env["ROADSIGNS_MLFLOW_TRACKING_URI"] = self.mlflow_url
        wait_until(lambda: httpx.get(f"{self.mlflow_url}/health", timeout=1).status_code == 200, 90, "mlflow")

    def start_gateway(self, port: int | None = None, workers: int = 1, extra_env: dict[str, str] | None = None) -> None:
        """uvicorn on a free port. With several workers, their metrics are merged through a
        multiprocess samples folder of the gateway's own, as in deployment."""
        port = port or free_port()
        self.gateway_url = f"http://127.0.0.1:{port}"
        metrics_port = free_port()
        self.gateway_metrics_url = f"http://127.0.0.1:{metrics_port}"
        env = {**self.env, "ROADSIGNS_METRICS_PORT": str(metrics_port), **(extra_env or {})}
        if workers > 1:
            metrics_dir = self.root / "metrics" / "gateway"
            shutil.rmtree(metrics_dir, ignore_errors=True)
            metrics_dir.mkdir(parents=True)
            env["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
        self._start("gateway", gateway_command(port, workers), env=env)
        wait_until(lambda: httpx.get(f"{self.gateway_url}/ready", timeout=2).status_code == 200, 60, "gateway")

    def start_worker(
        self, pool: str, concurrency: int = 1, extra_env: dict[str, str] | None = None, name: str | None = None
    ) -> None:
        """A Celery worker process of `pool`; `name` (default the pool's) names its log, its metrics and
        `stop`'s argument: a second process of a pool needs a name of its own."""
        name = name or pool
        module = {
            "detector": "roadsigns.detector.worker",
            "ocr": "roadsigns.ocr.worker",
            "tracker": "roadsigns.tracker.worker",
            "webhook": "roadsigns.tracker.worker",  # the tracker's code, on the webhook queue
        }[pool]
        queue = {"detector": "detect", "ocr": "ocr", "tracker": "track", "webhook": "webhook"}[pool]
        # Each pool serves /metrics merged over its prefork children, from a samples folder of its own
        # that starts empty (stale files from a killed process would otherwise be counted again).
        metrics_dir = self.root / "metrics" / name
        shutil.rmtree(metrics_dir, ignore_errors=True)
        metrics_dir.mkdir(parents=True)
        self.metrics_ports[name] = free_port()
        metrics_env = {
            "ROADSIGNS_METRICS_PORT": str(self.metrics_ports[name]),
            "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
        }
        self._start(
            name,
            [
                str(BIN / "celery"),
                "-A",
                module,
                "worker",
                "-Q",
                queue,
                "-c",
                str(concurrency),
                "-n",
                f"{name}-{uuid.uuid4().hex[:6]}@%h",
                "-l",
                "INFO",
                "--without-mingle",
                "--without-gossip",
            ],
            env={**self.env, **metrics_env, **(extra_env or {})},
        )

    def start_beat(self) -> None:
        self._start(
            "beat",
            [
                str(BIN / "celery"),
                "-A",
                "roadsigns.tracker.worker",
                "beat",
                "-s",
                str(self.root / "celerybeat-schedule"),
                "-l",
                "INFO",
            ],
        )

    def wait_workers_ready(self, pools: list[str], timeout: float = 180) -> None:
        def ready() -> bool:
            return all(b"ready." in (self.root / f"{p}.log").read_bytes() for p in pools)

        wait_until(ready, timeout, f"workers {pools}", interval=0.5)

    def stop(self, name: str, sig: int = signal.SIGTERM, timeout: float = 20) -> None:
        proc = self.procs.pop(name, None)
        if proc is None or proc.poll() is not None:
            return
        with suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            with suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)

    def close(self) -> None:
        for name in reversed(list(self.procs)):  # clients first, MLflow last
            self.stop(name)
        server, db = self.database_url.rsplit("/", 1)
        engine = create_engine(f"{server}/postgres", isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)'))
        engine.dispose()
        shutil.rmtree(self.root / "blobs", ignore_errors=True)

    def log(self, name: str) -> str:
        return (self.root / f"{name}.log").read_text(errors="replace")[-4000:]


@contextmanager
def extra_gateway(stack: Stack, limit_concurrency: int = 200, **env: str) -> Iterator[tuple[str, int]]:
    """A second gateway over the stack's database and queues, with settings of its own: its URL and pid."""
    port = free_port()
    proc = subprocess.Popen(
        gateway_command(port, limit_concurrency=limit_concurrency),
        env={**stack.env, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: httpx.get(f"{base}/ready", timeout=1).status_code == 200, 60, "the extra gateway")
        yield base, proc.pid
    finally:
        proc.terminate()
        proc.wait(10)
