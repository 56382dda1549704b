"""Database tables. Postgres is the source of truth for jobs; Redis only carries messages."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, DateTime, Float, ForeignKey, Index, Integer, MetaData, String, Text, UniqueConstraint, func
from sqlalchemy import text as sql_text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class Job(Base):
    __tablename__ = "jobs"
    __table_args__ = (
        # An Idempotency-Key is one tenant's: another tenant's same key makes a job of its own.
        UniqueConstraint("tenant", "idempotency_key", name="uq_jobs_tenant_idempotency_key"),
        Index("ix_jobs_tenant_created_at", "tenant", "created_at"),
        # GET /inventory: a tenant's located jobs, by latitude (no PostGIS: a box is two ranges).
        Index("ix_jobs_tenant_lat_lon", "tenant", "lat", "lon", postgresql_where=sql_text("lat IS NOT NULL")),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    # Who owns the job: the tenant of the API key that made it ("default" without keys).
    tenant: Mapped[str] = mapped_column(String(64), default="default", server_default="default")
    status: Mapped[str] = mapped_column(String(16), index=True)
    filename: Mapped[str | None] = mapped_column(String(255))
    content_type: Mapped[str | None] = mapped_column(String(64))
    blob_key: Mapped[str] = mapped_column(String(255))
    image_width: Mapped[int | None] = mapped_column(Integer)
    image_height: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now(), index=True)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    # Indexed: the tracker reads each MLflow window's finished jobs by it (roadsigns.tracker.aggregates).
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=1)
    error: Mapped[str | None] = mapped_column(Text)
    timings_ms: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    model_versions: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # The same key with the same upload returns the same job; with another upload, a 409.
    idempotency_key: Mapped[str | None] = mapped_column(String(255))
    request_sha256: Mapped[str | None] = mapped_column(String(64))
    # Optional webhook, POSTed (signed) when the job finishes; its outcome is kept here.
    callback_url: Mapped[str | None] = mapped_column(String(2048))
    callback_status: Mapped[str | None] = mapped_column(String(255))
    callback_attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # Where and when the photo was taken, from its EXIF GPS (roadsigns.shared.exifgps); None without.
    lat: Mapped[float | None] = mapped_column(Float)
    lon: Mapped[float | None] = mapped_column(Float)
    altitude_m: Mapped[float | None] = mapped_column(Float)
    heading_deg: Mapped[float | None] = mapped_column(Float)
    taken_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))  # the GPS clock's, UTC
    # A video job (migration 0008): its frame rate asked, progress (frames analysed of all, from the
    # detector's marks) and, once done, its result (frames_analysed, duration_s, tracks).
    kind: Mapped[str] = mapped_column(String(8), default="photo", server_default="photo")
    video_fps: Mapped[float | None] = mapped_column(Float)
    frames_done: Mapped[int | None] = mapped_column(Integer)
    frames_total: Mapped[int | None] = mapped_column(Integer)
    video_result: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # A video's GPX track, aligned to it (migration 0009, roadsigns.shared.gpxtrack.VideoGpx); its
    # `taken_at` is then the GPS time of the first frame. SQL NULL, never JSON null, without one.
    gpx_track: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True))

    signs: Mapped[list[Sign]] = relationship(back_populates="job", order_by="Sign.index", cascade="all, delete-orphan")


class Sign(Base):
    __tablename__ = "signs"
    __table_args__ = (UniqueConstraint("job_id", "index"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    index: Mapped[int] = mapped_column(Integer)
    x1: Mapped[float] = mapped_column(Float)
    y1: Mapped[float] = mapped_column(Float)
    x2: Mapped[float] = mapped_column(Float)
    y2: Mapped[float] = mapped_column(Float)
    class_id: Mapped[int | None] = mapped_column(Integer, index=True)  # None: none of the 43 classes
    class_name: Mapped[str] = mapped_column(String(128))
    category: Mapped[str] = mapped_column(String(32))
    # What named the sign: "classifier", "reading" (a speed limit's number) or "shape" ("other sign").
    class_source: Mapped[str] = mapped_column(String(16), default="classifier", server_default="classifier")
    confidence: Mapped[float] = mapped_column(Float)
    text: Mapped[str] = mapped_column(Text, default="")
    text_confidence: Mapped[float] = mapped_column(Float, default=0.0)
    text_matches_class: Mapped[bool | None] = mapped_column()
    crop_key: Mapped[str | None] = mapped_column(String(255))

    job: Mapped[Job] = relationship(back_populates="signs")


class Review(Base):
    """A person's decision on a queued sign (roadsigns.shared.reviews), or a sign the detector missed.

    The queue itself is not stored: it is the tenant's done signs that the rules pick and that
    have no review yet, so no worker writes anything for it.
    """

    __tablename__ = "reviews"
    __table_args__ = (
        UniqueConstraint("sign_id"),  # one decision per sign; a missed sign (no sign_id) may repeat
        Index("ix_reviews_tenant_reviewed_at", "tenant", "reviewed_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant: Mapped[str] = mapped_column(String(64))
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    sign_id: Mapped[int | None] = mapped_column(ForeignKey("signs.id", ondelete="CASCADE"))
    decision: Mapped[str] = mapped_column(String(16))  # accept | correct | not_a_sign | missed
    # The sign as the reviewer says it is (accept: as proposed; not_a_sign: none of these).
    class_id: Mapped[int | None] = mapped_column(Integer)
    class_name: Mapped[str | None] = mapped_column(String(128))
    text: Mapped[str | None] = mapped_column(Text)
    # The box: the sign's own for accept and correct; the one drawn for a missed sign.
    x1: Mapped[float | None] = mapped_column(Float)
    y1: Mapped[float | None] = mapped_column(Float)
    x2: Mapped[float | None] = mapped_column(Float)
    y2: Mapped[float | None] = mapped_column(Float)
    reviewer: Mapped[str] = mapped_column(String(128))  # the API key's id (roadsigns.gateway.keys.key_id)
    reviewed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
