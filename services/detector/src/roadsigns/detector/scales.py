"""Which input sizes the localiser runs a photo at, and how their boxes become one list.

A fixed graph input (the old 832x1376) blew a 300x400 phone photo up 3.4 times, so
its sign became 200-1,100 px, far beyond anything the localiser learned. Instead:

- the **fine pass** runs the photo at its own resolution, shrunk only when its long side
  exceeds `max_side` (the 1376 px that keep GTSDB's 16 px signs findable), and enlarged
  only up to `min_side` for thumbnails;
- a **coarse pass** runs a copy shrunk to `coarse_side` when the fine pass is much larger
  than that: a sign filling a 2,000 px photo is 2,000 px in the fine pass, larger than
  any sign the localiser learned, and a few hundred in the coarse one;
- the coarse pass reports only signs of at least `COARSE_MIN_PX` in its own input:
  smaller ones are signs the fine pass sees at 3-4 times the size, and the coarse
  pass's blurrier boxes for them missed the fine boxes in NMS and came back as
  duplicates (on 30 held-out GTSDB frames they were 50 of 196 proposals, each one
  more crop to classify and a chance of a false report);
- both passes' boxes meet in one class-agnostic NMS, best score first.

Sides are rounded up to the network's stride (32); the padding is the only change.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

STRIDE = 32
COARSE_MIN_PX = 32  # the smallest sign (longer side, coarse-input pixels) the coarse pass reports


def _round_up(v: float) -> int:
    return max(STRIDE, math.ceil(v / STRIDE) * STRIDE)


def fit(height: int, width: int, long_side: float) -> tuple[int, int]:
    """The (height, width) graph input for a photo scaled so its long side is `long_side`."""
    s = long_side / max(height, width)
    return _round_up(height * s), _round_up(width * s)


def plan(height: int, width: int, max_side: int, min_side: int = 320, coarse_side: int = 384) -> list[tuple[int, int]]:
    """Graph input shapes for one photo, fine pass first. `coarse_side` 0: no coarse pass.

    >>> plan(800, 1360, 1376)            # a GTSDB frame: native size, and a coarse pass
    [(800, 1376), (256, 384)]
    >>> plan(400, 300, 1376)             # a phone close-up: its own size only
    [(416, 320)]
    """
    long_side = max(height, width)
    fine_side = min(max(long_side, min_side), max_side)
    passes = [fit(height, width, fine_side)]
    if coarse_side and fine_side >= 1.5 * coarse_side:
        passes.append(fit(height, width, coarse_side))
    return passes


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
    xywh = np.stack(
        [all_boxes[:, 0], all_boxes[:, 1], all_boxes[:, 2] - all_boxes[:, 0], all_boxes[:, 3] - all_boxes[:, 1]], 1
    )
    keep = np.asarray(cv2.dnn.NMSBoxes(xywh.tolist(), all_scores.tolist(), 0.0, iou), np.int64).reshape(-1)
    keep = keep[np.argsort(-all_scores[keep])]
    return all_boxes[keep], all_scores[keep]
