"""What the SDK raises. Every API error carries the server's own message (`detail`)."""

from __future__ import annotations

import httpx


class RoadsignsError(Exception):
    """Base of every error the SDK raises."""


class APIError(RoadsignsError):
    """The API answered with an error status; `message` is the server's `detail`."""

    def __init__(self, status_code: int, message: str, response: httpx.Response | None = None) -> None:
        super().__init__(f"HTTP {status_code}: {message}")
        self.status_code = status_code
        self.message = message
        self.response = response


class ClientError(APIError):
    """A 4xx: the request is wrong and retrying it unchanged will not help."""


class AuthenticationError(ClientError):
    """401 or 403: no API key, or one the server does not know."""


class NotFound(ClientError):
    """404 (no such job or sign) or 410 (no longer stored)."""


class Conflict(ClientError):
    """409: an Idempotency-Key reused with a different upload."""


class RateLimited(ClientError):
    """429, still after the SDK's retries."""


class ServerError(APIError):
    """A 5xx, still after the SDK's retries where it retries (503)."""


class TransportError(RoadsignsError):
    """The server could not be reached, or did not answer in time, still after the retries."""


class WaitTimeout(RoadsignsError, TimeoutError):
    """`wait` gave up before the job finished."""

    def __init__(self, job_id: str, timeout: float, status: str) -> None:
        super().__init__(f"job {job_id} not finished after {timeout:g} s (status {status})")
        self.job_id = job_id
        self.status = status


def error_for(response: httpx.Response) -> APIError:
    try:
        detail = response.json().get("detail")
    except (ValueError, AttributeError):
        detail = None
    message = detail if isinstance(detail, str) else (response.text[:500] or response.reason_phrase)
    status = response.status_code
    cls: type[APIError]
    if status in (401, 403):
        cls = AuthenticationError
    elif status in (404, 410):
        cls = NotFound
    elif status == 409:
        cls = Conflict
    elif status == 429:
        cls = RateLimited
    elif status < 500:
        cls = ClientError
    else:
        cls = ServerError
    return cls(status, message, response)
