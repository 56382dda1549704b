"""Build the roadsigns Grafana dashboard: `python monitoring/grafana/dashboards/build.py`.

The JSON beside this file is the provisioned artefact (compose mounts it; the Helm chart ships
it in a ConfigMap for the Grafana sidecar). Edit here, rebuild, commit both; deploy/check.sh
fails when the JSON is out of date and checks every panel's PromQL with promtool.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

OUT = Path(__file__).with_name("roadsigns.json")
DS = {"type": "prometheus", "uid": "${datasource}"}
WORKERS = "detector|ocr|tracker"


def target(expr: str, legend: str, ref: str) -> dict:
    return {"datasource": DS, "expr": expr, "legendFormat": legend, "refId": ref, "range": True}


def panel(
    title: str, targets: list[tuple[str, str]], x: int, y: int, unit: str = "short", w: int = 12, **extra
) -> dict:
    return {
        "type": extra.pop("type", "timeseries"),
        "title": title,
        "datasource": DS,
        "gridPos": {"x": x, "y": y, "w": w, "h": 8},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "targets": [target(e, legend, chr(ord("A") + i)) for i, (e, legend) in enumerate(targets)],
        **extra,
    }


def stage_quantiles() -> list[tuple[str, str]]:
    bucket = 'sum by (le) (rate(roadsigns_stage_seconds_bucket{stage="$stage"}[$__rate_interval]))'
    return [(f"histogram_quantile({q}, {bucket})", f"p{int(q * 100)}") for q in (0.5, 0.95, 0.99)]


def panels() -> list[dict]:
    rate = "[$__rate_interval]"
    return [
        panel(
            "Latency of stage $stage (p50 / p95 / p99)",
            stage_quantiles(),
            0,
            0,
            "s",
            w=8,
            repeat="stage",
            repeatDirection="h",
            maxPerRow=3,
        ),
        panel(
            "Throughput: jobs per second",
            [
                (f"sum(rate(roadsigns_jobs_submitted_total{rate}))", "submitted"),
                (f"sum by (status) (rate(roadsigns_jobs_finished_total{rate}))", "{{status}}"),
            ],
            0,
            8,
            "reqps",
        ),
        panel(
            "Error rate",
            [
                (
                    f'sum(rate(roadsigns_jobs_finished_total{{status="failed"}}{rate}))'
                    f" / sum(rate(roadsigns_jobs_finished_total{rate}))",
                    "failed jobs",
                ),
                (
                    f'sum(rate(roadsigns_http_request_seconds_count{{status=~"5.."}}{rate}))'
                    f" / sum(rate(roadsigns_http_request_seconds_count{rate}))",
                    "HTTP 5xx",
                ),
                (
                    f"sum by (task) (rate(roadsigns_task_failures_total{rate}))"
                    f" / ignoring (task) group_left sum(rate(roadsigns_jobs_submitted_total{rate}))",
                    "{{task}} task failures",
                ),
            ],
            12,
            8,
            "percentunit",
        ),
        panel("Queue depth per pool", [("max by (queue) (roadsigns_queue_messages)", "{{queue}}")], 0, 16),
        panel(
            "Workers per pool",
            [
                (f'count by (component) (up{{component=~"{WORKERS}"}} == 1)', "{{component}} processes scraped"),
                ("sum(flower_worker_online)", "Celery workers online (Flower)"),
            ],
            12,
            16,
        ),
        panel(
            "Gateway latency p95 by route",
            [
                (
                    "histogram_quantile(0.95, sum by (le, route) "
                    f'(rate(roadsigns_http_request_seconds_bucket{{route!="/metrics"}}{rate})))',
                    "{{route}}",
                )
            ],
            0,
            24,
            "s",
        ),
        panel(
            "Gateway requests by status",
            [
                (f"sum by (status) (rate(roadsigns_http_request_seconds_count{rate}))", "{{status}}"),
                (f"sum by (status) (rate(roadsigns_uploads_rejected_total{rate}))", "upload rejected {{status}}"),
            ],
            12,
            24,
            "reqps",
        ),
        panel(
            "Signs found by class (top 10 over the range)",
            [("topk(10, sum by (class_name) (increase(roadsigns_signs_total[$__range])))", "{{class_name}}")],
            0,
            32,
            type="barchart",
            options={"orientation": "horizontal", "xField": "class_name"},
        ),
        panel(
            "Models served",
            [
                ("max by (model, version) (roadsigns_model_info)", "{{model}} {{version}}"),
                ("max by (model) (roadsigns_model_load_seconds)", "{{model}} load seconds"),
                ("sum by (model) (increase(roadsigns_model_swaps_total[$__range]))", "{{model}} swaps"),
                ("sum by (reason) (increase(roadsigns_model_refused_total[$__range]))", "refused: {{reason}}"),
            ],
            12,
            32,
            type="table",
        ),
    ]


def dashboard() -> dict:
    return {
        "uid": "roadsigns-pipeline",
        "title": "roadsigns: pipeline",
        "tags": ["roadsigns"],
        "timezone": "browser",
        "schemaVersion": 39,
        "refresh": "30s",
        "time": {"from": "now-3h", "to": "now"},
        "templating": {
            "list": [
                {"name": "datasource", "label": "Prometheus", "type": "datasource", "query": "prometheus"},
                {
                    "name": "stage",
                    "label": "Stage",
                    "type": "query",
                    "datasource": DS,
                    "multi": True,
                    "includeAll": True,
                    "current": {"text": "All", "value": "$__all"},
                    "refresh": 2,
                    "query": {"query": "label_values(roadsigns_stage_seconds_bucket, stage)", "refId": "stage"},
                },
            ]
        },
        "panels": [dict(p, id=i + 1) for i, p in enumerate(panels())],
    }


if __name__ == "__main__":
    text = json.dumps(dashboard(), indent=2) + "\n"
    if sys.argv[1:] == ["--check"]:
        sys.exit(0 if OUT.exists() and OUT.read_text() == text else f"{OUT} is out of date: run {__file__}")
    OUT.write_text(text)
