"""Prometheus metrics shared by the services.

Celery's prefork children each hold their own counters, so worker processes use
prometheus-client's multiprocess mode (`PROMETHEUS_MULTIPROC_DIR`) and the parent
serves the merged view on `ROADSIGNS_METRICS_PORT`.
"""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, multiprocess, start_http_server

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)

STAGE_SECONDS = Histogram(
    "roadsigns_stage_seconds", "Time spent per pipeline stage", ["stage"], buckets=_LATENCY_BUCKETS
)
JOBS_FINISHED = Counter("roadsigns_jobs_finished_total", "Jobs that reached a final status", ["status"])
SIGNS_FOUND = Counter("roadsigns_signs_total", "Signs found, by class", ["class_name"])
TASK_FAILURES = Counter("roadsigns_task_failures_total", "Task executions that raised", ["task"])
MODEL_LOAD_SECONDS = Gauge(
    "roadsigns_model_load_seconds", "Seconds the last model load took", ["model"], multiprocess_mode="max"
)
MODEL_INFO = Gauge(
    "roadsigns_model_info", "Model version served (value 1)", ["model", "version"], multiprocess_mode="max"
)
MODEL_SWAPS = Counter(
    "roadsigns_model_swaps_total",
    "Times a worker process began serving new model versions, without a restart",
    ["model"],
)
MODEL_REFUSED = Counter(
    "roadsigns_model_refused_total",
    "New model versions a worker process refused to serve (reason: load or smoke); the old ones kept serving",
    ["model", "reason"],
)

DETECT_BATCH_PHOTOS = Histogram(
    "roadsigns_detect_batch_photos",
    "Photos per detector model call across jobs (ROADSIGNS_DETECTOR_BATCH above 1)",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
)


def serve_worker_metrics(port: int | None) -> None:
    """Serve /metrics from a worker's parent process, merging every child's samples."""
    if not port:
        return
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        start_http_server(port, registry=registry)
    else:
        start_http_server(port)
