"""Real failures, real processes: no accepted job is lost, duplicated or left stuck.

These tests run their own Redis and PostgreSQL on spare ports (tests/servers.py) so
that they can kill and restart them without touching the machine's shared ones.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator

import httpx
import psutil
import pytest
import redis
from sqlalchemy import create_engine, text

from roadsigns.shared.deliveries import key as delivery_key
from tests.conftest import PHOTOS, wait_for_job
from tests.servers import PrivatePostgres, PrivateRedis
from tests.stack import Stack, wait_until

PHOTO = (PHOTOS / "00330.jpg").read_bytes()


@pytest.fixture(scope="module")
def faulty(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Stack, PrivateRedis, PrivatePostgres]]:
    root = tmp_path_factory.mktemp("faults")
    pg = PrivatePostgres()
    pg.start()
    rd = PrivateRedis(root)
    rd.start()
    # The reconciler runs every 2 s and re-sends a job idle for 30 s (above a model reload after a kill).
    stack = Stack.create(
        root / "stack",
        pg_port=pg.port,
        redis_port=rd.port,
        ROADSIGNS_RECONCILE_EVERY_S="2",
        ROADSIGNS_STALE_AFTER_S="30",
        ROADSIGNS_MAX_ATTEMPTS="6",
        # Here the kills come from the test, several may hit one job, and each such job must still
        # finish: the poison-job limit (tests/test_poison.py) is set out of their way.
        ROADSIGNS_MAX_DELIVERIES="20",
        # Tesseract for speed limits too: the learned reader finishes a job's OCR in a few
        # milliseconds, too quickly for a kill to land inside the task; Tesseract takes a
        # few hundred. What is tested is the pool's recovery, not the reading.
        ROADSIGNS_OCR_LEARNED_READERS="false",
    )
    try:
        for pool in ("detector", "ocr", "tracker"):
            stack.start_worker(pool)
        stack.start_beat()
        stack.start_gateway()
        stack.wait_workers_ready(["detector", "ocr", "tracker"])
        yield stack, rd, pg
    finally:
        stack.close()
        rd.stop()
        pg.stop()
        pg.remove()


def submit(client: httpx.Client) -> str:
    response = client.post("/jobs", files={"file": ("p.jpg", PHOTO, "image/jpeg")})
    assert response.status_code == 202, response.text
    return response.json()["id"]


def assert_done_exactly_once(stack: Stack, client: httpx.Client, ids: list[str], timeout: float = 300) -> None:
    engine = create_engine(stack.database_url)
    try:
        for job_id in ids:
            job = wait_for_job(client, job_id, timeout)
            assert job["status"] == "done", job
            with engine.connect() as conn:
                rows = (
                    conn.execute(text('SELECT "index" FROM signs WHERE job_id = :j ORDER BY 1'), {"j": job_id})
                    .scalars()
                    .all()
                )
            assert rows == list(range(len(job["signs"]))), f"sign rows {rows} for {len(job['signs'])} signs"
            assert any(s["class_id"] == 2 and s["text"] == "50" for s in job["signs"])
    finally:
        engine.dispose()


def pool_children(stack: Stack, pool: str) -> list[psutil.Process]:
    return psutil.Process(stack.procs[pool].pid).children(recursive=True)


# The stage a pool runs: its tasks count each delivery in Redis as they start (roadsigns.shared.deliveries).
STAGE = {"detector": "detect", "ocr": "ocr"}


def deliveries(stack: Stack, pool: str, ids: list[str]) -> int:
    """How many tasks of this pool have started on these jobs, redeliveries included."""
    counts = redis.Redis.from_url(stack.broker_url).mget([delivery_key(STAGE[pool], i) for i in ids])
    return sum(int(c or 0) for c in counts)


@pytest.mark.parametrize("pool", ["detector", "ocr", "tracker"])
def test_sigkill_worker_mid_task(faulty, pool: str) -> None:  # type: ignore[no-untyped-def]
    stack, _, _ = faulty
    log = stack.root / f"{pool}.log"
    lost_before = log.read_text(errors="replace").count("WorkerLostError")
    with httpx.Client(base_url=stack.gateway_url, timeout=30) as client:
        ids = [submit(client) for _ in range(4)]
        started = 0
        for _ in range(3):  # several kills, each while the pool is working on a job
            if pool in STAGE:
                # A task counts its delivery as it starts: one that started since the last kill is running now.
                wait_until(
                    lambda before=started: deliveries(stack, pool, ids) > before,
                    120,
                    f"a {STAGE[pool]} task to start",
                    interval=0.01,
                )
                started = deliveries(stack, pool, ids)
            else:
                time.sleep(0.3)  # tracker tasks last milliseconds: kill while jobs finish
            for child in pool_children(stack, pool):
                child.send_signal(signal.SIGKILL)
            # Celery's parent forks a new child; wait for it before the next kill.
            wait_until(lambda: pool_children(stack, pool), 30, f"a new {pool} child")
        assert_done_exactly_once(stack, client, ids)
    if pool in STAGE:
        assert log.read_text(errors="replace").count("WorkerLostError") > lost_before, "no kill hit a task"


def test_stage_progress_reaches_postgres_in_the_trackers_batches(faulty) -> None:  # type: ignore[no-untyped-def]
    """No tracker task per stage: the detect task leaves its started mark in Redis and beat's
    progress task writes it, so a job detected and waiting for an OCR pool that is down shows
    `detecting`, then finishes once the pool is back."""
    stack, _, _ = faulty
    stack.stop("ocr")
    try:
        with httpx.Client(base_url=stack.gateway_url, timeout=30) as client:
            job_id = submit(client)
            wait_until(lambda: redis.Redis.from_url(stack.broker_url).llen("ocr") == 1, 120, "the detect result")
            wait_until(lambda: client.get(f"/jobs/{job_id}").json()["status"] == "detecting", 30, "the mark")
    finally:
        stack.start_worker("ocr")
        stack.wait_workers_ready(["ocr"])
    with httpx.Client(base_url=stack.gateway_url, timeout=30) as client:
        assert_done_exactly_once(stack, client, [job_id])


def test_jobs_survive_a_redis_restart(faulty) -> None:  # type: ignore[no-untyped-def]
    stack, rd, _ = faulty
    with httpx.Client(base_url=stack.gateway_url, timeout=30) as client:
        stack.stop("detector")  # jobs pile up in the detect queue...
        ids = [submit(client) for _ in range(3)]
        rd.stop()  # ...and Redis loses them all (no persistence)
        rd.start()
        stack.start_worker("detector")
        stack.wait_workers_ready(["detector"])
        # Postgres still has the jobs; the reconciler re-sends them once they look stale.
        assert_done_exactly_once(stack, client, ids, timeout=240)


def test_postgres_down_gives_fast_503_then_recovers(faulty) -> None:  # type: ignore[no-untyped-def]
    stack, _, pg = faulty
    with httpx.Client(base_url=stack.gateway_url, timeout=30) as client:
        pg.stop()
        try:
            t0 = time.monotonic()
            ready = client.get("/ready")
            post = client.post("/jobs", files={"file": ("p.jpg", PHOTO, "image/jpeg")})
            elapsed = time.monotonic() - t0
            assert ready.status_code == 503 and ready.json()["checks"]["database"].startswith("unreachable")
            assert post.status_code == 503 and "database" in post.json()["detail"]
            assert elapsed < 15, f"503s took {elapsed:.1f} s"  # connect_timeout 3 s each, not a hang
        finally:
            pg.start()
        wait_until(lambda: client.get("/ready").status_code == 200, 30, "the gateway to recover by itself")
        assert_done_exactly_once(stack, client, [submit(client)])


def test_gateway_restart_under_load_loses_no_accepted_upload(faulty) -> None:  # type: ignore[no-untyped-def]
    stack, _, _ = faulty
    accepted: list[str] = []
    refused: list[str] = []
    stop = threading.Event()

    def load() -> None:
        with httpx.Client(base_url=stack.gateway_url, timeout=30) as c:
            while not stop.is_set():
                try:
                    r = c.post("/jobs", files={"file": ("p.jpg", PHOTO, "image/jpeg")})
                    (accepted if r.status_code == 202 else refused).append(r.json().get("id", r.text))
                except httpx.TransportError:
                    time.sleep(0.1)  # the gateway is restarting: the client retries

    threads = [threading.Thread(target=load) for _ in range(2)]
    for t in threads:
        t.start()
    time.sleep(2)
    gateway = stack.procs["gateway"]
    port = stack.gateway_url.rsplit(":", 1)[1]
    stack.stop("gateway", signal.SIGTERM)  # graceful: uvicorn finishes requests in flight
    assert gateway.returncode is not None
    stack.start_gateway(port=int(port))
    time.sleep(2)
    stop.set()
    for t in threads:
        t.join(60)
    assert accepted and not refused, refused
    with httpx.Client(base_url=stack.gateway_url, timeout=30) as client:
        assert_done_exactly_once(stack, client, accepted, timeout=600)
