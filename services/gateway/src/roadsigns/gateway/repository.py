"""Reading and creating jobs in Postgres (the gateway never writes a job's progress)."""

from __future__ import annotations

import uuid
from datetime import timedelta

from sqlalchemy import Engine, func, inspect, or_, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, selectinload

from roadsigns.shared.db.models import Job, Sign
from roadsigns.shared.inventory import BBox, Sighting
from roadsigns.shared.schemas import JobStatus


def new_job_id() -> str:
    """122 random bits: job ids are unguessable, so knowing one is the right to read it."""
    return uuid.uuid4().hex


_JOBS = Job.metadata.tables[Job.__tablename__]
# Built once: the values go as parameters, and SQLAlchemy caches the statement compiled for each set
# of columns given (a photo with or without GPS, a video), instead of coercing a `.values()` per job.
_INSERT_JOB = insert(_JOBS).returning(*_JOBS.c)
# The retry after a dead connection: the first try may have landed before the connection died.
_INSERT_JOB_AGAIN = insert(_JOBS).on_conflict_do_nothing(index_elements=[_JOBS.c.id]).returning(*_JOBS.c)


def create(engine: Engine, job: Job) -> Job:
    """Insert the new (transient) job as one Core `INSERT ... RETURNING` on an autocommit engine
    (`get_engine(..., autocommit=True)`): one round trip, no unit of work, no BEGIN/COMMIT.
    Returns the row as the database stored it (its column defaults and `created_at`), detached.
    A duplicate Idempotency-Key raises IntegrityError.

    The engine does not ping a connection before lending it, so after a Postgres restart the
    first statement on each old connection fails. SQLAlchemy then discards every connection
    opened before the failure, and the insert is tried once more on a new one. Had the first
    try committed before its connection died, the row with this job's id (random, ours alone)
    is already there: the retry inserts nothing and reads it back.
    """
    given = inspect(job).dict
    values = {column.key: given[column.key] for column in _JOBS.c if column.key in given}
    try:
        with engine.connect() as connection:
            return Job(**connection.execute(_INSERT_JOB, values).one()._mapping)
    except DBAPIError as exc:
        if not exc.connection_invalidated:
            raise
    with engine.connect() as connection:
        row = connection.execute(_INSERT_JOB_AGAIN, values).one_or_none()
        if row is None:
            row = connection.execute(select(_JOBS).where(_JOBS.c.id == job.id)).one()
    return Job(**row._mapping)


# Every read names the tenant: a job of another tenant is not found, whatever its id.


def by_idempotency_key(session: Session, tenant: str, key: str) -> Job | None:
    query = select(Job).where(Job.tenant == tenant, Job.idempotency_key == key)
    return session.execute(query).scalar_one_or_none()


def get(session: Session, tenant: str, job_id: str) -> Job | None:
    query = select(Job).where(Job.id == job_id, Job.tenant == tenant).options(selectinload(Job.signs))
    return session.execute(query).scalar_one_or_none()


def get_for_signed_link(session: Session, job_id: str) -> Job | None:
    """The one read without a tenant: for a signed link, whose MAC names the job's tenant."""
    query = select(Job).where(Job.id == job_id).options(selectinload(Job.signs))
    return session.execute(query).scalar_one_or_none()


def page(session: Session, tenant: str, limit: int, offset: int, status: JobStatus | None) -> tuple[list[Job], int]:
    query = select(Job).where(Job.tenant == tenant)
    count = select(func.count()).select_from(Job).where(Job.tenant == tenant)
    if status is not None:
        query = query.where(Job.status == status.value)
        count = count.where(Job.status == status.value)
    jobs = session.execute(query.order_by(Job.created_at.desc(), Job.id).limit(limit).offset(offset)).scalars().all()
    return list(jobs), int(session.execute(count).scalar_one())


def sightings(session: Session, tenant: str, class_id: int | None, box: BBox | None) -> list[Sighting]:
    """Every sign of the tenant's done, located jobs (of one class, in a box, when given), as a
    sighting at the photo's position and time: when taken (its GPS clock), else when uploaded;
    and every located track of their done videos with a GPX track (`video_sightings`)."""
    seen_at = func.coalesce(Job.taken_at, Job.created_at)
    query = (
        select(Job.id, Job.lat, Job.lon, seen_at, Sign.class_id, Sign.class_name, Sign.text)
        .join(Sign, Sign.job_id == Job.id)
        .where(Job.tenant == tenant, Job.lat.is_not(None), Job.lon.is_not(None), Job.status == JobStatus.DONE.value)
    )
    if class_id is not None:
        query = query.where(Sign.class_id == class_id)
    if box is not None:
        query = query.where(Job.lat.between(box.min_lat, box.max_lat))
        if box.min_lon <= box.max_lon:
            query = query.where(Job.lon.between(box.min_lon, box.max_lon))
        else:  # across the antimeridian
            query = query.where(or_(Job.lon >= box.min_lon, Job.lon <= box.max_lon))
    photos = [
        Sighting(lat, lon, sign_class, name, text, seen, job_id)
        for job_id, lat, lon, seen, sign_class, name, text in session.execute(query)
        if lat is not None and lon is not None  # as the query asks: says so to the type checker
    ]
    return photos + video_sightings(session, tenant, class_id, box)


def video_sightings(session: Session, tenant: str, class_id: int | None, box: BBox | None) -> list[Sighting]:
    """Each track of the tenant's done videos with a GPX track, as a sighting at the position of
    its best frame, seen at the GPS time of that frame. A video's tracks live in its result
    document, not in rows: the class and the box are applied here, not in SQL."""
    query = select(Job.id, Job.taken_at, Job.created_at, Job.video_result).where(
        Job.tenant == tenant, Job.kind == "video", Job.status == JobStatus.DONE.value, Job.gpx_track.is_not(None)
    )
    out = []
    for job_id, taken_at, created_at, result in session.execute(query):
        start = taken_at or created_at
        for track in (result or {}).get("tracks", []):
            where = track.get("location")
            if not where or (class_id is not None and track.get("class_id") != class_id):
                continue
            if box is not None and not box.contains(where["lat"], where["lon"]):
                continue
            seen = start + timedelta(seconds=track["best_frame_s"])
            out.append(
                Sighting(
                    where["lat"], where["lon"], track.get("class_id"), track["class_name"], track["text"], seen, job_id
                )
            )
    return out
