"""The evaluation `roadsigns evaluate` and `roadsigns promote` both run: the pipeline over a folder
of photos, the classifier over an npz of crops. The metrics themselves are in `metrics.py`."""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from roadsigns.cli.metrics import Pred
from roadsigns.cli.pipeline import IMAGE_SUFFIXES, Pipeline
from roadsigns.detector.model import SignDetector


class PhotoUnreadable(ValueError):
    """A photo of the evaluation set the pipeline cannot decode (the message names it)."""


def photo_names(images: Path) -> list[str]:
    """Every photo in the folder, signs or not: those without count for the false positives."""
    return sorted(p.name for p in images.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def predict_photos(
    pipeline: Pipeline, images: Path, names: list[str], quiet: bool = True
) -> tuple[dict[str, list[Pred]], float]:
    """Every proposal for each photo (min_confidence 0: mAP ranks them all), and the seconds spent."""
    from tqdm import tqdm

    preds: dict[str, list[Pred]] = {}
    spent = 0.0
    for name in tqdm(names, desc="evaluate", unit="img", file=sys.stderr, disable=quiet):
        data = (images / name).read_bytes()
        t0 = time.perf_counter()
        try:
            analysis = pipeline.analyze(data, min_confidence=0.0)
        except ValueError as exc:
            raise PhotoUnreadable(f"{images / name}: {exc}") from None
        spent += time.perf_counter() - t0
        preds[name] = [
            Pred(
                (s.bbox[0], s.bbox[1], s.bbox[2], s.bbox[3]),
                s.class_id,
                s.confidence,
                s.text,
                s.category,
                s.class_name,
            )
            for s in analysis.signs
        ]
    return preds, spent


def classify_crops(
    detector: SignDetector, images: NDArray[np.uint8] | Sequence[NDArray[np.uint8]], bgr: bool = False
) -> tuple[NDArray[np.int64], float]:
    """The classifier's top class for each crop, and the seconds spent: RGB crops (N x H x W x 3,
    an .npz's layout), or with `bgr` a list of BGR crops of any size, as the detector cuts them."""
    t0 = time.perf_counter()
    crops = list(images) if bgr else [image[:, :, ::-1] for image in images]
    predicted = np.concatenate(
        [detector.classify(crops[i : i + 256]).argmax(1) for i in range(0, len(crops), 256)]
    ).astype(np.int64)
    return predicted, time.perf_counter() - t0
