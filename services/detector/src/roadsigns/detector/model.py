"""Find signs in a photo: a YOLO localiser on the whole photo, then a classifier on each crop.

`SignDetector.detect` is the plain function the Celery task, the CLI and the
evaluation all call. Each step is timed.

The backends (`roadsigns.detector.backends`: torch, onnx, openvino, and `auto`) run the same
trained models; `SignDetector` takes its localiser and classifier from the one named and does
the rest the same way for each: letterbox, YOLO decoding and NMS (`preprocess.py`), crops,
softmax.

Every backend runs a photo at the sizes `scales.plan` picks for it (its own resolution,
and a coarse pass for large photos), so a phone close-up is not blown up to fill a
dashcam-sized graph. A fixed-shape export (older registry versions) runs at its one shape.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from roadsigns.detector import backends, scales
from roadsigns.detector.preprocess import INPUT_SIZE, NUM_CLASSES, decode_yolo, letterbox, standardise
from roadsigns.shared.weights import file_version, shipped, softmax


def square_crop(image: np.ndarray, box: tuple[float, float, float, float], scale: float) -> np.ndarray:
    """A square around the box, `scale` times its longer side, padded by edge replication at borders."""
    x1, y1, x2, y2 = box
    side = max(x2 - x1, y2 - y1) * scale
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    left, top = int(round(cx - side / 2)), int(round(cy - side / 2))
    size = max(2, int(round(side)))
    h, w = image.shape[:2]
    pad = max(0, -left, -top, left + size - w, top + size - h)
    if pad:
        image = cv2.copyMakeBorder(image, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
        left, top = left + pad, top + pad
    return image[top : top + size, left : left + size]


def zoomed_out(batch: np.ndarray, scale: float) -> np.ndarray:
    """Each N x H x W x 3 crop shrunk to `scale` about its centre, its edge pixels carried outward.

    The classifier's second view of a crop (`SignDetector(zoom_view=)`): the same sign a little
    further off. Its probabilities averaged with the crop's own cut the held-out errors from 9 to 6
    of 2,925 and on yellow-faced crops from 20 to 16 of 2,205 (README "A second view of unsure
    crops")."""
    h, w = batch.shape[1:3]
    warp = cv2.getRotationMatrix2D(((w - 1) / 2, (h - 1) / 2), 0, scale)
    return np.stack([cv2.warpAffine(img, warp, (w, h), borderMode=cv2.BORDER_REPLICATE) for img in batch])


@dataclass
class Found:
    bbox: tuple[float, float, float, float]  # x1, y1, x2, y2 in original pixels
    detector_confidence: float
    class_id: int
    class_probability: float
    crop: np.ndarray  # BGR, native resolution, square with margin

    @property
    def confidence(self) -> float:
        return self.detector_confidence * self.class_probability


@dataclass
class DetectorOutput:
    signs: list[Found]
    timings_ms: dict[str, float] = field(default_factory=dict)


class SignDetector:
    """Loads once (per worker process), then `detect(image_bgr)` per photo.

    The localiser proposes boxes down to `conf`; each proposal's confidence is the
    localiser's score times the classifier's probability for its class, and `detect`
    returns those at or above `min_confidence` (0 returns every proposal, as mAP needs).
    """

    # Only crops the classifier is this unsure of get the second view (`zoom_view`). On the
    # held-out, yellow-faced and GTSDB crops the errors it mends all lie below 0.8, where 4-9 % of
    # the crops are; label smoothing holds sure answers near 0.95, so a higher bar buys nothing.
    SECOND_VIEW_BELOW = 0.8

    def __init__(
        self,
        detector_weights: Path | None = None,
        classifier_weights: Path | None = None,
        device: str = "auto",
        imgsz: int = 2048,
        conf: float = 0.05,
        crop_scale: float = 1.2,
        versions: dict[str, str] | None = None,
        backend: str = "auto",
        min_confidence: float = 0.25,
        min_side: int = 320,
        coarse_side: int = 384,
        small_side: int = 1376,
        zoom_view: float = 0.9,
        min_sign_probability: float = 0.05,
    ) -> None:
        """`imgsz` is the longest side a photo is run at (larger ones are shrunk to it);
        `min_side` the shortest long side (thumbnails are enlarged to it); `coarse_side` the
        long side of the extra pass for large signs in large photos (0: none); `small_side` the most
        a small photo is enlarged to for its extra pass for small signs (0: none). `zoom_view`: the
        classifier also sees each unsure crop shrunk to this scale (`zoomed_out`) and averages the
        two (0: the crop alone). `min_sign_probability`: a proposal the classifier's sign gate gives
        less is dropped (`judge`; 0: none is). `backend`: a name `roadsigns.detector.backends`
        registers, or `auto`."""
        t0 = time.perf_counter()
        runtime = backends.load(backend, device)
        self.backend, self.device = runtime.name, runtime.device(device)
        self.conf, self.crop_scale, self.min_confidence = conf, crop_scale, min_confidence
        self.imgsz, self.min_side, self.coarse_side, self.small_side = imgsz, min_side, coarse_side, small_side
        self.zoom_view, self.min_sign_probability = zoom_view, min_sign_probability
        det_path = Path(detector_weights or shipped("roadsigns.detector", f"detector.{runtime.weights_ext}"))
        clf_path = Path(classifier_weights or shipped("roadsigns.detector", f"classifier.{runtime.weights_ext}"))
        self.localiser = runtime.localiser(det_path, self.device)
        self.classifier = runtime.classifier(clf_path, self.device)
        self.fixed_shape = self.localiser.input_shape  # a fixed-shape export runs at its one shape
        self.versions = versions or {"detector": file_version(det_path), "classifier": file_version(clf_path)}
        # One warm-up pass, so the first job does not pay for lazy initialisation.
        self.detect(np.zeros((64, 64, 3), np.uint8))
        self.load_seconds = time.perf_counter() - t0

    def passes(self, height: int, width: int, small: bool = True, max_side: int | None = None) -> list[scales.Pass]:
        """The passes (graph inputs, and which of their boxes count) one photo of this size runs at;
        `small` False: never the small-sign pass; `max_side` a longest side for this photo other than
        `imgsz` (a video's frames: `detect_frames`)."""
        if self.fixed_shape is not None:
            return [scales.Pass(*self.fixed_shape)]
        small_side = self.small_side if small else 0
        return scales.plan(height, width, max_side or self.imgsz, self.min_side, self.coarse_side, small_side)

    def localise(
        self, image_bgr: np.ndarray, small: bool = True, max_side: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Boxes (N x 4, xyxy in image pixels) and localiser scores over every pass (`scales.combine`:
        a small sign may have a box from the small-sign pass beside its fine one, for `detect` to settle)."""
        height, width = image_bgr.shape[:2]
        passes, found = self.passes(height, width, small, max_side), []
        for p in passes:
            boxes, scores = self._localise_at(image_bgr, p.height, p.width)
            found.append(scales.reported(p, boxes, scores, height, width))
        return scales.combine(passes, found)

    def _localise_at(self, image_bgr: np.ndarray, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
        blob, box = letterbox(image_bgr, height, width)
        return decode_yolo(self.localiser(blob), box, image_bgr.shape, self.conf)

    def classify(self, crops: list[np.ndarray]) -> np.ndarray:
        """Class probabilities (N x 43) for BGR crops of any size (`judge` without the sign gate)."""
        return self.judge(crops)[0]

    def judge(self, crops: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Class probabilities (N x 43) for BGR crops of any size, and the probability that each is a
        sign at all (the classifier's sign gate, `classifier_net.gate_inputs`; 1 for a classifier
        without one). With `zoom_view`, a crop whose top class is under `SECOND_VIEW_BELOW` gets the
        mean of its own and its zoomed-out view's class probabilities; the gate reads the crop alone."""
        if not crops:
            return np.zeros((0, NUM_CLASSES), np.float32), np.zeros(0, np.float32)
        batch = np.stack(
            [
                cv2.cvtColor(cv2.resize(c, (INPUT_SIZE, INPUT_SIZE), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB)
                for c in crops
            ]
        )
        probs, sign = _split(self.classifier(standardise(batch)))
        unsure = np.flatnonzero(probs.max(axis=1) < self.SECOND_VIEW_BELOW)
        if self.zoom_view and len(unsure):
            second, _ = _split(self.classifier(standardise(zoomed_out(batch[unsure], self.zoom_view))))
            probs[unsure] = (probs[unsure] + second) / 2
        return probs, sign

    def detect(
        self,
        image_bgr: np.ndarray,
        min_confidence: float | None = None,
        min_score: float | None = None,
        small: bool = True,
        max_side: int | None = None,
    ) -> DetectorOutput:
        """The signs whose confidence (localiser score x class probability) reaches `min_confidence`
        (default the detector's).

        Proposals scored under `min_score` by the localiser are neither cropped nor classified.
        It defaults to the confidence floor, which no such proposal can reach (a probability is at
        most 1). The services pass it apart: they keep an unsure class at its localiser score
        (roadsigns.shared.openset.best_confidence), so ask for every confidence above the score floor.
        `small` False leaves out the small-sign pass, and `max_side` shrinks photos larger than it
        instead of `imgsz` (a video's frames: `detect_frames`).
        """
        floor = self.min_confidence if min_confidence is None else min_confidence
        t0 = time.perf_counter()
        boxes, confs = self.localise(image_bgr, small, max_side)
        keep = confs >= (floor if min_score is None else min_score)
        boxes, confs = boxes[keep], confs[keep]
        t1 = time.perf_counter()
        crops = [square_crop(image_bgr, tuple(b), self.crop_scale) for b in boxes]
        probs, sign = self.judge(crops)
        t2 = time.perf_counter()
        found = signs(boxes, confs, crops, probs, floor, sign >= self.min_sign_probability)
        return DetectorOutput(found, {"detect_ms": (t1 - t0) * 1000, "classify_ms": (t2 - t1) * 1000})


def _split(outputs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A classifier's outputs -> class probabilities and sign probabilities: a gated classifier has
    one column more than the classes, the sign gate's logit (`classifier_net.SignEnsemble`)."""
    if outputs.shape[1] == NUM_CLASSES + 1:
        sign = 0.5 * (1 + np.tanh(outputs[:, NUM_CLASSES] / 2))  # the logistic function, without overflow
        return softmax(outputs[:, :NUM_CLASSES]), sign.astype(np.float32)
    return softmax(outputs), np.ones(len(outputs), np.float32)


def signs(
    boxes: np.ndarray,
    scores: np.ndarray,
    crops: list[np.ndarray],
    probs: np.ndarray,
    floor: float,
    is_sign: np.ndarray | None = None,
) -> list[Found]:
    """One photo's classified proposals -> its signs: those the sign gate rejects (`is_sign` False)
    go first; where two overlap (a small sign's fine and small-pass boxes, `scales.combine`) the
    more confident stays, and a box lying within a more confident one is dropped
    (`scales.uncontained`); then those reaching `floor`, left to right."""
    if is_sign is not None:
        boxes, scores, probs = boxes[is_sign], scores[is_sign], probs[is_sign]
        crops = [c for c, keep in zip(crops, is_sign, strict=True) if keep]
    candidates = []
    for box, score, crop, p in zip(boxes, scores, crops, probs, strict=True):
        cls = int(p.argmax())
        x1, y1, x2, y2 = (float(v) for v in box)
        candidates.append(Found((x1, y1, x2, y2), float(score), cls, float(p[cls]), crop))
    confidence = np.array([s.confidence for s in candidates], np.float32)
    corners = np.asarray(boxes, np.float32).reshape(-1, 4)
    order = scales.nms(corners, confidence)
    order = scales.uncontained(corners[order], order)
    kept = [candidates[i] for i in order]
    found = [s for s in kept if s.confidence >= floor]
    found.sort(key=lambda f: (f.bbox[0], f.bbox[1]))
    return found
