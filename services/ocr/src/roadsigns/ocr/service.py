"""The OCR stage as a plain function: read every crop of one job."""

from __future__ import annotations

import base64
import time

import cv2
import numpy as np

from roadsigns.ocr.reader import SignReader, text_matches_class
from roadsigns.shared.schemas import FinishRequest, OcrRequest, SignResult


def decode_crop(b64: str) -> np.ndarray:
    crop = cv2.imdecode(np.frombuffer(base64.b64decode(b64), np.uint8), cv2.IMREAD_COLOR)
    if crop is None:
        raise ValueError("a sign crop could not be decoded")
    return crop


def read_job(request: OcrRequest, reader: SignReader) -> FinishRequest:
    t0 = time.perf_counter()
    signs = []
    for d in request.detections:
        reading = reader.read(decode_crop(d.crop_png_b64), d.class_id, d.class_probability)
        signs.append(
            SignResult(
                bbox=d.bbox,
                class_id=d.class_id,
                class_name=d.class_name,
                category=d.category,
                confidence=round(d.confidence, 4),
                text=reading.text,
                text_confidence=round(reading.confidence, 1),
                text_matches_class=text_matches_class(reading.text, d.class_id) if reading.text else None,
            )
        )
    timings = {**request.timings_ms, "ocr_ms": (time.perf_counter() - t0) * 1000}
    return FinishRequest(
        job_id=request.job_id,
        attempt=request.attempt,
        submitted_at=request.submitted_at,
        signs=signs,
        crops_png_b64=[d.crop_png_b64 for d in request.detections],
        timings_ms=timings,
        model_versions={**request.model_versions, "ocr": reader.version},
    )
