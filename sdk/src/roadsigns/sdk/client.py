"""`Client`: the synchronous client."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from typing import Any

import httpx

from roadsigns.sdk._base import RETRY_STATUSES, Retry, Upload, client_kwargs, poll_delays, upload_parts
from roadsigns.sdk.errors import TransportError, WaitTimeout, error_for
from roadsigns.sdk.models import Job, JobPage, JobStatus


class Client:
    """The roadsigns API over HTTP.

    >>> with Client("http://localhost:8000", api_key="...") as rs:
    ...     job = rs.wait(rs.submit("photo.jpg").id)
    """

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        timeout: float = 30.0,
        retry: Retry = Retry(),
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._http = httpx.Client(**client_kwargs(base_url, api_key, timeout), transport=transport)
        self.retry = retry

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        last = self.retry.attempts - 1
        for attempt in range(self.retry.attempts):
            try:
                response = self._http.request(method, url, **kwargs)
            except httpx.TransportError as exc:  # safe to resend: every submit carries an Idempotency-Key
                if attempt == last:
                    raise TransportError(f"{method} {self._http.base_url}{url}: {exc!r}") from exc
                time.sleep(self.retry.backoff_s * 2**attempt)
                continue
            if response.status_code not in RETRY_STATUSES or attempt == last:
                break
            time.sleep(self.retry.delay(response, attempt))
        if response.status_code >= 400:
            raise error_for(response)
        return response

    def submit(
        self,
        upload: Upload,
        callback_url: str | None = None,
        idempotency_key: str | None = None,
        filename: str | None = None,
        gpx: Upload | None = None,
        gpx_offset_s: float | None = None,
    ) -> Job:
        """Send a photo or a video (a path or its bytes); the job comes back queued. `gpx`: a
        video's GPX track (a path or its bytes), `gpx_offset_s` how many seconds into it the video
        starts (default 0): each of the video's tracks then has a `location`."""
        parts = upload_parts(upload, callback_url, idempotency_key, filename, gpx, gpx_offset_s)
        response = self._request("POST", "/jobs", **parts)
        return Job.model_validate_json(response.content)

    def get_job(self, job_id: str) -> Job:
        return Job.model_validate_json(self._request("GET", f"/jobs/{job_id}").content)

    def wait(self, job_id: str, timeout: float = 300.0) -> Job:
        """Poll until the job is done or failed (returned either way); WaitTimeout after `timeout` s."""
        deadline = time.monotonic() + timeout
        for delay in poll_delays():
            job = self.get_job(job_id)
            if job.finished:
                return job
            if time.monotonic() + delay > deadline:
                raise WaitTimeout(job_id, timeout, job.status)
            time.sleep(delay)
        raise AssertionError("unreachable")

    def analyze(self, uploads: Iterable[Upload], timeout: float = 600.0) -> Iterator[tuple[Upload, Job]]:
        """Submit every photo, then yield (photo, finished job) in the order they finish."""
        submitted = {self.submit(u).id: u for u in uploads}
        for job in self.as_finished(submitted, timeout):
            yield submitted[job.id], job

    def as_finished(self, job_ids: Iterable[str], timeout: float = 600.0) -> Iterator[Job]:
        """Yield each job once it is done or failed, in the order they finish, polling all with one backoff."""
        pending = list(dict.fromkeys(job_ids))
        deadline = time.monotonic() + timeout
        for delay in poll_delays():
            for job_id in list(pending):
                job = self.get_job(job_id)
                if job.finished:
                    pending.remove(job_id)
                    yield job
            if not pending:
                return
            if time.monotonic() + delay > deadline:
                raise WaitTimeout(pending[0], timeout, self.get_job(pending[0]).status)
            time.sleep(delay)

    def list_jobs(self, limit: int = 20, offset: int = 0, status: JobStatus | str | None = None) -> JobPage:
        params: dict[str, Any] = {"limit": limit, "offset": offset}
        if status:
            params["status"] = str(status)
        return JobPage.model_validate_json(self._request("GET", "/jobs", params=params).content)

    def iter_jobs(self, status: JobStatus | str | None = None, page_size: int = 100) -> Iterator[Job]:
        """Every job of the caller's tenant, newest first, page by page."""
        offset = 0
        while True:
            page = self.list_jobs(page_size, offset, status)
            yield from page.items
            offset += len(page.items)
            if not page.items or offset >= page.total:
                return

    def image(self, job_id: str) -> bytes:
        """The photo as the workers saw it (upright)."""
        return self._request("GET", f"/jobs/{job_id}/image").content

    def crop(self, job_id: str, index: int) -> bytes:
        """One sign's crop, PNG."""
        return self._request("GET", f"/jobs/{job_id}/signs/{index}/crop").content
