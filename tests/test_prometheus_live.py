"""The real Prometheus (Debian's `prometheus`, or the copy deploy/install-tools.sh unpacks into
.tools/bin) scrapes the running gateway and the four worker pools while a photo goes through
the pipeline; the per-stage histograms, queue depths and job counters are read back through
Prometheus' HTTP API, the project's alert rules load and evaluate, and every dashboard panel's
query runs against the live data.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import httpx
import pytest
import yaml

from tests.conftest import PHOTOS, wait_for_job
from tests.stack import Stack, free_port, wait_until

ROOT = Path(__file__).resolve().parents[1]
RULES = ROOT / "monitoring" / "prometheus" / "rules" / "roadsigns.rules.yml"
DASHBOARD = ROOT / "monitoring" / "grafana" / "dashboards" / "roadsigns.json"
STAGES = {"queue_wait", "detect", "classify", "ocr", "total"}


def prometheus_binary() -> str:
    tools = Path(os.environ.get("TOOLS_DIR", ROOT / ".tools")) / "bin" / "prometheus"
    found = str(tools) if tools.exists() else shutil.which("prometheus")
    if not found:
        message = "no prometheus binary: run `bash deploy/install-tools.sh` (or apt-get install prometheus)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return found


@pytest.fixture(scope="module")
def prometheus(stack: Stack) -> Iterator[str]:
    """Prometheus on 127.0.0.1, scraping every second, with the project's alert rules loaded."""
    binary = prometheus_binary()
    root = stack.root / "prometheus"
    root.mkdir(exist_ok=True)
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(RULES)],
        "scrape_configs": [
            {
                "job_name": "roadsigns-gateway",
                "static_configs": [  # the gateway's metrics port, as in compose and Helm
                    {"targets": [urlparse(stack.gateway_metrics_url).netloc], "labels": {"component": "gateway"}}
                ],
            },
            {
                "job_name": "roadsigns-workers",
                "static_configs": [
                    {"targets": [f"127.0.0.1:{port}"], "labels": {"component": pool}}
                    for pool, port in stack.metrics_ports.items()
                ],
            },
        ],
    }
    (root / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with open(root / "prometheus.log", "wb") as log:
        proc = subprocess.Popen(
            [
                binary,
                f"--config.file={root / 'prometheus.yml'}",
                f"--storage.tsdb.path={root / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_until(lambda: httpx.get(f"{url}/-/ready", timeout=1).status_code == 200, 60, "prometheus")
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def query(url: str, expr: str) -> list[dict]:
    response = httpx.get(f"{url}/api/v1/query", params={"query": expr}, timeout=10)
    body = response.json()
    assert body["status"] == "success", (expr, body)
    return body["data"]["result"]


def by_label(result: list[dict], label: str) -> dict[str, float]:
    return {r["metric"].get(label, ""): float(r["value"][1]) for r in result}


def test_prometheus_reads_stage_histograms_during_a_job(prometheus: str, client: httpx.Client, stack: Stack) -> None:
    def all_targets_up() -> bool:
        targets = httpx.get(f"{prometheus}/api/v1/targets", timeout=5).json()["data"]["activeTargets"]
        return len(targets) == 5 and all(t["health"] == "up" for t in targets)

    wait_until(all_targets_up, 60, "gateway and worker targets up")
    count_by_stage = "sum by (stage) (roadsigns_stage_seconds_count)"
    before = by_label(query(prometheus, count_by_stage), "stage")

    with open(PHOTOS / "00224.jpg", "rb") as f:
        response = client.post("/jobs", files={"file": ("00224.jpg", f, "image/jpeg")})
    assert response.status_code == 202, response.text
    job = wait_for_job(client, response.json()["id"])
    assert job["status"] == "done", job

    # Every stage observed the job, merged over the prefork children by multiprocess mode.
    def stages_counted() -> dict[str, float] | None:
        after = by_label(query(prometheus, count_by_stage), "stage")
        grown = {s: after.get(s, 0) - before.get(s, 0) for s in STAGES}
        return grown if all(v >= 1 for v in grown.values()) else None

    grown = wait_until(stages_counted, 30, f"stage counts for {sorted(STAGES)}", interval=1)
    assert set(grown) == STAGES

    p99 = by_label(
        query(prometheus, "histogram_quantile(0.99, sum by (le, stage) (roadsigns_stage_seconds_bucket))"), "stage"
    )
    assert STAGES <= set(p99)
    assert all(math.isfinite(v) and v > 0 for stage, v in p99.items() if stage in STAGES), p99
    # The job's own timings agree with the histogram: its detect time lies within the observed range.
    detect_max = float(query(prometheus, 'max(roadsigns_stage_seconds_sum{stage="detect"})')[0]["value"][1])
    assert detect_max >= job["timings_ms"]["detect_ms"] / 1000 * 0.99

    assert set(by_label(query(prometheus, "roadsigns_queue_messages"), "queue")) == {
        "detect",
        "ocr",
        "track",
        "webhook",
    }
    assert by_label(query(prometheus, "roadsigns_jobs_finished_total"), "status").get("done", 0) >= 1
    assert {"detector", "classifier", "ocr"} <= set(by_label(query(prometheus, "roadsigns_model_info"), "model"))
    assert by_label(query(prometheus, "sum by (component) (up)"), "component") == {
        "gateway": 1.0,
        "detector": 1.0,
        "ocr": 1.0,
        "tracker": 1.0,
        "webhook": 1.0,
    }


def test_alert_rules_and_dashboard_queries_run_on_live_data(prometheus: str) -> None:
    def rules_evaluated() -> list[dict] | None:
        groups = httpx.get(f"{prometheus}/api/v1/rules", timeout=5).json()["data"]["groups"]
        rules = [r for g in groups for r in g["rules"]]
        return rules if rules and all(r.get("lastEvaluation", "").startswith("20") for r in rules) else None

    rules = wait_until(rules_evaluated, 30, "alert rules evaluated", interval=1)
    assert all(r["health"] == "ok" for r in rules), [(r["name"], r.get("lastError")) for r in rules]

    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    for expr in exprs:
        concrete = expr.replace("$__rate_interval", "1m").replace("$__range", "1h").replace("$stage", "detect")
        query(prometheus, concrete)  # asserts the query runs
    latency = query(
        prometheus,
        'histogram_quantile(0.95, sum by (le) (rate(roadsigns_stage_seconds_bucket{stage="detect"}[1m])))',
    )
    assert latency, "the per-stage latency panel has data for the detect stage"
