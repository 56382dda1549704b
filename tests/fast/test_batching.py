"""Batched detection (roadsigns.detector.batching) gives each photo what detecting it alone gives.

The batch mixes shapes on purpose: the five GTSDB frames (a fine and a coarse pass each), a phone-
sized crop (one pass, at its own shape), the same crop again (two photos in one group of a shape
other than the frames'), an enlarged frame (a larger fine pass) and a blank photo (no sign). Each
backend that runs here is held to its own one-photo answer: same number of signs, boxes within a
pixel's fraction, same classes, scores within float noise (a batched convolution may sum in
another order; OpenVINO runs bfloat16 where the CPU has it).
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from roadsigns.detector import backends
from roadsigns.detector.batching import detect_batch, max_batch
from roadsigns.detector.model import SignDetector
from tests.conftest import PHOTOS


def _photos() -> list[np.ndarray]:
    frames = [cv2.imread(str(p)) for p in sorted(PHOTOS.glob("*.jpg"))]
    crop = np.ascontiguousarray(frames[3][150:550, 700:1000])  # 400 x 300, around 00330's sign
    larger = cv2.resize(frames[0], (1600, 941), interpolation=cv2.INTER_LINEAR)
    return [*frames, crop, crop.copy(), larger, np.full((480, 640, 3), 127, np.uint8)]


@pytest.fixture(scope="module")
def photos() -> list[np.ndarray]:
    return _photos()


def _same(alone: list, batched: list, tolerance: float, class_tolerance: float | None = None) -> None:
    assert len(batched) == len(alone)
    for a, b in zip(alone, batched, strict=True):
        assert b.class_id == a.class_id
        assert b.bbox == pytest.approx(a.bbox, abs=1.0)
        assert b.detector_confidence == pytest.approx(a.detector_confidence, abs=tolerance)
        assert b.class_probability == pytest.approx(a.class_probability, abs=class_tolerance or tolerance)
        assert b.crop.shape == a.crop.shape


@pytest.mark.parametrize("backend", list(backends.REGISTRY))
def test_a_batch_gives_each_photo_what_it_gets_alone(backend: str, photos: list[np.ndarray]) -> None:
    detector = SignDetector(backend=backend, device="cpu")
    shapes = {p.shape for image in photos for p in detector.passes(*image.shape[:2])}
    assert len(shapes) >= 4  # the batch really is grouped by shape, several photos to a group
    # OpenVINO's bfloat16 localiser sums a batch in another order than one photo: its boxes move by
    # fractions of a pixel, and a crop a pixel off moves the class probability by up to 0.06 here
    # (the classifier itself answers a crop the same alone or in a batch).
    tolerance, class_tolerance = (2e-2, 0.1) if backend == "openvino" else (1e-3, 1e-3)
    for floor, min_score in ((None, None), (0.0, 0.25), (0.0, None)):  # the services' call, the evaluation's
        alone = [detector.detect(image, floor, min_score=min_score).signs for image in photos]
        batched = detect_batch(detector, photos, floor, min_score=min_score)
        for a, b in zip(alone, (out.signs for out in batched), strict=True):
            _same(a, b, tolerance, class_tolerance)
        assert sum(len(a) for a in alone) > len(photos)  # signs were found: the comparison compares something
        assert not batched[-1].signs  # the blank photo
        assert set(batched[0].timings_ms) == {"detect_ms", "classify_ms"}


def test_a_batch_of_one_and_of_none() -> None:
    detector = SignDetector(backend="onnx", device="cpu")
    image = cv2.imread(str(PHOTOS / "00330.jpg"))
    _same(detector.detect(image).signs, detect_batch(detector, [image])[0].signs, 1e-4)
    assert detect_batch(detector, []) == []


def test_the_exports_take_any_batch_and_a_fixed_batch_export_is_split(photos: list[np.ndarray]) -> None:
    """The shipped ONNX exports have a dynamic batch axis; a localiser that takes one photo a call
    (an export with batch 1 fixed) gets the groups one photo at a time, with the same answer."""
    detector = SignDetector(backend="onnx", device="cpu")
    assert max_batch(detector) is None
    alone = [detector.detect(image).signs for image in photos]
    calls: list[int] = []
    run = detector.localiser

    class OnePhotoAtATime:  # the real localiser, refusing more than one photo as a batch-1 export does
        max_batch = 1
        input_shape = None

        def __call__(self, batch: np.ndarray) -> np.ndarray:
            if len(batch) != 1:
                raise ValueError(f"batch {len(batch)} on a batch-1 graph")
            calls.append(len(batch))
            return run(batch)

    detector.localiser = OnePhotoAtATime()
    assert max_batch(detector) == 1
    for a, b in zip(alone, detect_batch(detector, photos), strict=True):
        _same(a, b.signs, 1e-4)
    assert len(calls) == sum(len(detector.passes(*image.shape[:2])) for image in photos)


def test_onnx_runtime_takes_the_gpu_providers_its_build_has() -> None:
    """On CUDA, TensorRT in FP16 first, then CUDA, then the CPU, among the providers the installed
    onnxruntime has; the CPU build here has neither GPU provider, so it stays on the CPU."""
    from roadsigns.detector.backends import onnx

    every = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    assert onnx.providers("cpu", every) == ["CPUExecutionProvider"]
    trt, cuda, cpu = onnx.providers("cuda:1", every)
    assert trt[0] == "TensorrtExecutionProvider"
    assert trt[1]["device_id"] == 1 and trt[1]["trt_fp16_enable"] is True
    assert cuda == ("CUDAExecutionProvider", {"device_id": 1}) and cpu == "CPUExecutionProvider"
    assert onnx.providers("cuda", every[1:]) == [("CUDAExecutionProvider", {"device_id": 0}), "CPUExecutionProvider"]
    assert onnx.providers("cuda:0", ["CPUExecutionProvider"]) == ["CPUExecutionProvider"]
    import onnxruntime as ort

    if not set(onnx.GPU_PROVIDERS) & set(ort.get_available_providers()):
        assert backends.load("onnx").device("cuda:1") == "cpu"
        detector = SignDetector(backend="onnx", device="cuda:1")
        assert detector.device == "cpu"
        assert detector.localiser.session.get_providers() == ["CPUExecutionProvider"]  # type: ignore[attr-defined]
