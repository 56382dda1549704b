"""How a job looks from outside: the API's response, and the body of its completion webhook."""

from __future__ import annotations

from collections.abc import Callable

from roadsigns.shared.db.models import Job
from roadsigns.shared.schemas import CallbackOut, JobOut, JobStatus, Location, SignOut, VideoProgress, VideoTrack


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
    video: dict[str, object] = {}
    if job.kind == "video":
        video = _video(job, with_signs, link)
        signs = None
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
        **video,
    )


def _video(job: Job, with_tracks: bool, link: Callable[[str], str]) -> dict[str, object]:
    """A video job's fields: progress while it runs; frames, duration and tracks (each with its
    best frame's crop) once done."""
    out: dict[str, object] = {"kind": "video"}
    if job.status not in (JobStatus.DONE.value, JobStatus.FAILED.value) and job.frames_total:
        out["progress"] = VideoProgress(frames_done=job.frames_done or 0, frames_total=job.frames_total)
    result = job.video_result or {}
    if job.status == JobStatus.DONE.value and result:
        out["frames_analysed"] = result["frames_analysed"]
        out["duration_s"] = result["duration_s"]
        if with_tracks:
            out["tracks"] = [
                VideoTrack.model_validate(
                    {**t, "crop_url": link(f"/jobs/{job.id}/tracks/{t['track_id']}/crop") if t.get("crop") else None}
                )
                for t in result["tracks"]
            ]
    return out
