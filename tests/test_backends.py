"""The detector backends run the same trained models: they must find the same signs.

Every backend is one module of `roadsigns.detector.backends`, registered by name; the settings
take their allowed values from that registry. All of them go through our own letterbox and NMS
(`roadsigns.detector.preprocess`), so the torch backend is also checked against ultralytics'
own predictor.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from pydantic import ValidationError

from roadsigns.detector import backends, scales
from roadsigns.detector.model import SignDetector
from roadsigns.detector.preprocess import Letterbox, decode_yolo, letterbox, to_blob
from roadsigns.detector.service import build_detector
from roadsigns.shared.settings import Settings
from roadsigns.shared.weights import shipped
from tests.conftest import PHOTOS, iou, read_gt

CPU_BACKENDS = [name for name in backends.REGISTRY if name != "torch"]  # torch on the CPU is the reference


def test_the_registry_names_every_backend_and_auto() -> None:
    assert backends.names() == ("auto", "torch", "onnx", "openvino")
    for name in backends.REGISTRY:
        backend = backends.load(name, "cpu")
        assert backend.name == name
        assert shipped("roadsigns.detector", f"detector.{backend.weights_ext}").is_file()
        assert shipped("roadsigns.detector", f"classifier.{backend.weights_ext}").is_file()
    assert backends.load("auto", "cpu").name == "openvino"  # no CUDA device asked for
    assert backends.resolve("auto", "cuda:0") == "torch"
    assert backends.load("torch", "cuda:1").device("cuda:1") == "cuda:1"
    assert backends.load("onnx").device("cuda:1") == "cpu"
    with pytest.raises(ValueError, match="unknown detector backend 'tflite': use one of auto, torch, onnx, openvino"):
        backends.load("tflite")


def test_settings_take_their_backends_from_the_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in backends.names():
        assert Settings(backend=name).backend == name
    monkeypatch.setenv("ROADSIGNS_BACKEND", "tensorrt")
    with pytest.raises(
        ValidationError, match="no detector backend 'tensorrt': ROADSIGNS_BACKEND is one of auto, torch"
    ):
        Settings()


def test_build_detector_loads_the_backend_the_settings_name() -> None:
    detector = build_detector(Settings(backend="onnx", device="cpu"))
    assert (detector.backend, detector.device) == ("onnx", "cpu")
    assert detector.versions["detector"].startswith("detector.onnx@sha256:")
    assert detector.versions["classifier"].startswith("classifier.onnx@sha256:")


@pytest.fixture(scope="module")
def photos() -> dict[str, np.ndarray]:
    return {p.name: cv2.imread(str(p)) for p in sorted(PHOTOS.glob("*.jpg"))}


@pytest.fixture(scope="module")
def reference(photos: dict[str, np.ndarray]) -> dict[str, list]:
    torch_detector = SignDetector(backend="torch", device="cpu", imgsz=1376)
    return {name: torch_detector.detect(img, min_confidence=0.0).signs for name, img in photos.items()}


def test_the_torch_localiser_finds_what_ultralytics_finds(photos: dict[str, np.ndarray]) -> None:
    from ultralytics import YOLO

    detector = SignDetector(backend="torch", device="cpu")  # configures ultralytics offline first
    yolo = YOLO(str(shipped("roadsigns.detector", "detector.pt")), task="detect")
    for name, img in photos.items():
        for height, width, _ in detector.passes(*img.shape[:2]):
            theirs = yolo.predict(img, imgsz=[height, width], conf=detector.conf, device="cpu", verbose=False)[0].boxes
            boxes, scores = detector._localise_at(img, height, width)
            assert len(boxes) == len(theirs), (name, height, width)
            assert scores == pytest.approx(theirs.conf.numpy(), abs=1e-3), (name, height, width)
            assert boxes == pytest.approx(theirs.xyxy.numpy(), abs=1.0), (name, height, width)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_cpu_backends_find_what_torch_finds(backend: str, photos: dict[str, np.ndarray], reference: dict) -> None:
    detector = SignDetector(backend=backend)
    gt = read_gt()
    for name, img in photos.items():
        ours = detector.detect(img).signs
        theirs = [s for s in reference[name] if s.confidence >= detector.min_confidence]
        assert len(ours) == len(theirs), name
        for a, b in zip(sorted(ours, key=lambda s: s.bbox), sorted(theirs, key=lambda s: s.bbox), strict=True):
            assert iou(a.bbox, b.bbox) > 0.9 and a.class_id == b.class_id, name
            assert a.detector_confidence == pytest.approx(b.detector_confidence, abs=0.02), name
            # OpenVINO's bfloat16 moves a box by under a pixel, which can move the square crop by
            # one and the class probability by up to 0.07 (00501's no-entry sign: 0.858 vs 0.922).
            assert a.confidence == pytest.approx(b.confidence, abs=0.1), name
        # and they are the annotated signs
        for left, top, right, bottom, cls in gt[name]:
            assert any(iou(s.bbox, (left, top, right + 1, bottom + 1)) > 0.5 and s.class_id == cls for s in ours)


def test_letterbox_and_decode_map_boxes_back_to_the_photo() -> None:
    image = np.zeros((800, 1360, 3), np.uint8)
    blob, box = letterbox(image, 832, 1376)
    assert blob.shape == (1, 3, 832, 1376) and blob.dtype == np.float32
    assert box.scale == pytest.approx(1376 / 1360) and box.left == 0 and box.top == round((832 - 809) / 2 - 0.1)
    # One box at photo (100, 200)-(140, 250), proposed twice (NMS keeps one) plus one below the cut.
    s, top = box.scale, box.top
    cx, cy, w, h = 120 * s, 225 * s + top, 40 * s, 50 * s
    out = np.array([[[cx, cx + 1, 500.0], [cy, cy, 300.0], [w, w, 10.0], [h, h, 10.0], [0.9, 0.8, 0.01]]], np.float32)
    boxes, scores = decode_yolo(out, box, image.shape, conf=0.05)
    assert boxes.shape == (1, 4) and scores.tolist() == pytest.approx([0.9])
    assert boxes[0].tolist() == pytest.approx([100, 200, 140, 250], abs=0.01)
    empty, _ = decode_yolo(out * [[[1], [1], [1], [1], [0]]], Letterbox(1.0, 0, 0), image.shape, conf=0.05)
    assert empty.shape == (0, 4)


def test_the_blob_is_opencvs_blob_from_image() -> None:
    """`to_blob` replaced `cv2.dnn.blobFromImage` for speed: the same values, channels swapped to RGB."""
    photo = cv2.imread(str(next(PHOTOS.glob("*.jpg"))))
    for image in (photo, photo[:333, :517], np.full((7, 5, 3), (0, 128, 255), np.uint8)):
        expected = cv2.dnn.blobFromImage(image, scalefactor=1 / 255.0, swapRB=True)
        assert np.allclose(to_blob(image), expected, atol=1e-6)
    assert to_blob(np.full((2, 2, 3), (0, 128, 255), np.uint8))[0, :, 0, 0].tolist() == pytest.approx([1, 128 / 255, 0])


def test_proposals_under_the_score_floor_are_not_classified(photos: dict[str, np.ndarray]) -> None:
    """Skipping the classifier for proposals the localiser scores under the floor changes no result:
    a sign's confidence is its score times a probability, never above the score."""
    detector = SignDetector(backend="openvino", device="cpu")

    def same(ours: list, expected: list) -> bool:  # boxes within a pixel: later calls may run a static graph
        return len(ours) == len(expected) and all(
            a.class_id == b.class_id and np.allclose(a.bbox, b.bbox, atol=1.0)
            for a, b in zip(ours, expected, strict=True)
        )

    for image in photos.values():
        for _ in range(2):  # both shapes' static graphs compiled (a second sighting): one graph from here on
            detector.detect(image)
        every = detector.detect(image, 0.0, min_score=0.0).signs
        assert same(detector.detect(image).signs, [s for s in every if s.confidence >= detector.min_confidence])
        assert same(
            detector.detect(image, 0.0, min_score=0.3).signs, [s for s in every if s.detector_confidence >= 0.3]
        )
    assert any(s.detector_confidence < 0.3 for image in photos.values() for s in detector.detect(image, 0.0).signs)


def test_openvino_compiles_a_graph_for_each_shape_it_keeps_meeting() -> None:
    """A shape seen twice gets a graph of its own (a dynamic graph re-plans on every change of
    shape); a shape seen once compiles nothing; past the limit the least recently used goes.
    Every graph gives the dynamic graph's answer."""
    from roadsigns.detector.backends.openvino import OpenVinoGraph

    path = shipped("roadsigns.detector", "detector.onnx")
    graph = OpenVinoGraph(path, "cpu", static_shapes=2)
    rng = np.random.default_rng(0)
    a, b, c = (rng.random((1, 3, h, w), np.float32) for h, w in ((256, 384), (320, 416), (416, 320)))
    first = graph(a)
    assert not graph.static
    again = graph(a)
    assert list(graph.static) == [a.shape]
    assert np.allclose(again, first, atol=0.02 * np.abs(first).max())  # bfloat16 on CPUs that have it
    graph(b), graph(b), graph(c), graph(c)
    assert list(graph.static) == [b.shape, c.shape]  # a's graph was the least recently used
    assert graph(a).shape == first.shape and list(graph.static) == [c.shape, a.shape]


def test_openvino_threads_are_unpinned_and_answer_as_pinned_ones(
    photos: dict[str, np.ndarray], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every graph, dynamic or static, leaves its threads free to move between cores (issue 14: a
    pinned thread cannot leave a core another process took); its answers stay bit for bit those of
    OpenVINO's default, pinned threads."""
    from roadsigns.detector.backends import openvino

    path = shipped("roadsigns.detector", "detector.onnx")
    fine = {name: scales.plan(image.shape[0], image.shape[1], 1376)[0] for name, image in photos.items()}
    blobs = [letterbox(photos[name], *p.shape)[0] for name, p in fine.items()]  # each photo at its fine pass

    def answers() -> tuple[openvino.OpenVinoGraph, list[np.ndarray]]:
        graph = openvino.OpenVinoGraph(path, "cpu", static_shapes=1)
        return graph, [graph(blob) for blob in blobs for _ in range(2)]  # dynamic, then the shape's own graph

    unpinned, unpinned_answers = answers()
    monkeypatch.setattr(openvino, "CONFIG", {**openvino.CONFIG, "ENABLE_CPU_PINNING": True})
    pinned, pinned_answers = answers()
    assert all(np.array_equal(a, b) for a, b in zip(unpinned_answers, pinned_answers, strict=True))
    assert unpinned.static and pinned.static
    for graph, pinning in ((unpinned, False), (pinned, True)):
        for compiled in (graph.compiled, *graph.static.values()):
            assert compiled.get_property("ENABLE_CPU_PINNING") is pinning
