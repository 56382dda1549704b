"""A photo through every stage in this process, with the shipped models: the gateway (TestClient) accepts
it, the message it sent runs through the stage list (`pipeline.run_in_process`, the detector's and OCR's
own functions), the tracker's `finish` writes the result, and the gateway reads it back."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from roadsigns.cli.pipeline import Pipeline
from roadsigns.detector.service import detect_job
from roadsigns.ocr.service import read_job
from roadsigns.shared import pipeline
from roadsigns.shared.blobstore import BlobStore
from roadsigns.shared.schemas import DetectRequest, DetectResult, JobResult
from roadsigns.shared.settings import Settings
from roadsigns.tracker import service
from tests.conftest import PHOTOS, iou, read_gt
from tests.fast.test_gateway import post
from tests.fast.test_pipeline import sent


@pytest.fixture(scope="module")
def models() -> Pipeline:
    """The shipped detector, classifier and readers, loaded once for the module (as a worker child does)."""
    return Pipeline(Settings())


def test_a_photo_through_every_stage_in_one_process(
    gateway: TestClient, engine: Engine, broker: str, tmp_path: Path, models: Pipeline
) -> None:
    job_id = post(gateway).json()["id"]
    [(_, [payload])] = sent(broker, "detect")
    store = BlobStore(tmp_path)
    reader = models.reader
    assert reader is not None

    def detect(request: DetectRequest) -> DetectResult:  # as the detector pool's task: the photo from the store
        return detect_job(request, store.get(request.blob_key), models.detector)

    def ocr(request: DetectResult) -> JobResult:
        return read_job(request, reader)

    result = pipeline.run_in_process(
        DetectRequest.model_validate(payload), {pipeline.DETECT.name: detect, pipeline.OCR.name: ocr}
    )
    assert isinstance(result, JobResult)
    finished = service.finish(engine, store, result)
    assert finished is not None and finished.first_time

    job = gateway.get(f"/jobs/{job_id}").json()
    assert job["status"] == "done"
    found = {s["class_id"]: s for s in job["signs"]}
    for left, top, right, bottom, class_id in read_gt()["00224.jpg"]:  # school crossing, 30, no overtaking
        assert class_id in found, job["signs"]
        assert iou(found[class_id]["bbox"], (left, top, right + 1, bottom + 1)) > 0.5
    assert set(job["model_versions"]) >= {"detector", "classifier", "ocr"}
    crop = gateway.get(job["signs"][0]["crop_url"])
    assert crop.status_code == 200 and crop.content[:4] == b"\x89PNG"


def test_the_stage_functions_read_a_speed_limit(models: Pipeline) -> None:
    """What the CLI runs: the same stage list and functions, the photo in memory."""
    analysis = models.analyze((PHOTOS / "00330.jpg").read_bytes())
    speed = [s for s in analysis.signs if s.class_id == 2]
    assert speed and speed[0].text == "50" and speed[0].text_matches_class
    assert {"detect_ms", "ocr_ms", "total_ms"} <= set(analysis.timings_ms)
