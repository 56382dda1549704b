"""Shared fixtures: one real stack (Postgres, Redis, gateway, workers, MLflow) per test session."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Engine, create_engine, text

from roadsigns.shared.db.migrate import upgrade
from tests.stack import PG_ADMIN, Stack

DATA = Path(__file__).parent / "data"
PHOTOS = DATA / "photos"


def read_gt() -> dict[str, list[tuple[int, int, int, int, int]]]:
    out: dict[str, list[tuple[int, int, int, int, int]]] = {}
    for line in (PHOTOS / "gt.txt").read_text().split():
        name, *vals = line.split(";")
        out.setdefault(name, []).append(tuple(int(v) for v in vals))  # type: ignore[arg-type]
    return out


def iou(a, b) -> float:  # type: ignore[no-untyped-def]
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """Gateway, detector, OCR, tracker and webhook workers and MLflow, each its own process."""
    # The tests' videos last a few seconds: 1-s segments split each across detector tasks (roadsigns.detector.segments).
    s = Stack.create(tmp_path_factory.mktemp("stack"), ROADSIGNS_VIDEO_SEGMENT_S="1")
    try:
        s.start_mlflow()
        for pool, n in (("detector", 1), ("ocr", 1), ("tracker", 1), ("webhook", 1)):
            s.start_worker(pool, n)
        s.start_gateway()
        s.wait_workers_ready(["detector", "ocr", "tracker", "webhook"])
        yield s
    finally:
        s.close()


@pytest.fixture(scope="session")
def client(stack: Stack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=stack.gateway_url, timeout=30) as c:
        yield c


@pytest.fixture(scope="session")
def db(stack: Stack):  # type: ignore[no-untyped-def]
    engine = create_engine(stack.database_url)
    yield engine
    engine.dispose()


@pytest.fixture()
def engine() -> Iterator[Engine]:
    """A fresh database on the local Postgres with the schema applied by the real migration step;
    no other server is started."""
    name = f"roadsigns_unit_{uuid.uuid4().hex[:8]}"
    url = f"postgresql+psycopg2://postgres@127.0.0.1:5432/{name}"
    upgrade(url)  # creates the database too
    engine = create_engine(url)
    yield engine
    engine.dispose()
    admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
    admin.dispose()


def wait_for_job(client: httpx.Client, job_id: str, timeout: float = 240) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"/jobs/{job_id}").json()
        if job["status"] in ("done", "failed"):
            return job
        time.sleep(0.3)
    raise TimeoutError(f"job {job_id} not finished after {timeout} s: {job}")
