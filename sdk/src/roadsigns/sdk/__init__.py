"""The roadsigns Python SDK: `Client` and `AsyncClient` over the HTTP API, and `verify_webhook`."""

__version__ = "0.1.0"

from roadsigns.sdk._base import Retry  # noqa: E402
from roadsigns.sdk.aio import AsyncClient  # noqa: E402
from roadsigns.sdk.client import Client  # noqa: E402
from roadsigns.sdk.errors import (  # noqa: E402
    APIError,
    AuthenticationError,
    ClientError,
    Conflict,
    NotFound,
    RateLimited,
    RoadsignsError,
    ServerError,
    TransportError,
    WaitTimeout,
)
from roadsigns.sdk.models import Callback, Job, JobPage, JobStatus, Location, Sign  # noqa: E402
from roadsigns.sdk.webhooks import WebhookError, verify_webhook  # noqa: E402

__all__ = [
    "APIError",
    "AsyncClient",
    "AuthenticationError",
    "Callback",
    "Client",
    "ClientError",
    "Conflict",
    "Job",
    "JobPage",
    "JobStatus",
    "Location",
    "NotFound",
    "RateLimited",
    "Retry",
    "RoadsignsError",
    "ServerError",
    "Sign",
    "TransportError",
    "WaitTimeout",
    "WebhookError",
    "verify_webhook",
]
