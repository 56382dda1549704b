"""Detection metrics: VOC-style average precision at IoU 0.5, precision, recall, OCR exactness."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from roadsigns.cli.groundtruth import Box
from roadsigns.shared import classes, openset


@dataclass(frozen=True)
class Pred:
    bbox: tuple[float, float, float, float]
    class_id: int | None  # None: none of the 43 classes ("speed limit 40", "other sign"), never a GT class
    score: float
    text: str = ""
    category: str | None = None  # the prediction's own category; None: its class's
    name: str = ""  # its class_name ("speed limit 40" where class_id is None and the reading named it)

    @property
    def category_index(self) -> int | None:
        category = self.category or (classes.get(self.class_id).category if self.class_id is not None else None)
        return classes.CATEGORIES.index(category) if category in classes.CATEGORIES else None


def iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def average_precision(tp: np.ndarray, n_gt: int) -> float:
    """Area under the precision envelope (all points), as VOC 2010+ and ultralytics compute it."""
    if n_gt == 0:
        return float("nan")
    if len(tp) == 0:
        return 0.0
    ctp = np.cumsum(tp)
    recall = ctp / n_gt
    precision = ctp / np.arange(1, len(tp) + 1)
    r = np.concatenate([[0.0], recall, [1.0]])
    p = np.concatenate([[1.0], precision, [0.0]])
    p = np.flip(np.maximum.accumulate(np.flip(p)))
    idx = np.flatnonzero(r[1:] != r[:-1])
    return float(np.sum((r[idx + 1] - r[idx]) * p[idx + 1]))


def _match(
    gt: dict[str, list[Box]],
    preds: dict[str, list[Pred]],
    gt_label: Callable[[Box], int | None],
    pred_label: Callable[[Pred], int | None],
    thr: float,
) -> tuple[dict[int | None, list[tuple[float, bool]]], dict[int, int]]:
    """Greedy matching by score per label; returns per-label (score, is_tp) lists and GT counts.

    A GT box whose label is None (a class-less sign, counted by class) is left out: neither
    counted nor matched. A prediction whose label is None matches no GT box.
    """
    scored: dict[int | None, list[tuple[float, bool]]] = defaultdict(list)
    n_gt: dict[int, int] = defaultdict(int)
    names = set(gt) | set(preds)
    for name in names:
        g = [(b, lab) for b in gt.get(name, []) if (lab := gt_label(b)) is not None]
        for _, lab in g:
            n_gt[lab] += 1
        used = [False] * len(g)
        for p in sorted(preds.get(name, []), key=lambda p: -p.score):
            lp = pred_label(p)
            best, best_j = thr, -1
            for j, (b, lab) in enumerate(g):
                if used[j] or lab != lp:
                    continue
                o = iou(p.bbox, b.xyxy)
                if o >= best:
                    best, best_j = o, j
            if best_j >= 0:
                used[best_j] = True
            scored[lp].append((p.score, best_j >= 0))
    return scored, n_gt


def map50(
    gt: dict[str, list[Box]],
    preds: dict[str, list[Pred]],
    gt_label: Callable[[Box], int | None],
    pred_label: Callable[[Pred], int | None],
) -> dict[str, float]:
    scored, n_gt = _match(gt, preds, gt_label, pred_label, 0.5)
    aps = []
    tp_total = fp_total = 0
    for lab, count in n_gt.items():
        items = sorted(scored.get(lab, []), key=lambda s: -s[0])
        tp = np.array([t for _, t in items], dtype=float)
        aps.append(average_precision(tp, count))
    for items in scored.values():
        tp_total += sum(t for _, t in items)
        fp_total += sum(not t for _, t in items)
    total_gt = sum(n_gt.values())
    return {
        "map50": float(np.mean(aps)) if aps else 0.0,
        "precision": tp_total / (tp_total + fp_total) if tp_total + fp_total else 0.0,
        "recall": tp_total / total_gt if total_gt else 0.0,
    }


# The labels each view of the metrics matches by: the 43 classes (a class-less GT sign left out),
# the categories (a class-less speed limit is prohibitory), and "a sign" (class-agnostic).
def _class_of_box(b: Box) -> int | None:
    return b.class_id if b.class_id >= 0 else None


def _class_of_pred(p: Pred) -> int | None:
    return p.class_id


def _category_of_box(b: Box) -> int | None:
    return classes.CATEGORIES.index(b.category) if b.category in classes.CATEGORIES else None


def _any(_: Box | Pred) -> int:
    return 0


def _best_match(b: Box, candidates: list[Pred]) -> Pred | None:
    """The prediction that overlaps a GT box most, if it overlaps it at IoU 0.5 or more."""
    best = max(candidates, key=lambda p: iou(p.bbox, b.xyxy), default=None)
    return best if best is not None and iou(best.bbox, b.xyxy) >= 0.5 else None


def ocr_exact(gt: dict[str, list[Box]], preds: dict[str, list[Pred]]) -> tuple[float, int]:
    """Share of text-bearing GT signs that were detected (IoU >= 0.5, any class) and read exactly."""
    hits = total = 0
    for name, boxes in gt.items():
        for b in boxes:
            expected = b.expected_text
            if expected is None:
                continue
            total += 1
            best = _best_match(b, preds.get(name, []))
            if best is not None and best.text.strip().upper() == expected.upper():
                hits += 1
    return (hits / total if total else float("nan")), total


def named_right(gt: dict[str, list[Box]], preds: dict[str, list[Pred]]) -> tuple[float, int]:
    """Share of GT signs found (IoU >= 0.5) and named as the service should name them.

    A sign of the 43 classes by its class; a class-less speed limit (class -1 with a number)
    as the open set names it: `class_id` None and "speed limit N". This is the measure for a
    set with signs no class carries, where the 43-class mAP cannot see them. Other class-less
    signs (class -1 without a number) have no name to get right and are not counted.
    """
    hits = total = 0
    for name, boxes in gt.items():
        for b in boxes:
            numbered = b.class_id < 0 and b.text is not None and b.text.isdigit()
            if b.class_id < 0 and not numbered:
                continue  # a sign only to be found: no name to get right
            total += 1
            best = _best_match(b, preds.get(name, []))
            if best is None:
                continue
            if b.class_id >= 0:
                hits += best.class_id == b.class_id
            else:
                hits += best.class_id is None and best.name == openset.speed_limit_name(str(b.text))
    return (hits / total if total else float("nan")), total


# Sign height buckets (pixels of the original photo) for `recall_by_size`: GTSDB's signs are
# nearly all in the first two; phone close-ups in the last two.
SIZE_BUCKETS = ((0, 24, "<24"), (24, 48, "24-48"), (48, 96, "48-96"), (96, 192, "96-192"), (192, None, ">=192"))


def recall_by_size(gt: dict[str, list[Box]], preds: dict[str, list[Pred]]) -> dict[str, dict[str, float | int | None]]:
    """Class-agnostic recall at IoU 0.5 per sign-height bucket: `{bucket: {"signs": n, "recall": r}}`.

    Where a detector loses signs is mostly a matter of their size; one recall hides that.
    Matching is the greedy, best-score-first matching `map50` uses, so the buckets add up
    to `recall_any`.
    """
    found = {label: [0, 0] for *_, label in SIZE_BUCKETS}
    for name, boxes in gt.items():
        used = [False] * len(boxes)
        for p in sorted(preds.get(name, []), key=lambda p: -p.score):
            best, best_j = 0.5, -1
            for j, b in enumerate(boxes):
                o = iou(p.bbox, b.xyxy)
                if not used[j] and o >= best:
                    best, best_j = o, j
            if best_j >= 0:
                used[best_j] = True
        for b, hit in zip(boxes, used, strict=True):
            height = b.bottom + 1 - b.top
            label = next(lab for lo, hi, lab in SIZE_BUCKETS if height >= lo and (hi is None or height < hi))
            found[label][0] += 1
            found[label][1] += hit
    return {label: {"signs": n, "recall": (hits / n) if n else None} for label, (n, hits) in found.items()}


def detection_report(gt: dict[str, list[Box]], preds: dict[str, list[Pred]], min_score: float = 0.0) -> dict[str, Any]:
    """mAP over every prediction given, ranked by score, as ultralytics and COCO compute it;
    precision, recall and OCR at the operating point: the predictions scoring `min_score` or more,
    which are what the service reports."""
    reported = {name: [p for p in ps if p.score >= min_score] for name, ps in preds.items()}
    # A prediction outside the 43 classes (class_id None) is never a GT class, but it is a
    # sign found (class-agnostic) and has a category of its own.
    by_class = map50(gt, preds, _class_of_box, _class_of_pred)
    by_category = map50(gt, preds, _category_of_box, lambda p: p.category_index)
    agnostic = map50(gt, preds, _any, _any)
    at_class = map50(gt, reported, _class_of_box, _class_of_pred)
    at_any = map50(gt, reported, _any, _any)
    exact, n_text = ocr_exact(gt, reported)
    named, _ = named_right(gt, reported)
    return {
        "map50": by_class["map50"],
        "map50_category": by_category["map50"],
        "map50_any": agnostic["map50"],
        "precision": at_class["precision"],
        "recall": at_class["recall"],
        "precision_any": at_any["precision"],
        "recall_any": at_any["recall"],
        "min_confidence": min_score,
        "ocr_exact": exact,
        "ocr_signs": n_text,
        "named_right": named,
        "signs": sum(len(v) for v in gt.values()),
        "recall_by_size": recall_by_size(gt, reported),
    }
