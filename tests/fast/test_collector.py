"""The collector (roadsigns.detector.collector) that batches the photos of detect tasks running in
threads: with the real detector and `batching.detect_batch`, as the batching worker runs it.

Each test submits from several threads at once, as Celery's thread pool does, and checks what
each thread gets back: its own photo's answer, its own exception, or its own time-out.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import cv2
import numpy as np
import pytest

from roadsigns.detector.batching import detect_batch
from roadsigns.detector.collector import Collector, TimedOut
from roadsigns.detector.model import DetectorOutput, SignDetector
from tests.conftest import PHOTOS

LOG = logging.getLogger("test-collector")


@pytest.fixture(scope="module")
def detector() -> SignDetector:
    return SignDetector(backend="onnx", device="cpu")


@pytest.fixture(scope="module")
def photos() -> list[np.ndarray]:
    frames = [cv2.imread(str(p)) for p in sorted(PHOTOS.glob("*.jpg"))]
    return [*frames, np.ascontiguousarray(frames[3][150:550, 700:1000])]


class Recorded:
    """The real batch function, remembering which items each call had (by identity)."""

    def __init__(self, detector: SignDetector) -> None:
        self.detector = detector
        self.calls: list[list[int]] = []

    def __call__(self, images: Sequence[Any]) -> list[DetectorOutput]:
        self.calls.append([id(image) for image in images])
        return detect_batch(self.detector, images)


def _together(
    collector: Collector[Any, DetectorOutput], items: list[Any], alone: frozenset[int] = frozenset()
) -> list[Any]:
    """Submit every item from a thread of its own at once; each thread's result or exception."""

    def one(i: int) -> Any:
        try:
            return collector.submit(items[i], alone=i in alone, timeout_s=120)
        except Exception as exc:
            return exc

    with ThreadPoolExecutor(len(items)) as pool:
        return list(pool.map(one, range(len(items))))


def _same(a: DetectorOutput, b: DetectorOutput) -> None:
    assert [f.class_id for f in a.signs] == [f.class_id for f in b.signs]
    for x, y in zip(a.signs, b.signs, strict=True):
        assert x.bbox == pytest.approx(y.bbox, abs=1e-2)
        assert x.confidence == pytest.approx(y.confidence, abs=1e-4)


def test_threads_get_their_own_photos_answer_from_shared_batches(
    detector: SignDetector, photos: list[np.ndarray]
) -> None:
    run, sizes = Recorded(detector), []
    collector = Collector(run, 4, 1.0, LOG, on_batch=lambda n, seconds: sizes.append(n))
    results = _together(collector, photos)
    for image, result in zip(photos, results, strict=True):
        _same(result, detector.detect(image))
    assert sorted(sizes) == [2, 4]  # six photos submitted at once: a full batch, then the rest
    assert sorted(len(call) for call in run.calls) == [2, 4]


def test_a_photo_that_breaks_the_batch_fails_alone(detector: SignDetector, photos: list[np.ndarray]) -> None:
    """An item the model cannot take (here no image at all) makes the batch raise: the batch runs
    again one photo at a time, so only that item's thread gets the exception."""
    run = Recorded(detector)
    collector = Collector(run, 4, 1.0, LOG)
    items: list[Any] = [photos[0], None, photos[1], photos[2]]
    results = _together(collector, items)
    assert isinstance(results[1], AttributeError)
    for i in (0, 2, 3):
        _same(results[i], detector.detect(items[i]))
    assert [len(call) for call in run.calls] == [4, 1, 1, 1, 1]


def test_a_photo_delivered_before_runs_in_a_batch_of_its_own(detector: SignDetector, photos: list[np.ndarray]) -> None:
    run = Recorded(detector)
    collector = Collector(run, 4, 1.0, LOG)
    results = _together(collector, photos[:4], alone=frozenset({2}))
    for image, result in zip(photos[:4], results, strict=True):
        _same(result, detector.detect(image))
    assert [id(photos[2])] in run.calls
    assert all(id(photos[2]) not in call for call in run.calls if len(call) > 1)


def test_a_photo_not_answered_within_the_limit_times_out(detector: SignDetector, photos: list[np.ndarray]) -> None:
    collector = Collector(Recorded(detector), 8, 0.5, LOG)
    with pytest.raises(TimedOut, match="no answer within 0.01 s"):
        collector.submit(photos[0], timeout_s=0.01)  # the batch waits 0.5 s for more photos first
    assert collector.submit(photos[0], timeout_s=120).signs  # the collector goes on


def test_a_batch_holds_at_least_one_photo(detector: SignDetector) -> None:
    with pytest.raises(ValueError, match="at least one"):
        Collector(Recorded(detector), 0, 0.01, LOG)
