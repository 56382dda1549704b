"""How a job looks from outside: the API's response, and the body of its completion webhook."""

from __future__ import annotations

from collections.abc import Callable

from roadsigns.shared.db.models import Job
from roadsigns.shared.schemas import CallbackOut, JobOut, JobStatus, Location, SignOut


def _unsigned(path: str) -> str:
    return path


def job_location(job: Job) -> Location | None:
    """The photo's position, stored at upload (the gateway reads it from EXIF GPS)."""
    if job.lat is None or job.lon is None:
        return None
    return Location(lat=job.lat, lon=job.lon, altitude_m=job.altitude_m, heading_deg=job.heading_deg)


def job_to_out(job: Job, with_signs: bool = True, link: Callable[[str], str] = _unsigned) -> JobOut:
    """`link` turns the image's and crops' paths into what the reader may open: the gateway signs
    them (roadsigns.gateway.links); a webhook's body keeps the plain paths, read with a key."""
    links = {"self": f"/jobs/{job.id}", "image": link(f"/jobs/{job.id}/image")}
    location = job_location(job)
    signs = None
    if with_signs and job.status == JobStatus.DONE.value:
        signs = [
            SignOut(
                bbox=[s.x1, s.y1, s.x2, s.y2],
                class_id=s.class_id,
                class_name=s.class_name,
                category=s.category,
                confidence=s.confidence,
                text=s.text,
                text_confidence=s.text_confidence,
                text_matches_class=s.text_matches_class,
                class_source=s.class_source,
                crop_url=link(f"/jobs/{job.id}/signs/{s.index}/crop") if s.crop_key else None,
                location=location,
            )
            for s in job.signs
        ]
    return JobOut(
        id=job.id,
        status=JobStatus(job.status),
        filename=job.filename,
        created_at=job.created_at,
        updated_at=job.updated_at,
        finished_at=job.finished_at,
        image_width=job.image_width,
        image_height=job.image_height,
        attempts=job.attempts,
        error=job.error,
        signs=signs,
        timings_ms=job.timings_ms if job.status == JobStatus.DONE.value else None,
        model_versions=job.model_versions,
        callback=CallbackOut(status=job.callback_status, attempts=job.callback_attempts or 0)
        if job.callback_url
        else None,
        location=location,
        links=links,
    )
