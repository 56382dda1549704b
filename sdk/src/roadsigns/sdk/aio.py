"""`AsyncClient`: the asyncio client, the same methods as `Client`, awaited."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterable
from typing import Any

import httpx

from roadsigns.sdk._base import RETRY_STATUSES, Retry, Upload, client_kwargs, poll_delays, upload_parts
from roadsigns.sdk.errors import TransportError, WaitTimeout, error_for
from roadsigns.sdk.models import Job, JobPage, JobStatus


class AsyncClient:
    """The roadsigns API over HTTP, for asyncio.

    >>> async with AsyncClient("http://localhost:8000") as rs:
    ...     job = await rs.wait((await rs.submit("photo.jpg")).id)
    """

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        timeout: float = 30.0,
        retry: Retry = Retry(),
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._http = httpx.AsyncClient(**client_kwargs(base_url, api_key, timeout), transport=transport)
        self.retry = retry

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        last = self.retry.attempts - 1
        for attempt in range(self.retry.attempts):
            try:
                response = await self._http.request(method, url, **kwargs)
            except httpx.TransportError as exc:  # safe to resend: every submit carries an Idempotency-Key
                if attempt == last:
                    raise TransportError(f"{method} {self._http.base_url}{url}: {exc!r}") from exc
                await asyncio.sleep(self.retry.backoff_s * 2**attempt)
                continue
            if response.status_code not in RETRY_STATUSES or attempt == last:
                break
            await asyncio.sleep(self.retry.delay(response, attempt))
        if response.status_code >= 400:
            raise error_for(response)
        return response

    async def submit(
        self,
        upload: Upload,
        callback_url: str | None = None,
        idempotency_key: str | None = None,
        filename: str | None = None,
        gpx: Upload | None = None,
        gpx_offset_s: float | None = None,
    ) -> Job:
        """As Client.submit."""
        parts = await asyncio.to_thread(
            upload_parts, upload, callback_url, idempotency_key, filename, gpx, gpx_offset_s
        )
        return Job.model_validate_json((await self._request("POST", "/jobs", **parts)).content)

    async def get_job(self, job_id: str) -> Job:
        return Job.model_validate_json((await self._request("GET", f"/jobs/{job_id}")).content)

    async def wait(self, job_id: str, timeout: float = 300.0) -> Job:
        deadline = time.monotonic() + timeout
        for delay in poll_delays():
            job = await self.get_job(job_id)
            if job.finished:
                return job
            if time.monotonic() + delay > deadline:
                raise WaitTimeout(job_id, timeout, job.status)
            await asyncio.sleep(delay)
        raise AssertionError("unreachable")

    async def analyze(
        self, uploads: Iterable[Upload], timeout: float = 600.0, concurrency: int = 8
    ) -> AsyncIterator[tuple[Upload, Job]]:
        """Submit and wait for every photo, `concurrency` at a time; yield (photo, job) as each finishes."""
        gate = asyncio.Semaphore(concurrency)

        async def one(upload: Upload) -> tuple[Upload, Job]:
            async with gate:
                job = await self.submit(upload)
            return upload, await self.wait(job.id, timeout)

        tasks = [asyncio.ensure_future(one(u)) for u in uploads]
        try:
            for finished in asyncio.as_completed(tasks):
                yield await finished
        finally:
            for task in tasks:
                task.cancel()

    async def list_jobs(self, limit: int = 20, offset: int = 0, status: JobStatus | str | None = None) -> JobPage:
        params: dict[str, Any] = {"limit": limit, "offset": offset}
        if status:
            params["status"] = str(status)
        return JobPage.model_validate_json((await self._request("GET", "/jobs", params=params)).content)

    async def iter_jobs(self, status: JobStatus | str | None = None, page_size: int = 100) -> AsyncIterator[Job]:
        offset = 0
        while True:
            page = await self.list_jobs(page_size, offset, status)
            for job in page.items:
                yield job
            offset += len(page.items)
            if not page.items or offset >= page.total:
                return

    async def image(self, job_id: str) -> bytes:
        return (await self._request("GET", f"/jobs/{job_id}/image")).content

    async def crop(self, job_id: str, index: int) -> bytes:
        return (await self._request("GET", f"/jobs/{job_id}/signs/{index}/crop")).content
