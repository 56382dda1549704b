"""Several photos through the detector at once: the localiser on stacked inputs, the classifier on
all their crops in one call (issue 14, the GPU path).

A GPU is mostly idle on one photo at a time: a 800x1376 frame is one small kernel launch per
layer. Stacking photos that run at the same input shape into one N x 3 x H x W batch, and every
photo's crops into one classifier batch, gives the device work of a useful size. On the CPU the
gain is small (a core is busy with one photo already), which is why batching is off there.

`detect_batch(detector, images)` gives, per photo, what `SignDetector.detect` gives for it alone:
the same passes (`SignDetector.passes`), the same letterbox, YOLO decoding and NMS per photo and
pass, the same coarse-pass filter and merge (`scales`), the same crops, the same floor. Only the
model calls are shared: one localiser call per input shape (photos grouped by the shapes their
passes run at; a dashcam frame's fine and coarse passes fall in two groups) and one classifier
call. `tests/test_batching.py` holds it to `detect` on the sample photos, so a change to how
`detect` localises that is not made here too fails there.

Timings: each photo's `detect_ms` and `classify_ms` are the batch's, what that photo waited for.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Sequence

import numpy as np

from roadsigns.detector import scales
from roadsigns.detector.model import DetectorOutput, SignDetector, signs, square_crop
from roadsigns.detector.preprocess import decode_yolo, letterbox

Boxes = tuple[np.ndarray, np.ndarray]  # N x 4 xyxy in image pixels, N scores


def max_batch(detector: SignDetector) -> int | None:
    """The most photos the localiser takes in one call: an export with a fixed batch dimension
    runs that many (usually one); None: any number."""
    limit = getattr(detector.localiser, "max_batch", None)
    return int(limit) if limit else None


def _localise_groups(detector: SignDetector, images: Sequence[np.ndarray]) -> list[list[Boxes]]:
    """Every photo's per-pass boxes and scores (image pixels), one localiser call per input shape."""
    plans = [detector.passes(*image.shape[:2]) for image in images]
    groups: dict[tuple[int, int], list[tuple[int, int]]] = defaultdict(list)  # shape -> (photo, pass)
    for i, plan in enumerate(plans):
        for p, pass_ in enumerate(plan):
            groups[pass_.shape].append((i, p))
    found: list[list[Boxes | None]] = [[None] * len(plan) for plan in plans]
    limit = max_batch(detector) or max(len(members) for members in groups.values())
    for (height, width), members in groups.items():
        for start in range(0, len(members), limit):
            chunk = members[start : start + limit]
            letterboxed = [letterbox(images[i], height, width) for i, _ in chunk]
            output = detector.localiser(np.concatenate([blob for blob, _ in letterboxed]))
            for row, ((i, p), (_, box)) in enumerate(zip(chunk, letterboxed, strict=True)):
                found[i][p] = decode_yolo(output[row : row + 1], box, images[i].shape, detector.conf)
    return [[f for f in per_photo if f is not None] for per_photo in found]


def localise_batch(detector: SignDetector, images: Sequence[np.ndarray]) -> list[Boxes]:
    """What `SignDetector.localise` gives for each photo: boxes and scores, best first, over its passes."""
    out = []
    for image, passes in zip(images, _localise_groups(detector, images), strict=True):
        height, width = image.shape[:2]
        plan = detector.passes(height, width)
        kept = [
            scales.reported(pass_, boxes, scores, height, width)
            for pass_, (boxes, scores) in zip(plan, passes, strict=True)
        ]
        out.append(scales.combine(plan, kept))
    return out


def detect_batch(
    detector: SignDetector,
    images: Sequence[np.ndarray],
    min_confidence: float | None = None,
    min_score: float | None = None,
) -> list[DetectorOutput]:
    """`detector.detect(image, min_confidence, min_score)` for each photo, the model calls shared."""
    if not images:
        return []
    floor = detector.min_confidence if min_confidence is None else min_confidence
    t0 = time.perf_counter()
    located = localise_batch(detector, images)
    t1 = time.perf_counter()
    per_photo: list[tuple[np.ndarray, np.ndarray, list[np.ndarray]]] = []
    for image, (boxes, confs) in zip(images, located, strict=True):
        keep = confs >= (floor if min_score is None else min_score)
        boxes, confs = boxes[keep], confs[keep]
        per_photo.append((boxes, confs, [square_crop(image, tuple(b), detector.crop_scale) for b in boxes]))
    probs, sign = detector.judge([crop for _, _, crops in per_photo for crop in crops])
    is_sign = sign >= detector.min_sign_probability
    t2 = time.perf_counter()
    timings = {"detect_ms": (t1 - t0) * 1000, "classify_ms": (t2 - t1) * 1000}
    outputs, offset = [], 0
    for boxes, confs, crops in per_photo:
        end = offset + len(crops)
        found = signs(boxes, confs, crops, probs[offset:end], floor, is_sign[offset:end])
        offset = end
        outputs.append(DetectorOutput(found, dict(timings)))
    return outputs
