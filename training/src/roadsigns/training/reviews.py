"""Reviewed data (`roadsigns dataset export` folders, listed in `data.reviews`) as training data.

Photos join the localiser's training photos, never its validation split, so a run with
reviews is judged on the same held-out GTSDB photos as one without; crops join the
classifier's training side the same way. `data.reviews: []` (the default) changes nothing.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from roadsigns.cli.dataset import FORMAT
from roadsigns.cli.groundtruth import Box, read_gt

OTHER_CLASS = -1  # a box of a sign outside the 43: a sign to a single-class localiser, nothing else


@dataclass(frozen=True)
class ReviewSet:
    folder: Path
    manifest: dict[str, Any]
    gt: dict[str, list[Box]]  # every photo, with its boxes (none: a photo whose only proposal was not a sign)
    images: np.ndarray  # N x 32 x 32 x 3 uint8 RGB crops
    labels: np.ndarray
    track: np.ndarray

    @property
    def tag(self) -> str:
        """A short name from the version, to keep photos of several exports apart."""
        return f"r{self.manifest['version'][7:19]}"


def _others(path: Path) -> dict[str, list[Box]]:
    out: dict[str, list[Box]] = {}
    lines = path.read_text().splitlines() if path.exists() else []
    for number, line in enumerate(lines, 1):
        if line.strip():
            parts = line.split(";")
            if len(parts) != 6:
                raise ValueError(f"{path}:{number}: expected name;left;top;right;bottom;class name")
            left, top, right, bottom = (int(p) for p in parts[1:5])
            out.setdefault(parts[0], []).append(Box(left, top, right, bottom, OTHER_CLASS))
    return out


def read(folder: Path) -> ReviewSet:
    """One export folder, checked: its manifest, photos, gt.txt (+ others.txt) and crops.npz."""
    folder = Path(folder)
    try:
        manifest = json.loads((folder / "manifest.json").read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"{folder}: not a `roadsigns dataset export` folder ({exc})") from None
    if manifest.get("format") != FORMAT:
        raise ValueError(f"{folder}: format {manifest.get('format')!r}, expected {FORMAT!r}")
    gt: dict[str, list[Box]] = {p.name: [] for p in sorted((folder / "images").iterdir())}
    for source in (read_gt(folder / "gt.txt"), _others(folder / "others.txt")):
        for name, boxes in source.items():
            if name not in gt:
                raise ValueError(f"{folder}: ground truth names {name}, which images/ lacks")
            gt[name] += boxes
    with np.load(folder / "crops.npz") as z:
        images, labels, track = z["images"], z["labels"].astype(np.int64), z["track"]
    if images.ndim != 4 or images.shape[1:] != (32, 32, 3) or not len(images) == len(labels) == len(track):
        raise ValueError(f"{folder}/crops.npz: expected N x 32 x 32 x 3 images with as many labels and tracks")
    return ReviewSet(folder, manifest, gt, images, labels, track)


def read_all(folders: list[str | Path]) -> list[ReviewSet]:
    return [read(Path(f)) for f in folders or []]


def photos(
    sets: list[ReviewSet], images_dir: Path, gt: dict[str, list[Box]], work: Path, single_class: bool
) -> tuple[Path, dict[str, list[Box]], list[str]]:
    """One folder of links holding the GTSDB photos and the reviewed ones, their merged ground
    truth, and the reviewed photos' names (for the training side). Boxes of signs outside the
    43 classes count for a single-class localiser only."""
    if not sets:
        return images_dir, gt, []
    merged = work / "photos-with-reviews"
    merged.mkdir(parents=True, exist_ok=True)
    for stale in merged.iterdir():
        stale.unlink()
    for photo in Path(images_dir).iterdir():
        os.symlink(photo.resolve(), merged / photo.name)
    gt = dict(gt)
    added = []
    for review_set in sets:
        for name, boxes in review_set.gt.items():
            linked = f"{review_set.tag}-{name}"
            os.symlink((review_set.folder / "images" / name).resolve(), merged / linked)
            gt[linked] = [b for b in boxes if single_class or b.class_id != OTHER_CLASS]
            added.append(linked)
    return merged, gt, sorted(added)


def crops(sets: list[ReviewSet]) -> tuple[np.ndarray, np.ndarray]:
    """Every set's crops and labels, for the classifier's training side."""
    if not sets:
        return np.zeros((0, 32, 32, 3), np.uint8), np.zeros(0, np.int64)
    return np.concatenate([s.images for s in sets]), np.concatenate([s.labels for s in sets])


def log_inputs(sets: list[ReviewSet]) -> None:
    """Each set as a dataset input of the active MLflow run (the training run)."""
    import mlflow

    from roadsigns.cli.dataset import dataset_input

    for review_set in sets:
        mlflow.log_input(dataset_input(review_set.folder, review_set.manifest), context="training")
