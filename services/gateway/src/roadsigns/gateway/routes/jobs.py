"""Jobs: submit a photo or a video, read a job, list jobs, fetch its image, sign crops and track crops."""

from __future__ import annotations

import hashlib
import logging
import time
from typing import Annotated

from fastapi import APIRouter, File, Form, Header, HTTPException, Query, Request, UploadFile
from fastapi.responses import Response
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from roadsigns.gateway import repository
from roadsigns.gateway.auth import KeyHeader, Tenant, require_tenant
from roadsigns.gateway.deps import ServicesDep, SessionDep
from roadsigns.gateway.metrics import ENQUEUE_FAILURES, JOBS_SUBMITTED, UPLOADS_REJECTED
from roadsigns.gateway.uploads import AcceptedImage, UploadRejected, validate_image
from roadsigns.gateway.videos import AcceptedVideo, validate_video, video_container
from roadsigns.shared import pipeline
from roadsigns.shared.blobstore import BlobNotFound
from roadsigns.shared.callbacks import CallbackRefused, check_url
from roadsigns.shared.db.models import Job
from roadsigns.shared.db.session import session_scope
from roadsigns.shared.db.views import job_to_out
from roadsigns.shared.exifgps import Fix
from roadsigns.shared.gpxtrack import GpxRefused, VideoGpx, aligned, parse
from roadsigns.shared.schemas import DetectRequest, JobMessage, JobOut, JobPage, JobStatus, VideoRequest

log = logging.getLogger(__name__)
router = APIRouter(prefix="/jobs", tags=["jobs"])

_EXT = {"image/jpeg": "jpg", "image/png": "png"}


async def read_upload(
    file: UploadFile, max_bytes: int, max_video_bytes: int | None = None, what: str = "the file"
) -> bytes:
    """Read at most one byte past the limit, so an oversized part is refused without being kept;
    a video (by its first bytes) has a limit of its own."""
    data = await file.read(64)
    if max_video_bytes is not None and video_container(data):
        max_bytes = max_video_bytes
    data += await file.read(max_bytes + 1 - len(data))
    if len(data) > max_bytes:
        UPLOADS_REJECTED.labels("413").inc()
        raise UploadRejected(413, f"{what} is larger than the limit of {max_bytes} bytes")
    return data


async def refuse_several_files(request: Request) -> None:
    """FastAPI would silently keep the last of several `file` parts; say so instead."""
    count = len((await request.form()).getlist("file"))  # the form FastAPI already parsed (cached)
    if count > 1:
        UPLOADS_REJECTED.labels("422").inc()
        raise UploadRejected(422, f"send one file per request in the form field 'file' (got {count})")


class Conflict(UploadRejected):
    def __init__(self, message: str) -> None:
        super().__init__(409, message)


def _check_callback_url(url: str | None, allow_private: bool) -> str | None:
    """A callback to a literal loopback, private, link-local, multicast or reserved host is refused
    here; the webhook pool checks every address a name resolves to again when it connects."""
    if not url:
        return None
    try:
        check_url(url, allow_private)
    except CallbackRefused as exc:
        raise UploadRejected(422, str(exc)) from None
    return url


def _replay(session: Session, services: ServicesDep, tenant: str, key: str, digest: str) -> JobOut | None:
    """The job an earlier request of this tenant with this Idempotency-Key made, if the upload is the same."""
    job = repository.by_idempotency_key(session, tenant, key)
    if job is None:
        return None
    if job.request_sha256 != digest:
        raise Conflict(f"Idempotency-Key {key!r} was already used with a different upload (job {job.id})")
    return job_to_out(job, with_signs=False, link=services.links.for_tenant(tenant))


def _located(fix: Fix | None) -> dict[str, object]:
    """The job row's location columns for the photo's EXIF GPS fix."""
    if fix is None:
        return {}
    return {
        "lat": fix.lat,
        "lon": fix.lon,
        "altitude_m": fix.altitude_m,
        "heading_deg": fix.heading_deg,
        "taken_at": fix.taken_at,
    }


def _video_gpx(gpx: bytes | None, offset_s: float | None, duration_s: float) -> dict[str, object]:
    """The job row's GPX columns for a video: the track aligned to it, and the GPS time of its first frame."""
    if gpx is None:
        if offset_s is not None:
            raise UploadRejected(422, "gpx_offset_s needs a GPX track in the form field 'gpx'")
        return {}
    try:
        track: VideoGpx = aligned(parse(gpx), duration_s, offset_s)
    except GpxRefused as exc:
        raise UploadRejected(422, str(exc)) from None
    return {"gpx_track": track.to_json(), "taken_at": track.t0}


def submit(
    services: ServicesDep,
    tenant: str,
    data: bytes,
    filename: str | None,
    idempotency_key: str | None = None,
    callback_url: str | None = None,
    fps: float | None = None,
    gpx: bytes | None = None,
    gpx_offset_s: float | None = None,
) -> tuple[JobOut, bool]:
    """Validate, store the image (or video), record the job, enqueue it. Used by /jobs and /predict.

    `fps`: a video's frames analysed a second (default ROADSIGNS_VIDEO_FPS); a photo ignores it.
    `gpx`, `gpx_offset_s`: a video's GPX track, and how many seconds into it the video starts
    (roadsigns.shared.gpxtrack); refused with a photo.

    Returns the job and whether it was created now (False: replayed for an Idempotency-Key).
    """
    services.rate_limit.check(tenant)
    sha = hashlib.sha256(data)
    if gpx is not None or gpx_offset_s is not None:  # the same video with another track is another upload
        sha.update(b"\x00gpx\x00" + (gpx or b"") + f"\x00{gpx_offset_s!r}".encode())
    digest = sha.hexdigest()
    if idempotency_key:
        with session_scope(services.engine) as session:
            replayed = _replay(session, services, tenant, idempotency_key, digest)
        if replayed is not None:
            return replayed, False
    container = video_container(data[:64])
    fps = fps or services.settings.video_fps
    try:
        upload: AcceptedImage | AcceptedVideo
        if container:
            video = upload = validate_video(data, container, fps, services.settings)
            ext, kind = video.ext, {"kind": "video", "video_fps": fps, "frames_total": video.frames_to_analyse}
            kind |= _video_gpx(gpx, gpx_offset_s, video.duration_s)
        else:
            upload = validate_image(data, services.settings)
            if gpx is not None or gpx_offset_s is not None:
                raise UploadRejected(422, "a GPX track goes with a video; a photo's position comes from its EXIF GPS")
            ext, kind = _EXT[upload.content_type], _located(upload.fix)
        callback_url = _check_callback_url(callback_url, services.settings.callback_allow_private)
    except UploadRejected as exc:
        UPLOADS_REJECTED.labels(str(exc.status)).inc()
        raise
    job_id = repository.new_job_id()
    key = services.blobs.put(f"uploads/{job_id}.{ext}", upload.data)
    job = Job(
        id=job_id,
        tenant=tenant,
        status=JobStatus.QUEUED.value,
        filename=(filename or "").replace("\x00", "")[:255] or None,  # metadata only; PostgreSQL refuses NUL
        content_type=upload.content_type,
        blob_key=key,
        image_width=upload.width,
        image_height=upload.height,
        attempts=1,
        idempotency_key=idempotency_key,
        request_sha256=digest,
        callback_url=callback_url,
        **kind,
    )
    try:
        stored = repository.create(services.inserts, job)
        out = job_to_out(stored, with_signs=False, link=services.links.for_tenant(tenant))
    except IntegrityError:
        # Two requests raced with the same Idempotency-Key: the first one's job wins.
        services.blobs.delete(key)
        with session_scope(services.engine) as session:
            replayed = _replay(session, services, tenant, idempotency_key or "", digest)
        if replayed is None:
            raise
        return replayed, False
    request: JobMessage = (
        VideoRequest(job_id=job_id, blob_key=key, submitted_at=time.time(), fps=fps)
        if container
        else DetectRequest(job_id=job_id, blob_key=key, submitted_at=time.time())
    )
    try:
        pipeline.start(
            services.celery,
            request,
            retry=True,
            retry_policy={"max_retries": 2, "interval_start": 0.1, "interval_step": 0.2},
        )
    except Exception:  # the job is safe in Postgres; the reconciler re-sends it
        ENQUEUE_FAILURES.inc()
        log.exception("job %s accepted but not enqueued; the reconciler will retry", job_id)
    JOBS_SUBMITTED.inc()
    return out, True


IdempotencyKey = Annotated[
    str | None,
    Header(max_length=255, description="retrying with the same key and upload returns the same job"),
]


@router.post(
    "",
    status_code=202,
    response_model=JobOut,
    responses={
        400: {"description": "empty, truncated or corrupt image or video"},
        409: {"description": "Idempotency-Key reused with a different upload"},
        413: {"description": "file, image or GPX track too large"},
        415: {"description": "neither an image nor a video"},
        422: {
            "description": "missing `file` field, several files, a bad callback_url, a video too long, or a GPX "
            "track refused (on a photo, unparsable, untimed, fewer than 2 points, not covering the video)"
        },
    },
)
async def create_job(
    request: Request,
    services: ServicesDep,
    tenant: Tenant,
    file: Annotated[UploadFile, File(description="a photo, or a video (mp4, mov, mkv, webm, avi)")],
    callback_url: Annotated[str | None, Form(description="POSTed a signed copy of the job when it finishes")] = None,
    fps: Annotated[
        float | None, Form(gt=0, le=60, description="a video's frames analysed a second (default 5)")
    ] = None,
    gpx: Annotated[
        UploadFile | None,
        File(description="a video's GPX track (GPX 1.0/1.1, timed points): each track gets its best frame's position"),
    ] = None,
    gpx_offset_s: Annotated[
        float | None,
        Form(
            ge=-86400,
            le=86400,
            description="seconds into the GPX track at which the video starts (default 0: at its first point)",
        ),
    ] = None,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """Accept a photo or a video (with its GPX track, optionally); answer 202 with the job and its Location."""
    await refuse_several_files(request)
    settings = services.settings
    data = await read_upload(file, settings.max_upload_bytes, settings.video_max_upload_bytes)
    track = await read_upload(gpx, settings.gpx_max_upload_bytes, what="the GPX track") if gpx is not None else None
    out, created = await run_in_threadpool(
        submit, services, tenant, data, file.filename, idempotency_key, callback_url, fps, track, gpx_offset_s
    )
    headers = {"Location": f"/jobs/{out.id}"}
    if not created:
        headers["Idempotent-Replayed"] = "true"
    # pydantic's own JSON encoder (Rust), not model_dump(mode="json") then json.dumps: the same body, cheaper
    return Response(out.model_dump_json(), status_code=202, headers=headers, media_type="application/json")


@router.get("", response_model=JobPage)
def list_jobs(
    session: SessionDep,
    services: ServicesDep,
    tenant: Tenant,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    offset: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0,  # larger ones overflow PostgreSQL's bigint
    status: JobStatus | None = None,
) -> JobPage:
    """The caller's tenant's jobs, newest first."""
    jobs, total = repository.page(session, tenant, limit, offset, status)
    link = services.links.for_tenant(tenant)
    items = [job_to_out(j, with_signs=False, link=link) for j in jobs]
    return JobPage(items=items, total=total, limit=limit, offset=offset)


def _job_or_404(session: SessionDep, tenant: str, job_id: str) -> Job:
    """The job, if it is the tenant's: another tenant's job is as unknown as one never made."""
    job = repository.get(session, tenant, job_id) if len(job_id) <= 64 and "\x00" not in job_id else None
    if job is None:
        raise HTTPException(404, f"no job with id {job_id!r}")
    return job


@router.get("/{job_id}", response_model=JobOut)
def get_job(session: SessionDep, services: ServicesDep, tenant: Tenant, job_id: str) -> JobOut:
    """A job's status; its signs, timings and model versions once done; its error once failed."""
    return job_to_out(_job_or_404(session, tenant, job_id), link=services.links.for_tenant(tenant))


LinkExpires = Annotated[int | None, Query(description="a signed link's expiry (unix time), as the job's JSON gives it")]
LinkSig = Annotated[str | None, Query(max_length=64, description="a signed link's signature")]


def _linked_job(
    request: Request,
    session: Session,
    services: ServicesDep,
    job_id: str,
    path: str,
    expires: int | None,
    sig: str | None,
) -> Job:
    """A signed link opens its one picture until it expires; an unsigned one needs the X-API-Key header."""
    if expires is None and sig is None:
        return _job_or_404(session, require_tenant(request, services, request.headers.get("x-api-key")), job_id)
    job = repository.get_for_signed_link(session, job_id) if len(job_id) <= 64 and "\x00" not in job_id else None
    if job is None or expires is None or sig is None or not services.links.valid(job.tenant, path, expires, sig):
        raise HTTPException(403, "this link is not valid or has expired: take a fresh one from the job's JSON")
    return job


@router.get("/{job_id}/image", response_class=Response)
def get_image(
    request: Request,
    session: SessionDep,
    services: ServicesDep,
    job_id: str,
    expires: LinkExpires = None,
    sig: LinkSig = None,
    x_api_key: KeyHeader = None,  # read in _linked_job; a parameter here for the API schema
) -> Response:
    """The photo as the workers saw it (upright): with the job's signed link, or the X-API-Key header."""
    job = _linked_job(request, session, services, job_id, f"/jobs/{job_id}/image", expires, sig)
    try:
        return Response(services.blobs.get(job.blob_key), media_type=job.content_type or "image/png")
    except BlobNotFound:
        raise HTTPException(410, "the image of this job is no longer stored") from None


@router.get("/{job_id}/signs/{index}/crop", response_class=Response)
def get_crop(
    request: Request,
    session: SessionDep,
    services: ServicesDep,
    job_id: str,
    index: int,
    expires: LinkExpires = None,
    sig: LinkSig = None,
    x_api_key: KeyHeader = None,  # read in _linked_job; a parameter here for the API schema
) -> Response:
    """One sign's crop, as PNG: with the job's signed link, or the X-API-Key header."""
    job = _linked_job(request, session, services, job_id, f"/jobs/{job_id}/signs/{index}/crop", expires, sig)
    sign = next((s for s in job.signs if s.index == index), None)
    if sign is None or not sign.crop_key:
        raise HTTPException(404, f"job {job_id} has no sign {index}")
    try:
        return Response(services.blobs.get(sign.crop_key), media_type="image/png")
    except BlobNotFound:
        raise HTTPException(410, "this crop is no longer stored") from None


@router.get("/{job_id}/tracks/{track_id}/crop", response_class=Response)
def get_track_crop(
    request: Request,
    session: SessionDep,
    services: ServicesDep,
    job_id: str,
    track_id: int,
    expires: LinkExpires = None,
    sig: LinkSig = None,
    x_api_key: KeyHeader = None,  # read in _linked_job; a parameter here for the API schema
) -> Response:
    """A video track's crop from its best frame, as PNG: with the job's signed link, or the X-API-Key header."""
    path = f"/jobs/{job_id}/tracks/{track_id}/crop"
    job = _linked_job(request, session, services, job_id, path, expires, sig)
    tracks = (job.video_result or {}).get("tracks", [])
    track = next((t for t in tracks if t.get("track_id") == track_id), None)
    if track is None or not track.get("crop"):
        raise HTTPException(404, f"job {job_id} has no track {track_id}")
    try:
        return Response(services.blobs.get(track["crop"]), media_type="image/png")
    except BlobNotFound:
        raise HTTPException(410, "this crop is no longer stored") from None
