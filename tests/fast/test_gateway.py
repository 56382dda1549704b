"""The gateway in this process: `create_app(settings)` under FastAPI's TestClient, against a throwaway
Postgres database and a Redis database of its own. What a job is once accepted: a row in Postgres and
one message on the first stage's queue."""

from __future__ import annotations

import hashlib
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select, text
from sqlalchemy.orm import Session

from roadsigns.gateway import repository
from roadsigns.gateway.app import create_app
from roadsigns.shared.db.models import Job
from roadsigns.shared.db.session import get_engine, session_scope
from roadsigns.shared.schemas import DetectRequest, JobOut
from roadsigns.shared.tasks import TaskName
from tests.conftest import PHOTOS
from tests.fast.conftest import settings_for
from tests.fast.test_pipeline import sent

PHOTO = (PHOTOS / "00224.jpg").read_bytes()
KEY_A, KEY_B = "alpha-key", "beta-key"


def post(client: TestClient, data: bytes = PHOTO, **headers: str) -> httpx.Response:
    return client.post("/jobs", files={"file": ("00224.jpg", data, "image/jpeg")}, headers=headers)


def test_health_and_ready_see_the_real_database_and_broker(gateway: TestClient) -> None:
    assert gateway.get("/health").json() == {"status": "ok"}
    assert gateway.get("/ready").json()["checks"] == {"database": "ok", "broker": "ok"}


def test_an_accepted_photo_is_a_queued_job_and_one_message_to_the_first_stage(
    gateway: TestClient, engine: Engine, broker: str, tmp_path: Path
) -> None:
    response = post(gateway)
    assert response.status_code == 202, response.text
    job = JobOut.model_validate(response.json())
    assert job.status == "queued" and response.headers["location"] == f"/jobs/{job.id}"
    [(name, [payload])] = sent(broker, "detect")
    request = DetectRequest.model_validate(payload)
    assert name == TaskName.DETECT and (request.job_id, request.attempt) == (job.id, 1)
    assert (tmp_path / request.blob_key).read_bytes() == PHOTO
    with session_scope(engine) as s:
        row = s.execute(select(Job).where(Job.id == job.id)).scalar_one()
        assert (row.status, row.blob_key) == ("queued", request.blob_key)
        assert row.request_sha256 == hashlib.sha256(PHOTO).hexdigest()
    assert gateway.get(f"/jobs/{job.id}").json()["status"] == "queued"
    assert gateway.get(f"/jobs/{job.id}/image").content == PHOTO


def test_an_idempotency_key_replays_the_job_and_sends_nothing_more(gateway: TestClient, broker: str) -> None:
    first = post(gateway, **{"Idempotency-Key": "k1"}).json()
    again = post(gateway, **{"Idempotency-Key": "k1"})
    assert again.json()["id"] == first["id"]
    other = post(gateway, (PHOTOS / "00330.jpg").read_bytes(), **{"Idempotency-Key": "k1"})
    assert other.status_code == 409
    assert len(sent(broker, "detect")) == 1


def test_the_202_is_the_job_as_stored(gateway: TestClient) -> None:
    """The accept path builds its answer from the row its one INSERT ... RETURNING gave back: the
    same job a later GET reads (the links aside: each answer signs its own)."""
    accepted = post(gateway, **{"Idempotency-Key": "stored"})
    assert accepted.status_code == 202, accepted.text
    read = gateway.get(accepted.headers["location"])
    assert {**accepted.json(), "links": None} == {**read.json(), "links": None}
    assert accepted.headers["content-type"] == "application/json"


def test_two_requests_racing_with_one_idempotency_key_make_one_job(
    gateway: TestClient, broker: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The second request's lookup ran before the first one's insert was committed: its insert
    then hits the unique key, and it answers with the first job, its upload deleted."""
    first = post(gateway, **{"Idempotency-Key": "raced"}).json()
    lookups: list[str] = []
    real = repository.by_idempotency_key

    def first_lookup_misses(session: Session, tenant: str, key: str) -> Job | None:
        lookups.append(key)
        return None if len(lookups) == 1 else real(session, tenant, key)

    monkeypatch.setattr(repository, "by_idempotency_key", first_lookup_misses)
    again = post(gateway, **{"Idempotency-Key": "raced"})
    assert again.status_code == 202 and again.headers["idempotent-replayed"] == "true"
    assert again.json()["id"] == first["id"] and lookups == ["raced", "raced"]
    assert len(sent(broker, "detect")) == 1
    assert [p.name for p in (tmp_path / "uploads").iterdir()] == [f"{first['id']}.jpg"]


def test_a_bad_upload_is_refused_before_any_job_exists(gateway: TestClient, engine: Engine, broker: str) -> None:
    assert post(gateway, b"not an image at all").status_code in (400, 415)
    assert post(gateway, PHOTO[: len(PHOTO) // 3]).status_code == 400
    with session_scope(engine) as s:
        assert s.execute(select(Job)).first() is None
    assert sent(broker, "detect") == []


def test_tenants_see_only_their_own_jobs(engine: Engine, broker: str, tmp_path: Path) -> None:
    settings = settings_for(engine, broker, tmp_path, api_keys=[f"alpha:{KEY_A}", f"beta:{KEY_B}"])
    with TestClient(create_app(settings)) as client:
        assert post(client).status_code == 401
        job_id = post(client, **{"X-API-Key": KEY_A}).json()["id"]
        assert client.get(f"/jobs/{job_id}", headers={"X-API-Key": KEY_A}).status_code == 200
        assert client.get(f"/jobs/{job_id}", headers={"X-API-Key": KEY_B}).status_code == 404
        assert client.get("/jobs", headers={"X-API-Key": KEY_B}).json()["total"] == 0


def _job(job_id: str) -> Job:
    return Job(
        id=job_id,
        tenant="t",
        status="queued",
        content_type="image/jpeg",
        blob_key=f"uploads/{job_id}.jpg",
        image_width=1360,
        image_height=800,
        attempts=1,
        request_sha256="0" * 64,
    )


def _kill_other_connections(engine: Engine) -> int:
    """What a Postgres restart does to the insert engine's idle connections: the server ends them."""
    with engine.connect() as conn:
        pids = conn.execute(
            text("SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()")
        ).scalars()
        return sum(bool(conn.execute(text("SELECT pg_terminate_backend(:p)"), {"p": pid}).scalar()) for pid in pids)


@pytest.mark.parametrize("landed", [False, True], ids=["lost", "landed before the connection died"])
def test_the_insert_survives_a_connection_the_server_ended(engine: Engine, landed: bool) -> None:
    """The insert engine does not ping before each statement (a round trip per job); after a
    Postgres restart its first statement on a dead connection is retried once on a new one, and a
    first try that had committed is not inserted twice."""
    url = engine.url.render_as_string(hide_password=False)
    inserts = get_engine(url, "roadsigns-gateway-test", pool_size=1, autocommit=True)
    try:
        repository.create(inserts, _job(repository.new_job_id()))  # the pool now holds one open connection
        assert _kill_other_connections(engine) == 1
        job = _job(repository.new_job_id())
        if landed:  # as if the first try committed and then lost its connection before the answer
            with Session(engine) as session, session.begin():
                session.add(_job(job.id))
        stored = repository.create(inserts, job)
        assert stored.id == job.id and stored.status == "queued" and stored.created_at is not None
        with Session(engine) as session:
            assert session.scalar(select(func.count()).select_from(Job)) == 2
    finally:
        inserts.dispose()
        get_engine.cache_clear()
