"""The OCR stage as a plain function: read every crop of one job, then name each sign."""

from __future__ import annotations

import base64
import time
from typing import Any

import cv2
import numpy as np

from roadsigns.ocr.reader import LEARNED_SURE, STOP_CLASS, Reading, SignReader, text_matches_class
from roadsigns.ocr.shape import ShapeCue, shape_cue
from roadsigns.shared import classes, openset
from roadsigns.shared.schemas import Detection, DetectResult, JobResult, SignResult


def decode_crop(b64: str) -> np.ndarray:
    crop = cv2.imdecode(np.frombuffer(base64.b64decode(b64), np.uint8), cv2.IMREAD_COLOR)
    if crop is None:
        raise ValueError("a sign crop could not be decoded")
    return crop


def _classifier_sure(d: Detection, min_class_probability: float) -> bool:
    """Whether the classifier names the sign: a class, at least `min_class_probability` sure."""
    return d.class_id is not None and d.class_probability >= min_class_probability


def _speed_face(d: Detection, cue: ShapeCue, min_class_probability: float) -> bool:
    """Whether the sign looks like a speed limit, so that a number read on it may name it:
    a speed-limit class the classifier is sure of, or a red ring round a light face where
    it is unsure. An unsure speed-limit class alone is not enough: on a held-out photo a
    bus-stop sign was "speed limit 60" at 0.47, and the digit reader, which reads whatever
    it is shown, read "60" in its "H" and ring. (Class 6, "restriction ends 80", has no ring:
    only an unsure one is judged by its shape.)"""
    if _classifier_sure(d, min_class_probability):
        return d.class_id in openset.numbered_classes().values()
    return cue.speed_face


def _reading_names(d: Detection, reading: Reading | None, cue: ShapeCue, min_class_probability: float) -> bool:
    """Whether a number read on a speed-limit face names the sign rather than the classifier.

    - A number no class carries (40, 55, 115): the learned reader at an even chance or more
      (LEARNED_SURE) is enough. The classifier cannot know such a number and is sure of the
      nearest class all the same ("55" as "speed limit 50", "5" as 50, "115" as 120): on phone
      close-ups of foreign limits in a type face neither model trained on, those right readings
      came at 0.62-0.74, under READ_SURE, and the classifier's wrong class was reported. On the
      GTSRB speed-limit crops of held-out tracks (white and yellow-faced) and the 852 GTSDB
      signs, no reading of such a number at 0.5 or more disagreed with the classifier.
    - A number a class carries needs a sure reading where the classifier is sure, and where the
      learned reader alone read it (no Tesseract agreement), a classifier sure of another speed
      limit that is surer than the reader keeps its class. On yellow-faced speed limits, which
      the digit reader never trained on, it read "50" on 30s and 70s at 0.75-0.83 against a
      classifier at 0.86-0.96; on white ones every sure reading that contradicted a sure
      classifier was right and at least as sure as it.
    - Where the classifier is unsure it has no say, and a class's number read by the learned
      reader at an even chance names the sign, as a number no class carries does: on the
      pasted set a dark 23 px "50" read "50" at 0.64 came back as "other sign". `_speed_face`
      still asks for a red ring round a light face there.
    """
    if (
        reading is None
        or not openset.PLAUSIBLE_SPEED.match(reading.text)
        or not _speed_face(d, cue, min_class_probability)
    ):
        return False
    class_id = openset.numbered_classes().get(reading.text)
    learned_alone = reading.mode in ("digits/cnn", "digits/cnn-only")
    if class_id is None:
        return reading.sure or (learned_alone and reading.confidence >= 100 * LEARNED_SURE)
    classifier_sure = _classifier_sure(d, min_class_probability)
    if not reading.sure:
        return not classifier_sure and learned_alone and reading.confidence >= 100 * LEARNED_SURE
    surer_class = classifier_sure and d.class_id != class_id and d.class_probability > reading.confidence / 100
    return not (learned_alone and surer_class)


def _reading_is_stop(d: Detection, reading: Reading | None, cue: ShapeCue, min_class_probability: float) -> bool:
    """Whether a sure "STOP" read on a red face names a sign the classifier is unsure of.

    The classifier learned STOP from German photos; a STOP in another type face, small or in
    shade, leaves it unsure, and the sign came back as "other sign" although the word reader
    (asked for every unsure red face, `SignReader.read`) read the word. A no-entry sign is a red
    face too, but its white bar does not read as a sure "STOP".
    """
    return (
        reading is not None
        and reading.sure
        and reading.text == classes.get(STOP_CLASS).text
        and cue.shape == "red_face"
        and not _classifier_sure(d, min_class_probability)
    )


def _named_by_reading(d: Detection, reading: Reading, class_id: int | None, common: dict[str, Any]) -> SignResult:
    """The sign named by what was read: `class_id`'s class, or, with None, "speed limit N"."""
    named = classes.get(class_id) if class_id is not None else None
    return SignResult(
        **common,
        class_id=class_id,
        class_name=named.name if named else openset.speed_limit_name(reading.text),
        category=named.category if named else "prohibitory",
        confidence=round(d.detector_confidence * min(1.0, reading.confidence / 100), 4),
        text_matches_class=True if class_id is not None else None,
        class_source="reading",
    )


def name_sign(d: Detection, reading: Reading | None, cue: ShapeCue, min_class_probability: float) -> SignResult:
    """The sign as reported: named by the classifier, by its reading, or only by its shape.

    - A speed limit whose reading names it (`_reading_names`) is named by the number: the
      class that carries it, or `class_id` None and "speed limit 40"; its confidence is the
      localiser's score times the reading's. The classifier cannot know a "40" and is often
      sure it is an "80": the digits decide.
    - A red face the classifier is unsure of, on which "STOP" was read surely, is a STOP sign
      (`_reading_is_stop`), at the localiser's score times the reading's confidence.
    - Else a class the classifier is sure of stands, at localiser score x class probability.
    - Else "other sign", `class_id` None, the category the shape and colour show ("other"
      when they show none): never a forced class. Where the shape shows a sign family, at
      the localiser's score x OTHER_SIGN_FACTOR (roadsigns.shared.openset), not dropped for
      the low class probability; where it shows none, at score x class probability.
    """
    text = reading.text if reading else ""
    common = {
        "bbox": d.bbox,
        "text": text,
        "text_confidence": round(reading.confidence, 1) if reading else 0.0,
    }
    if reading is not None and _reading_is_stop(d, reading, cue, min_class_probability):
        return _named_by_reading(d, reading, STOP_CLASS, common)
    if reading is not None and _reading_names(d, reading, cue, min_class_probability):
        class_id = openset.numbered_classes().get(text)
        sure_of_it = class_id is not None and class_id == d.class_id and _classifier_sure(d, min_class_probability)
        if not sure_of_it:
            return _named_by_reading(d, reading, class_id, common)
    if d.class_id is not None and _classifier_sure(d, min_class_probability):  # narrows class_id for mypy
        return SignResult(
            **common,
            class_id=d.class_id,
            class_name=d.class_name,
            category=d.category,
            confidence=round(d.confidence, 4),
            text_matches_class=text_matches_class(text, d.class_id) if text else None,
            class_source="classifier",
        )
    return SignResult(
        **common,
        class_id=None,
        class_name=openset.OTHER_SIGN,
        category=cue.category or "other",
        confidence=round(
            openset.other_sign_confidence(d.detector_confidence, d.class_probability, cue.category is not None), 4
        ),
        text_matches_class=None,
        class_source="shape",
    )


def read_job(request: DetectResult, reader: SignReader) -> JobResult:
    """Read and name every detection; report those whose final confidence reaches the request's threshold.

    A detection under the threshold unless a reading names it is dropped unread when it does
    not look like a speed limit, and read by the learned reader alone when it does: most
    such proposals are not signs, and Tesseract's tenths of a second go to those reported.
    """
    t0 = time.perf_counter()
    min_p = reader.min_class_probability
    signs, crops = [], []
    for d in request.detections:
        crop = decode_crop(d.crop_png_b64)
        cue = shape_cue(crop)
        reported_unread = name_sign(d, None, cue, min_p).confidence >= request.min_confidence
        if not reported_unread and not _speed_face(d, cue, min_p):
            continue
        reading = reader.read(crop, d.class_id, d.class_probability, cue, tesseract=reported_unread)
        sign = name_sign(d, reading, cue, min_p)
        if sign.confidence < request.min_confidence:
            continue
        signs.append(sign)
        crops.append(d.crop_png_b64)
    timings = {**request.timings_ms, "ocr_ms": (time.perf_counter() - t0) * 1000}
    return _result(request, signs, crops, timings, {**request.model_versions, "ocr": reader.version})


def name_unread(request: DetectResult, min_class_probability: float) -> JobResult:
    """The OCR stage without readers (`roadsigns analyze --no-ocr`): each detection named by the
    classifier, else by its shape; those reaching the request's threshold reported."""
    signs, crops = [], []
    for d in request.detections:
        sign = name_sign(d, None, shape_cue(decode_crop(d.crop_png_b64)), min_class_probability)
        if sign.confidence >= request.min_confidence:
            signs.append(sign)
            crops.append(d.crop_png_b64)
    return _result(request, signs, crops, dict(request.timings_ms), dict(request.model_versions))


def _result(
    request: DetectResult,
    signs: list[SignResult],
    crops: list[str],
    timings_ms: dict[str, float],
    model_versions: dict[str, str],
) -> JobResult:
    return JobResult(
        job_id=request.job_id,
        attempt=request.attempt,
        submitted_at=request.submitted_at,
        signs=signs,
        crops_png_b64=crops,
        timings_ms=timings_ms,
        model_versions=model_versions,
        image_size=request.image_size,
    )
