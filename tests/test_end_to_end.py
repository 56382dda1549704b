"""A photo through the real gateway, Redis, three Celery pools, Postgres and MLflow."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
from mlflow import MlflowClient
from sqlalchemy import text

from roadsigns.shared.settings import Settings
from roadsigns.shared.tasks import TaskName, make_celery
from tests.conftest import PHOTOS, iou, read_gt, wait_for_job
from tests.stack import Stack, wait_until


def post_photo(client: httpx.Client, name: str) -> httpx.Response:
    with open(PHOTOS / name, "rb") as f:
        return client.post("/jobs", files={"file": (name, f, "image/jpeg")})


def test_photo_goes_through_every_stage(client: httpx.Client, stack: Stack, db) -> None:  # type: ignore[no-untyped-def]
    response = post_photo(client, "00224.jpg")
    assert response.status_code == 202, response.text
    job_id = response.json()["id"]
    assert response.headers["location"] == f"/jobs/{job_id}"
    assert response.json()["status"] == "queued"

    job = wait_for_job(client, job_id)
    assert job["status"] == "done", (job, stack.log("detector"))
    truth = read_gt()["00224.jpg"]
    found = {s["class_id"]: s for s in job["signs"]}
    # Three signs on one post: school crossing (28), speed limit 30 (1), no overtaking (9).
    for left, top, right, bottom, class_id in truth:
        assert class_id in found, f"class {class_id} not found in {job['signs']}"
        assert iou(found[class_id]["bbox"], (left, top, right + 1, bottom + 1)) > 0.5
    for sign in job["signs"]:
        assert set(sign) >= {"bbox", "class_id", "class_name", "category", "confidence", "text", "text_confidence"}
        assert sign["category"] in ("prohibitory", "danger", "mandatory", "other")
    assert {"queue_wait_ms", "detect_ms", "ocr_ms", "total_ms"} <= set(job["timings_ms"])
    assert job["timings_ms"]["total_ms"] >= job["timings_ms"]["detect_ms"]
    assert set(job["model_versions"]) >= {"detector", "classifier", "ocr"}

    # Postgres holds exactly one row per sign, and a crop for each.
    count = db.connect().execute(text("SELECT count(*) FROM signs WHERE job_id = :j"), {"j": job_id}).scalar()
    assert count == len(job["signs"])
    crop = client.get(job["signs"][0]["crop_url"])
    assert crop.status_code == 200 and crop.content[:4] == b"\x89PNG"

    # MLflow has the job in its window's aggregates for the job's model versions (ROADSIGNS_MLFLOW_WINDOW_S
    # is 5 s in the test stack). Beat would tick every 5 s; here the test sends the tick itself.
    mlflow = MlflowClient(stack.mlflow_url)
    finished = datetime.fromisoformat(job["finished_at"]).timestamp()
    window = f"{datetime.fromtimestamp(finished // 5 * 5, UTC):%Y-%m-%dT%H:%M:%SZ}/5"
    celery = make_celery("test-e2e", Settings(broker_url=stack.broker_url))

    def logged() -> list:
        celery.send_task(TaskName.MLFLOW_WINDOWS)
        experiment = mlflow.get_experiment_by_name("roadsigns-jobs")
        return experiment and mlflow.search_runs(
            [experiment.experiment_id],
            filter_string=f"tags.`roadsigns.window` = '{window}' AND params.`model.detector` = "
            f"'{job['model_versions']['detector']}'",
        )

    runs = wait_until(logged, 60, "the job's window in MLflow", interval=1)
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    metrics = runs[0].data.metrics
    assert metrics["jobs_done"] >= 1 and metrics["signs"] >= len(job["signs"])
    assert {"detect_ms_p50", "total_ms_p99", "confidence_p50", "open_set_share"} <= set(metrics)
    # No run per job any more.
    assert not mlflow.search_runs([runs[0].info.experiment_id], filter_string="tags.`roadsigns.job_id` != ''")


def test_ocr_reads_the_speed_limit(client: httpx.Client) -> None:
    job = wait_for_job(client, post_photo(client, "00330.jpg").json()["id"])
    assert job["status"] == "done"
    speed = [s for s in job["signs"] if s["class_id"] == 2]
    assert speed, job["signs"]
    assert speed[0]["text"] == "50"
    assert speed[0]["text_matches_class"] is True


def test_predict_waits_for_the_result(client: httpx.Client) -> None:
    with open(PHOTOS / "00121.jpg", "rb") as f:
        response = client.post("/predict", files={"file": ("00121.jpg", f, "image/jpeg")}, timeout=300)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "done"
    assert any(s["class_id"] == 7 for s in body["signs"])  # speed limit 100


def test_jobs_are_listed_newest_first(client: httpx.Client) -> None:
    ids = [post_photo(client, "00260.jpg").json()["id"] for _ in range(3)]
    page = client.get("/jobs", params={"limit": 2}).json()
    assert [j["id"] for j in page["items"]] == ids[::-1][:2]
    assert page["total"] >= 3 and page["limit"] == 2
    second = client.get("/jobs", params={"limit": 2, "offset": 1}).json()
    assert second["items"][0]["id"] == ids[1]
    for job_id in ids:
        assert wait_for_job(client, job_id)["status"] == "done"


def test_health_ready_metrics_docs(client: httpx.Client, stack: Stack) -> None:
    assert client.get("/health").json() == {"status": "ok"}
    ready = client.get("/ready").json()
    assert ready["checks"] == {"database": "ok", "broker": "ok"}
    # Metrics on a port of their own (ROADSIGNS_METRICS_PORT), not on the public API's.
    assert client.get("/metrics/").status_code == 404 and client.get("/metrics").status_code == 404
    metrics = httpx.get(f"{stack.gateway_metrics_url}/metrics", timeout=10).text
    assert "roadsigns_http_request_seconds_bucket" in metrics
    assert "roadsigns_jobs_submitted_total" in metrics
    assert client.get("/docs").status_code == 200
    assert "/jobs" in client.get("/openapi.json").json()["paths"]
