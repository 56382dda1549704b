"""The detector stage as plain functions: build the model from settings, process one job."""

from __future__ import annotations

import base64
import time
from collections.abc import Mapping

import cv2
import numpy as np

from roadsigns.detector import backends
from roadsigns.detector.model import DetectorOutput, SignDetector
from roadsigns.shared import classes, openset
from roadsigns.shared.metrics import MODEL_INFO, MODEL_LOAD_SECONDS
from roadsigns.shared.schemas import Detection, DetectRequest, DetectResult
from roadsigns.shared.settings import Settings, get_settings


def build_detector(settings: Settings, versions: Mapping[str, str] | None = None) -> SignDetector:
    """Weights from the registry alias when one is configured, else the configured or shipped files.

    `versions` pins the registry versions (part -> number, `registry.resolve`) instead of the
    ones the alias names when the files are fetched."""
    det, clf, labels = settings.detector_weights, settings.classifier_weights, None
    backend = backends.load(settings.backend, settings.device)
    if settings.model_registry_alias and settings.mlflow_tracking_uri:
        from roadsigns.detector import registry

        det, clf, labels = registry.fetch(
            settings.mlflow_tracking_uri, settings.model_registry_alias, backend.weights_ext, versions
        )
    detector = SignDetector(
        det,
        clf,
        device=settings.device,
        imgsz=settings.detector_imgsz,
        min_side=settings.detector_min_side,
        coarse_side=settings.detector_coarse_side,
        small_side=settings.detector_small_side,
        zoom_view=settings.classifier_zoom_view,
        min_sign_probability=settings.min_sign_probability,
        conf=settings.detector_conf,
        crop_scale=1 + settings.crop_margin,
        versions=labels,
        backend=backend.name,
        min_confidence=settings.min_confidence,
    )
    MODEL_LOAD_SECONDS.labels("detector").set(detector.load_seconds)
    for part, version in detector.versions.items():
        MODEL_INFO.labels(part, version).set(1)
    return detector


class ImageUnreadable(ValueError):
    pass


def decode_image(data: bytes) -> np.ndarray:
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise ImageUnreadable("the stored image could not be decoded")
    return image


def encode_png_b64(crop: np.ndarray) -> str:
    ok, buf = cv2.imencode(".png", crop)
    if not ok:
        raise ValueError("could not encode crop")
    return base64.b64encode(buf.tobytes()).decode("ascii")


def detect_job(
    request: DetectRequest,
    image_bytes: bytes,
    detector: SignDetector,
    min_confidence: float | None = None,
    min_class_probability: float | None = None,
) -> DetectResult:
    """Find and classify the signs in one photo.

    `min_confidence` overrides the detector's reporting threshold (the evaluation asks for 0).
    A proposal is kept when the confidence the OCR stage could give it reaches the threshold
    (roadsigns.shared.openset.best_confidence): an unsure class is not multiplied down and
    dropped here, since a reading or its shape may still name it; the OCR stage applies the
    threshold to the final confidence. `min_class_probability`: default from the settings.
    """
    started = time.time()
    floor = detector.min_confidence if min_confidence is None else min_confidence
    image = decode_image(image_bytes)
    out = detector.detect(image, 0.0, min_score=floor)  # best_confidence is at most the localiser's score
    return job_result(request, image, out, detector, started, floor, min_class_probability)


def job_result(
    request: DetectRequest,
    image: np.ndarray,
    out: DetectorOutput,
    detector: SignDetector,
    started: float,
    floor: float,
    min_class_probability: float | None = None,
) -> DetectResult:
    """The job's result from the detector's output on its photo: `detect_job`'s, or its share of a
    batch's (`batching.detect_batch(detector, images, 0.0, min_score=floor)`). `started`: when
    the job's detection began (unix s), for its queue wait."""
    if min_class_probability is None:
        min_class_probability = get_settings().open_set_min_probability
    detections = []
    for f in out.signs:
        best = openset.best_confidence(f.class_id, f.detector_confidence, f.class_probability, min_class_probability)
        if best < floor:
            continue
        cls = classes.get(f.class_id)
        detections.append(
            Detection(
                bbox=[round(v, 1) for v in f.bbox],
                class_id=f.class_id,
                class_name=cls.name,
                category=cls.category,
                confidence=f.confidence,
                detector_confidence=f.detector_confidence,
                class_probability=f.class_probability,
                crop_png_b64=encode_png_b64(f.crop),
            )
        )
    timings = {"queue_wait_ms": max(0.0, (started - request.submitted_at) * 1000), **out.timings_ms}
    return DetectResult(
        job_id=request.job_id,
        attempt=request.attempt,
        submitted_at=request.submitted_at,
        detections=detections,
        timings_ms=timings,
        model_versions=detector.versions,
        image_size=[int(image.shape[1]), int(image.shape[0])],
        min_confidence=floor,
    )
