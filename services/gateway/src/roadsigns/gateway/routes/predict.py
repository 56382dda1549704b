"""The synchronous `POST /predict` kept for old clients: submit a job and wait for it."""

from __future__ import annotations

import asyncio
import time
from typing import Annotated

from fastapi import APIRouter, File, Query, Request, UploadFile
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from roadsigns.gateway import repository
from roadsigns.gateway.auth import Tenant
from roadsigns.gateway.deps import ServicesDep
from roadsigns.gateway.routes.jobs import read_upload, refuse_several_files, submit
from roadsigns.shared.db.session import session_scope
from roadsigns.shared.db.views import job_to_out
from roadsigns.shared.schemas import TERMINAL, JobOut, JobStatus

router = APIRouter(tags=["predict"])


def _load(services: ServicesDep, tenant: str, job_id: str) -> JobOut:
    with session_scope(services.engine) as session:
        job = repository.get(session, tenant, job_id)
        assert job is not None
        return job_to_out(job, link=services.links.for_tenant(tenant))


@router.post(
    "/predict",
    response_model=JobOut,
    responses={202: {"description": "not finished within the timeout; poll the Location"}},
)
async def predict(
    request: Request,
    services: ServicesDep,
    tenant: Tenant,
    file: Annotated[UploadFile, File()],
    timeout: Annotated[float | None, Query(gt=0, le=600)] = None,
) -> JSONResponse:
    """Submit a photo and wait for the result (200), or answer 202 with the job if it takes too long."""
    await refuse_several_files(request)
    data = await read_upload(file, services.settings.max_upload_bytes)
    job, _ = await run_in_threadpool(submit, services, tenant, data, file.filename)
    deadline = time.monotonic() + (timeout or services.settings.predict_timeout_s)
    delay = 0.05
    while time.monotonic() < deadline:
        await asyncio.sleep(delay)
        delay = min(delay * 1.5, 0.5)
        job = await run_in_threadpool(_load, services, tenant, job.id)
        if job.status in TERMINAL:
            status = 200 if job.status == JobStatus.DONE else 422
            return JSONResponse(job.model_dump(mode="json"), status_code=status)
    return JSONResponse(job.model_dump(mode="json"), status_code=202, headers={"Location": f"/jobs/{job.id}"})
