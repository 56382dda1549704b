"""Poison jobs, with real processes: a photo whose detect task kills its worker process every
time ends `failed` with that reason after ROADSIGNS_MAX_DELIVERIES (3) deaths, its message is
dropped, and the job queued behind it finishes.

The deaths are real: the test SIGKILLs the detector's prefork child while it works on the
photo, as the OOM killer or a crash in a native library would, and Celery redelivers the
message each time (late acks, reject on worker lost).
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator

import cv2
import httpx
import psutil
import pytest
import redis

from roadsigns.shared import deliveries
from tests.conftest import PHOTOS, wait_for_job
from tests.stack import Stack, wait_until


@pytest.fixture(scope="module")
def poison_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    stack = Stack.create(tmp_path_factory.mktemp("poison"))  # ROADSIGNS_MAX_DELIVERIES: the default, 3
    try:
        for pool in ("detector", "ocr", "tracker"):
            stack.start_worker(pool)
        stack.start_gateway()
        stack.wait_workers_ready(["detector", "ocr", "tracker"])
        yield stack
    finally:
        stack.close()


def _large_photo() -> bytes:
    """A 5440x3200 photo: its detect task takes long enough (decoding, two passes) for a kill to
    land inside it."""
    image = cv2.imread(str(PHOTOS / "00330.jpg"))
    ok, data = cv2.imencode(".jpg", cv2.resize(image, (5440, 3200), interpolation=cv2.INTER_CUBIC))
    assert ok
    return data.tobytes()


def _children(stack: Stack) -> list[psutil.Process]:
    return psutil.Process(stack.procs["detector"].pid).children(recursive=True)


def test_a_job_that_kills_the_detector_fails_after_three_deaths_and_the_queue_moves_on(poison_stack: Stack) -> None:
    stack = poison_stack
    broker = redis.Redis.from_url(stack.broker_url)
    with httpx.Client(base_url=stack.gateway_url, timeout=30) as client:
        poison = client.post("/jobs", files={"file": ("big.jpg", _large_photo(), "image/jpeg")}).json()["id"]
        later = client.post("/jobs", files={"file": ("p.jpg", (PHOTOS / "00330.jpg").read_bytes(), "image/jpeg")})
        later_id = later.json()["id"]
        counter = deliveries.key("detect", poison)

        for death in (1, 2, 3):
            # The count goes up as the task starts on the photo: kill the child right then.
            wait_until(lambda d=death: int(broker.get(counter) or 0) >= d, 240, f"delivery {death}", interval=0.005)
            for child in _children(stack):
                child.send_signal(signal.SIGKILL)
            assert int(broker.get(counter)) == death
            status = client.get(f"/jobs/{poison}").json()["status"]
            assert status in ("queued", "detecting"), f"the kill came too late: the job is {status}"
            wait_until(lambda: _children(stack), 30, "a new detector child")

        job = wait_for_job(client, poison, timeout=300)
        assert job["status"] == "failed", job
        assert job["error"].startswith("the detector crashed on this photo 3 times"), job["error"]
        assert int(broker.get(counter)) == 4  # the fourth delivery failed the job without running

        assert wait_for_job(client, later_id, timeout=300)["status"] == "done"

    # The message is gone: neither waiting in the queue nor held unacknowledged.
    time.sleep(1)
    assert broker.llen("detect") == 0
    assert not any(poison.encode() in v for v in broker.hvals("unacked"))
    log = (stack.root / "detector.log").read_text(errors="replace")
    assert log.count("WorkerLostError") >= 3


def test_a_task_killed_by_the_time_limit_fails_its_job_with_that_reason(poison_stack: Stack) -> None:
    """A detect task that hangs (here: its process stopped with SIGSTOP mid-task, as a stuck
    native call would be) is killed by Celery's hard time limit; the job says so, instead of
    waiting for the reconciler to call its message lost."""
    stack = poison_stack
    stack.stop("detector")
    stack.start_worker("detector", extra_env={"ROADSIGNS_TASK_TIME_LIMIT_S": "3"})
    stack.wait_workers_ready(["detector"])
    broker = redis.Redis.from_url(stack.broker_url)
    with httpx.Client(base_url=stack.gateway_url, timeout=30) as client:
        job_id = client.post("/jobs", files={"file": ("big.jpg", _large_photo(), "image/jpeg")}).json()["id"]
        counter = deliveries.key("detect", job_id)
        wait_until(lambda: broker.get(counter), 240, "the detect task to start", interval=0.005)
        for child in _children(stack):
            child.send_signal(signal.SIGSTOP)
        job = wait_for_job(client, job_id, timeout=120)
    assert job["status"] == "failed", job
    assert job["error"] == "the detector took longer than its time limit (3 s) on this photo"
    assert "Hard time limit (3" in (stack.root / "detector.log").read_text(errors="replace")
