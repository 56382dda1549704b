"""Gateway metrics: HTTP latency and status codes per route, uploads accepted and refused."""

from __future__ import annotations

import time

from prometheus_client import Counter, Histogram
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.requests import Request
from starlette.responses import Response

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


class MetricsMiddleware(BaseHTTPMiddleware):
    async def dispatch(self, request: Request, call_next) -> Response:  # type: ignore[no-untyped-def]
        t0 = time.perf_counter()
        response = await call_next(request)
        route = request.scope.get("route")
        path = getattr(route, "path", "unmatched")
        HTTP_SECONDS.labels(request.method, path, str(response.status_code)).observe(time.perf_counter() - t0)
        return response
