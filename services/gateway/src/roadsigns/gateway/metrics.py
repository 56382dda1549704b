"""Gateway metrics: HTTP latency and status codes per route, uploads accepted and refused."""

from __future__ import annotations

import time

from prometheus_client import Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

HTTP_SECONDS = Histogram(
    "roadsigns_http_request_seconds",
    "HTTP request latency",
    ["method", "route", "status"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
JOBS_SUBMITTED = Counter("roadsigns_jobs_submitted_total", "Jobs accepted by the gateway")
UPLOADS_REJECTED = Counter("roadsigns_uploads_rejected_total", "Uploads refused, by HTTP status", ["status"])
ENQUEUE_FAILURES = Counter(
    "roadsigns_enqueue_failures_total", "Accepted jobs whose message could not be sent (the reconciler re-sends them)"
)


class MetricsMiddleware:
    """Latency per method, route template and status.

    Plain ASGI rather than Starlette's BaseHTTPMiddleware, which runs every request
    through an extra task and memory stream: measurable on the upload path.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        status = 500  # what the client sees when the app raises before answering

        async def send_and_note(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            path = getattr(scope.get("route"), "path", "unmatched")  # the template the router matched
            HTTP_SECONDS.labels(scope["method"], path, str(status)).observe(time.perf_counter() - t0)
