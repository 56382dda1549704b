"""Which input sizes the localiser runs a photo at, and how their boxes become one list.

A fixed graph input (the old 832x1376) blew a 300x400 phone photo up 3.4 times, so
its sign became 200-1,100 px, far beyond anything the localiser learned. Instead:

- the **fine pass** runs the photo at its own resolution, shrunk only when its long side
  exceeds `max_side`, and enlarged only up to `min_side` for thumbnails. The service's
  `max_side` is 2048, not the 1376 of a GTSDB frame: a larger camera's far signs are as few
  pixels high as GTSDB's, and shrinking its photo to 1376 lost them (the `large` evaluation
  set: 2x2 mosaics of GTSDB frames);
- a **coarse pass** runs a copy shrunk to `coarse_side` when the fine pass is much larger
  than that: a sign filling a 2,000 px photo is 2,000 px in the fine pass, larger than
  any sign the localiser learned, and a few hundred in the coarse one;
- the coarse pass reports only signs of at least `COARSE_MIN_PX` in its own input:
  smaller ones are signs the fine pass sees at 3-4 times the size, and the coarse
  pass's blurrier boxes for them missed the fine boxes in NMS and came back as
  duplicates (on 30 held-out GTSDB frames they were 50 of 196 proposals, each one
  more crop to classify and a chance of a false report);
- a **small pass** runs a small photo enlarged (at most `SMALL_ZOOM` times, up to
  `small_side`) and reports only signs under `SMALL_MAX_PX` image pixels: a 12 px sign
  spans a cell and a half of the localiser's finest grid (stride 8), and twice the size it is found. Held-out
  GTSDB photos at half size lost 9 % of their signs, nearly all under 24 px; with this
  pass 5 %. It reports only small signs because an enlarged close-up's large sign breaks
  into pieces that came back as false signs (enlarging the whole fine pass did that);
- the fine and coarse passes' boxes meet in one class-agnostic NMS, best score first; the
  small pass's boxes join them unmerged (`combine`), for the classifier's confidence to
  settle a sign both boxed (`roadsigns.detector.model.signs`).

Sides are rounded up to the network's stride (32); the padding is the only change.
"""

from __future__ import annotations

import math
from typing import Literal, NamedTuple

import cv2
import numpy as np

STRIDE = 32
COARSE_MIN_PX = 32  # the smallest sign (longer side, coarse-input pixels) the coarse pass reports
SMALL_ZOOM = 2.0  # the small pass enlarges a photo at most this much over its fine pass
SMALL_MAX_PX = 24  # the largest sign (longer side, image pixels) the small pass reports
MIN_GAIN = 1.5  # a second pass runs only when its size differs from the fine pass's by this factor


class Pass(NamedTuple):
    """One localiser run over a photo: its graph input and which of its boxes count."""

    height: int
    width: int
    reports: Literal["all", "large", "small"] = "all"

    @property
    def shape(self) -> tuple[int, int]:
        return self.height, self.width


def _round_up(v: float) -> int:
    return max(STRIDE, math.ceil(v / STRIDE) * STRIDE)


def fit(height: int, width: int, long_side: float) -> tuple[int, int]:
    """The (height, width) graph input for a photo scaled so its long side is `long_side`."""
    s = long_side / max(height, width)
    return _round_up(height * s), _round_up(width * s)


def plan(
    height: int, width: int, max_side: int, min_side: int = 320, coarse_side: int = 384, small_side: int = 1376
) -> list[Pass]:
    """The passes one photo runs at, fine pass first. `coarse_side`, `small_side` 0: no such pass.

    >>> plan(800, 1360, 1376)      # a GTSDB frame: native size, and a coarse pass
    [Pass(height=800, width=1376, reports='all'), Pass(height=256, width=384, reports='large')]
    >>> plan(400, 300, 1376)       # a phone close-up: its own size, and twice it for small signs
    [Pass(height=416, width=320, reports='all'), Pass(height=800, width=608, reports='small')]
    """
    long_side = max(height, width)
    fine_side = min(max(long_side, min_side), max_side)
    passes = [Pass(*fit(height, width, fine_side))]
    if coarse_side and fine_side >= MIN_GAIN * coarse_side:
        passes.append(Pass(*fit(height, width, coarse_side), "large"))
    enlarged = min(SMALL_ZOOM * fine_side, small_side)
    if enlarged >= MIN_GAIN * fine_side:
        passes.append(Pass(*fit(height, width, enlarged), "small"))
    return passes


def reported(p: Pass, boxes: np.ndarray, scores: np.ndarray, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """The boxes (image pixels) of pass `p` over a `height` x `width` photo that it reports."""
    if p.reports == "large":
        return large_only(boxes, scores, min(p.height / height, p.width / width))
    if p.reports == "small":
        side = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
        keep = side < SMALL_MAX_PX
        return boxes[keep], scores[keep]
    return boxes, scores


def large_only(
    boxes: np.ndarray, scores: np.ndarray, scale: float, min_px: float = COARSE_MIN_PX
) -> tuple[np.ndarray, np.ndarray]:
    """A coarse pass's boxes (image pixels) whose longer side is at least `min_px` at that pass's
    `scale` (its input pixels per image pixel)."""
    side = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]) * scale
    keep = side >= min_px
    return boxes[keep], scores[keep]


def merge(boxes: list[np.ndarray], scores: list[np.ndarray], iou: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """Several passes' boxes (N x 4 xyxy, image pixels) and scores -> one list after NMS, best first.

    A sign both passes see keeps its better-scored box; a large sign that the fine pass
    saw only in pieces loses those pieces to the coarse pass's whole box when it scores
    higher, and the other way round.
    """
    if len(boxes) == 1:
        return boxes[0], scores[0]
    all_boxes = np.concatenate(boxes).astype(np.float32)
    all_scores = np.concatenate(scores).astype(np.float32)
    if len(all_boxes) == 0:
        return all_boxes.reshape(0, 4), all_scores
    keep = nms(all_boxes, all_scores, iou)
    return all_boxes[keep], all_scores[keep]


# A box this much inside a better one (share of its own area) is a piece of that sign.
CONTAINED = 0.8


def uncontained(boxes: np.ndarray, order: np.ndarray, inside: float = CONTAINED) -> np.ndarray:
    """`order` (indices, best first, of `boxes` N x 4 in that order) without the boxes that lie
    `inside` or more of their area within a better one.

    A sign filling most of a phone close-up is also seen in pieces: its face, its digits, its
    lower half, each boxed apart. Their overlap with the whole sign's box is under NMS's IoU (a
    box a third the size inside it has IoU 0.33), so NMS keeps them, and they came back as
    "other sign" with a fragment of the number ("00" on a "100"). Real signs do not stand inside
    one another's boxes.
    """
    keep: list[int] = []
    area = (boxes[:, 2] - boxes[:, 0]).clip(0) * (boxes[:, 3] - boxes[:, 1]).clip(0)
    for j in range(len(boxes)):
        inner = False
        for k in keep:
            ix = min(boxes[j, 2], boxes[k, 2]) - max(boxes[j, 0], boxes[k, 0])
            iy = min(boxes[j, 3], boxes[k, 3]) - max(boxes[j, 1], boxes[k, 1])
            if ix > 0 and iy > 0 and ix * iy >= inside * area[j]:
                inner = True
                break
        if not inner:
            keep.append(j)
    return order[keep]


def nms(boxes: np.ndarray, scores: np.ndarray, iou: float = 0.5) -> np.ndarray:
    """Indices of the boxes (N x 4 xyxy) that no better-scored box overlaps by more than `iou`, best first."""
    if len(boxes) == 0:
        return np.zeros(0, np.int64)
    xywh = np.stack([boxes[:, 0], boxes[:, 1], boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]], 1)
    keep = np.asarray(cv2.dnn.NMSBoxes(xywh.tolist(), scores.tolist(), 0.0, iou), np.int64).reshape(-1)
    return keep[np.argsort(-scores[keep], kind="stable")]


def combine(passes: list[Pass], found: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """One photo's proposals from its passes' reported boxes: the fine and coarse passes merged by
    NMS on the localiser's score, then the small pass's boxes, unmerged.

    A small sign both the fine and the small pass see is settled after classification, on the
    sign's confidence (`SignDetector.detect`): the pass whose box scores higher is not always the
    one whose crop the classifier is sure of. On the score alone, 11 px signs found by the fine
    pass were lost to a better-scored small-pass box whose crop the classifier doubted; on the
    fine pass's priority, small signs whose fine box was the poorer one were lost.
    """
    merged = [f for p, f in zip(passes, found, strict=True) if p.reports != "small"]
    small = [f for p, f in zip(passes, found, strict=True) if p.reports == "small"]
    boxes, scores = merge([b for b, _ in merged], [s for _, s in merged])
    if not small:
        return boxes, scores
    return (
        np.concatenate([boxes, *(b for b, _ in small)]).astype(np.float32),
        np.concatenate([scores, *(s for _, s in small)]).astype(np.float32),
    )
