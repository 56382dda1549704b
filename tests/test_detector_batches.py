"""Detect batches across queued jobs (ROADSIGNS_DETECTOR_BATCH, roadsigns.detector.collector), with
real processes: a gateway, Redis, Postgres, and detector, OCR and tracker pools.

Eight photo jobs go through a detector worker of batch 1 (today's path), then the same eight and
a ninth whose stored photo is garbage queue up while no detector runs, and a worker of batch 4
starts on them: it must take several messages at once and detect them as batches (its log and its
`roadsigns_detect_batch_photos` histogram say how many photos each model call had), every good
job must end with the signs batch 1 gave it, and the garbage photo must fail its own job only.
A job whose message was delivered before (its delivery counter says so) runs in a batch of its own.

Both workers run the ONNX backend: it answers a photo in a batch as alone to float noise
(tests/fast/test_batching.py). `auto` is OpenVINO in bfloat16 on this CPU, whose boxes move by a
fraction of a pixel with the batch, which can carry a borderline sign across the reporting floor.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import cv2
import httpx
import pytest
import redis

from roadsigns.shared import deliveries
from tests.conftest import PHOTOS, wait_for_job
from tests.stack import Stack, wait_until
from tests.test_video import write_video

BATCH_ENV = {"ROADSIGNS_DETECTOR_BATCH": "4", "ROADSIGNS_DETECTOR_BATCH_WAIT_MS": "300"}


def _photos() -> dict[str, bytes]:
    """Eight photos: the five sample frames and three of other sizes (each its own input shape)."""
    photos = {p.name: p.read_bytes() for p in sorted(PHOTOS.glob("*.jpg"))}
    frame = cv2.imread(str(PHOTOS / "00330.jpg"))
    for name, image in (
        ("crop.jpg", frame[150:550, 700:1000]),
        ("larger.jpg", cv2.resize(frame, (1600, 941), interpolation=cv2.INTER_LINEAR)),
        ("flipped.jpg", cv2.flip(cv2.imread(str(PHOTOS / "00224.jpg")), 1)),
    ):
        ok, data = cv2.imencode(".jpg", image)
        assert ok
        photos[name] = data.tobytes()
    assert len(photos) == 8
    return photos


@pytest.fixture(scope="module")
def batch_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    stack = Stack.create(tmp_path_factory.mktemp("batches"), ROADSIGNS_BACKEND="onnx")
    try:
        for pool in ("ocr", "tracker"):
            stack.start_worker(pool)
        stack.start_worker("detector", name="detector-1")
        stack.start_gateway()
        stack.wait_workers_ready(["detector-1", "ocr", "tracker"])
        yield stack
    finally:
        stack.close()


def _submit(client: httpx.Client, photos: dict[str, bytes]) -> dict[str, str]:
    ids = {}
    for name, data in photos.items():
        response = client.post("/jobs", files={"file": (name, data, "image/jpeg")})
        assert response.status_code == 202, response.text
        ids[name] = response.json()["id"]
    return ids


def _signs(job: dict) -> list[tuple[int | None, list[float], float]]:
    """Class (None: a sign outside the 43), box and confidence of each sign, left to right."""
    return [(s["class_id"], s["bbox"], s["confidence"]) for s in sorted(job["signs"], key=lambda s: s["bbox"])]


def _metric(text: str, name: str) -> float:
    match = re.search(rf"^{name} ([0-9.e+]+)$", text, re.MULTILINE)
    assert match, f"{name} not in the metrics"
    return float(match.group(1))


def test_a_batching_detector_gives_every_job_its_own_signs_and_failure(batch_stack: Stack) -> None:
    stack = batch_stack
    photos = _photos()
    with httpx.Client(base_url=stack.gateway_url, timeout=30) as client:
        alone = {name: wait_for_job(client, job_id) for name, job_id in _submit(client, photos).items()}
        assert all(job["status"] == "done" for job in alone.values()), stack.log("detector-1")
        assert sum(len(job["signs"]) for job in alone.values()) >= 8  # the comparison compares signs

        stack.stop("detector-1")  # the next jobs queue up with no detector to take them
        ids = _submit(client, photos)
        garbage = _submit(client, {"garbage.jpg": photos["00121.jpg"]})["garbage.jpg"]
        (stored,) = Path(stack.root / "blobs" / "uploads").glob(f"{garbage}.*")
        stored.write_bytes(b"\xff\xd8\xff\xe0 not a JPEG any more" * 40)
        # One job's detect message counted as delivered once already, as a process that died on it
        # leaves it: its next delivery must run alone, never in a batch with the others.
        redelivered = ids["00224.jpg"]
        redis.Redis.from_url(stack.broker_url).set(deliveries.key("detect", redelivered), 1)

        stack.start_worker("detector", name="detector-4", extra_env=BATCH_ENV)
        stack.wait_workers_ready(["detector-4"])
        batched = {name: wait_for_job(client, job_id) for name, job_id in ids.items()}
        failed = wait_for_job(client, garbage)

    log = (stack.root / "detector-4.log").read_text(errors="replace")
    assert "detecting batches of up to 4 photos" in log
    for name, job in batched.items():
        assert job["status"] == "done", (name, job, log)
        mine, theirs = _signs(job), _signs(alone[name])
        assert [c for c, _, _ in mine] == [c for c, _, _ in theirs], name
        for (_, box, confidence), (_, box_alone, confidence_alone) in zip(mine, theirs, strict=True):
            assert box == pytest.approx(box_alone, abs=1.0), name
            assert confidence == pytest.approx(confidence_alone, abs=0.01), name
    assert failed["status"] == "failed"
    assert failed["error"] == "detector: the stored image could not be decoded"

    sizes = [int(n) for n in re.findall(r"detected a batch of (\d+) photos", log)]
    assert sum(sizes) == 8 and max(sizes) > 1, sizes  # every good photo in a batch, and batches of several
    assert f"job {redelivered}: delivered before, detected in a batch of its own" in log
    assert 1 in sizes, sizes
    assert sum(f"job {job_id}: delivered before" in log for job_id in ids.values()) == 1
    metrics = wait_until(
        lambda: httpx.get(f"http://127.0.0.1:{stack.metrics_ports['detector-4']}/metrics", timeout=5).text,
        30,
        "the detector's metrics",
    )
    assert _metric(metrics, "roadsigns_detect_batch_photos_sum") == 8
    assert _metric(metrics, "roadsigns_detect_batch_photos_count") == len(sizes)


def test_a_video_in_a_batching_worker_shares_the_model_with_the_photo_batches(
    batch_stack: Stack, tmp_path: Path
) -> None:
    """A video task runs in a thread of the batching worker beside the photos' tasks: its frames
    and their batches take the model in turn (one lock), and both get their own answers."""
    stack = batch_stack
    if "detector-4" not in stack.procs:  # this test run alone
        stack.stop("detector-1")
        stack.start_worker("detector", name="detector-4", extra_env=BATCH_ENV)
        stack.wait_workers_ready(["detector-4"])
    video = write_video(tmp_path / "drive.mp4", PHOTOS / "00224.jpg", seconds=2.0)
    with httpx.Client(base_url=stack.gateway_url, timeout=30) as client:
        response = client.post(
            "/jobs", files={"file": ("drive.mp4", video.read_bytes(), "video/mp4")}, data={"fps": "5"}
        )
        assert response.status_code == 202, response.text
        photos = _submit(client, {f"{i}.jpg": (PHOTOS / "00330.jpg").read_bytes() for i in range(4)})
        job = wait_for_job(client, response.json()["id"])
        done = [wait_for_job(client, job_id) for job_id in photos.values()]
    assert job["status"] == "done", (job, stack.log("detector-4"))
    assert sorted(t["class_id"] for t in job["tracks"]) == [1, 9, 28]  # what a batch-1 worker finds (test_video)
    assert all(p["status"] == "done" for p in done)
    assert len({str(_signs(p)) for p in done}) == 1 and done[0]["signs"]  # the same photo, the same signs


def test_a_photo_past_the_time_limit_in_a_batching_worker_fails_with_that_reason(batch_stack: Stack) -> None:
    """The thread pool kills no task: a photo whose batch does not answer within the task time limit
    fails its job with the reason the prefork pool's kill gives, and the worker goes on.

    Four 5440x3200 photos queue up before the worker starts, so they make one batch: 1.5-2.5 s
    here, against a limit of 1 s. A small photo afterwards, alone: about 0.3 s of waiting for more
    and 0.3 s of detection."""
    stack = batch_stack
    for name in ("detector-1", "detector-4"):
        stack.stop(name)
    frame = cv2.imread(str(PHOTOS / "00330.jpg"))
    ok, large = cv2.imencode(".jpg", cv2.resize(frame, (5440, 3200), interpolation=cv2.INTER_CUBIC))
    assert ok
    ok, small = cv2.imencode(".jpg", frame[150:550, 700:1000])
    assert ok
    log = stack.root / "detector-slow.log"
    with httpx.Client(base_url=stack.gateway_url, timeout=30) as client:
        ids = _submit(client, {f"large-{i}.jpg": large.tobytes() for i in range(4)})
        env = {**BATCH_ENV, "ROADSIGNS_TASK_TIME_LIMIT_S": "1"}
        stack.start_worker("detector", name="detector-slow", extra_env=env)
        stack.wait_workers_ready(["detector-slow"])
        for job_id in ids.values():
            job = wait_for_job(client, job_id)
            assert job["status"] == "failed", job
            assert job["error"] == "detector: the detector took longer than its time limit (1 s) on this photo"

        def batched() -> int:
            return sum(int(n) for n in re.findall(r"detected a batch of (\d+) photos", log.read_text()))

        wait_until(lambda: batched() == 4, 60, "the late batch to end")
        after = wait_for_job(client, _submit(client, {"small.jpg": small.tobytes()})["small.jpg"])
    assert after["status"] == "done", (after, stack.log("detector-slow"))
